/**
 * Configuration from the environment, validated once at startup.
 *
 * Every setting has a local default so a fresh machine needs nothing but RabbitMQ; a bad value stops the
 * process with a ConfigError that names the variable and says what was expected.
 */

import { inLambda } from 'middy-rabbitmq/log-format';
import { exportWanted, TracingConfigError } from 'middy-rabbitmq/tracing';
import * as z from 'zod';

/** Thrown when an environment variable is missing or malformed; `setting` names it. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly setting: string,
    detail: string,
  ) {
    super(`Invalid configuration: ${setting} ${detail}`);
  }
}

const amqpUrl = z
  .string()
  .trim()
  .refine((value) => {
    try {
      const url = new URL(value);
      return url.protocol === 'amqp:' || url.protocol === 'amqps:';
    } catch {
      return false;
    }
  }, 'must be an amqp:// or amqps:// URL');

const positiveInt = z.coerce.number().int().positive();

const delayList = z
  .string()
  .trim()
  .transform((value) => value.split(',').map((part) => Number(part.trim())))
  .pipe(z.array(z.number().int().positive()).min(1, 'must list at least one delay'));

const envSchema = z.object({
  /** One broker URL; AMQP_URLS (comma-separated) takes precedence and lists a cluster's nodes. */
  AMQP_URL: amqpUrl.default('amqp://guest:guest@127.0.0.1:5672'),
  AMQP_URLS: z
    .string()
    .optional()
    .transform((value) =>
      value
        ?.split(',')
        .map((part) => part.trim())
        .filter(Boolean),
    )
    .pipe(z.array(amqpUrl).min(1, 'must list at least one URL').optional()),
  /**
   * The broker user, instead of the one in the URLs (both or neither): a deployment takes them from the Secrets
   * Manager secret its event source mappings log in with, so the password is in one place (serverless.yml).
   */
  AMQP_USERNAME: z.string().optional(),
  AMQP_PASSWORD: z.string().optional(),
  /** PostgreSQL connection string; when absent the SQLite file at SQLITE_PATH is used. */
  DATABASE_URL: z
    .string()
    .trim()
    .optional()
    .refine((value) => !value || /^postgres(ql)?:\/\//.test(value), 'must be a postgres:// URL')
    .transform((value) => value || undefined),
  SQLITE_PATH: z.string().trim().min(1).default('.data/app.sqlite'),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** `json` or `pretty`; unset: pretty on a terminal, JSON elsewhere (always JSON in Lambda: middy-rabbitmq/log-format). */
  LOG_FORMAT: z.preprocess(
    (value) => (typeof value === 'string' ? value.trim().toLowerCase() : value),
    z.enum(['json', 'pretty']).optional(),
  ),
  SERVICE_NAME: z.string().trim().min(1).default('rabbit-functions'),
  /** CloudWatch embedded-metric-format lines from the queue functions; unset: on in AWS Lambda only (shared/metrics). */
  METRICS_EMF: z.enum(['true', 'false']).optional(),
  /** The CloudWatch namespace of those metrics (Powertools' own variable). */
  POWERTOOLS_METRICS_NAMESPACE: z.string().trim().min(1).default('rabbit-functions'),
  /** Their `service` dimension (Powertools' own variable); default SERVICE_NAME. */
  POWERTOOLS_SERVICE_NAME: z.string().trim().min(1).optional(),
  /** Delays before each transient retry, in milliseconds; the list's length is the number of retries. */
  RETRY_DELAYS_MS: delayList.default([1_000, 10_000, 60_000]),
  /** Broker-side safety net: deliveries of one message before the quorum queue dead-letters it. */
  DELIVERY_LIMIT: positiveInt.default(10),
  /** Bearer token for the admin endpoints; unset means the admin endpoints answer 401. */
  ADMIN_TOKEN: z.string().trim().min(16, 'must be at least 16 characters').optional(),
  /** Unpublished outbox rows at which POST /order answers 503 + Retry-After instead of growing the backlog. */
  OUTBOX_BACKLOG_LIMIT: positiveInt.default(10_000),
  /** Pause between outbox relay rounds when the last round found nothing more to send, in milliseconds. */
  OUTBOX_RELAY_INTERVAL_MS: positiveInt.default(1_000),
  /** Days an inbox claim is kept, to recognise a message delivered again (shared/store/retention.ts); 0 keeps them all. */
  INBOX_RETENTION_DAYS: z.coerce.number().int().min(0).default(7),
  /** Days a published outbox row is kept after its publish; 0 keeps them all. Unpublished rows are never deleted. */
  OUTBOX_RETENTION_DAYS: z.coerce.number().int().min(0).default(7),
  /** How long POST /order waits for the broker's confirm before answering 202 anyway (the relay sends it later). */
  INTAKE_PUBLISH_WAIT_MS: positiveInt.default(2_000),
  /** Where notifications are also POSTed (JSON, with an Idempotency-Key header); unset means log and store only. */
  WEBHOOK_URL: z
    .string()
    .trim()
    .optional()
    .refine((value) => !value || /^https?:\/\/[^\s]+$/.test(value), 'must be an http:// or https:// URL'),
  /** Seed the demo stock catalog (missing items only) into the database; serverless.yml turns it off for deployments. */
  SEED_CATALOG: z
    .enum(['true', 'false'])
    .default('true')
    .transform((value) => value === 'true'),
  /** GET /orders (every user's orders) only with the admin token; serverless.yml turns it on for deployments. */
  ORDERS_LIST_ADMIN_ONLY: z
    .enum(['true', 'false'])
    .default('false')
    .transform((value) => value === 'true'),
  /** How long a webhook call may take before it counts as failed (and is retried), in milliseconds. */
  WEBHOOK_TIMEOUT_MS: positiveInt.default(5_000),
  /** DLQ reprocessor: redrives of one message after which it is parked in `parking-lot` instead of redriven again. */
  DLQ_MAX_REDRIVES: positiveInt.default(3),
  /** DLQ reprocessor: messages a redrive moves at most, unless the request asks for another limit. */
  DLQ_REDRIVE_LIMIT: positiveInt.default(100),
  /** DLQ reprocessor: messages per second a redrive publishes at most, unless the request asks for another rate. */
  DLQ_REDRIVE_RATE: positiveInt.default(10),
  /** DLQ reprocessor: messages one redrive examines at most (skipped ones are held unacknowledged until it ends). */
  DLQ_SCAN_LIMIT: positiveInt.default(10_000),
  /** DLQ reprocessor: messages shown per DLQ by `GET /dlq` and `dlq list`. */
  DLQ_SAMPLE_SIZE: z.coerce.number().int().min(0).max(100).default(5),
  /** DLQ reprocessor: characters of each sampled body shown (personal fields masked); 0 shows none. */
  DLQ_PREVIEW_CHARS: z.coerce.number().int().min(0).max(10_000).default(120),
});

export type Config = Readonly<{
  amqpUrls: readonly string[];
  databaseUrl: string | undefined;
  sqlitePath: string;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  /** As set; the format in force is logFormat()'s choice (middy-rabbitmq/log-format). */
  logFormat: 'json' | 'pretty' | undefined;
  serviceName: string;
  /** CloudWatch embedded-metric-format lines from the queue functions: on, namespace and service dimension. */
  cloudWatchMetrics: Readonly<{ enabled: boolean; namespace: string; service: string }>;
  retryDelaysMs: readonly number[];
  deliveryLimit: number;
  adminToken: string | undefined;
  outboxBacklogLimit: number;
  outboxRelayIntervalMs: number;
  /** Days inbox claims and published outbox rows are kept (0: for ever). */
  retention: Readonly<{ inboxDays: number; outboxDays: number }>;
  intakePublishWaitMs: number;
  webhookUrl: string | undefined;
  seedCatalog: boolean;
  ordersListAdminOnly: boolean;
  webhookTimeoutMs: number;
  dlqMaxRedrives: number;
  dlqRedriveLimit: number;
  dlqRedriveRate: number;
  dlqScanLimit: number;
  dlqSampleSize: number;
  dlqPreviewChars: number;
}>;

/** `url` logging in as `username` / `password` (any characters: they are percent-encoded into the URL). */
function withUser(url: string, username: string, password: string): string {
  const parsed = new URL(url);
  parsed.username = encodeURIComponent(username);
  parsed.password = encodeURIComponent(password);
  return parsed.toString();
}

/** Parses configuration from `env` (process.env by default); throws ConfigError naming the bad setting. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "not set", as serverless.yml's `${env:X, ''}` produces.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ''));
  // Parsed once per process: zod's compiled fast path (generated and compiled on an object schema's first parse)
  // would cost more than it saves here, on every cold start.
  const result = envSchema.safeParse(present, { jitless: true });
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ConfigError(String(issue.path[0] ?? 'environment'), issue.message.replace(/^Invalid input: /, ''));
  }
  const e = result.data;
  if ((e.AMQP_USERNAME === undefined) !== (e.AMQP_PASSWORD === undefined)) {
    throw new ConfigError(
      e.AMQP_USERNAME === undefined ? 'AMQP_USERNAME' : 'AMQP_PASSWORD',
      'must be set with AMQP_PASSWORD / AMQP_USERNAME, or neither',
    );
  }
  // The OTEL_* variables are read by shared/tracing when a function starts tracing; one it cannot honour stops
  // here, at startup, like any other setting, rather than failing every invocation.
  try {
    exportWanted(env);
  } catch (error) {
    if (error instanceof TracingConfigError) throw new ConfigError(error.setting, error.detail);
    throw error;
  }
  const urls = e.AMQP_URLS ?? [e.AMQP_URL];
  return Object.freeze({
    amqpUrls: Object.freeze(e.AMQP_USERNAME === undefined ? urls : urls.map((url) => withUser(url, e.AMQP_USERNAME!, e.AMQP_PASSWORD!))),
    databaseUrl: e.DATABASE_URL,
    sqlitePath: e.SQLITE_PATH,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    serviceName: e.SERVICE_NAME,
    cloudWatchMetrics: Object.freeze({
      enabled: e.METRICS_EMF === undefined ? inLambda(env) : e.METRICS_EMF === 'true',
      namespace: e.POWERTOOLS_METRICS_NAMESPACE,
      service: e.POWERTOOLS_SERVICE_NAME ?? e.SERVICE_NAME,
    }),
    retryDelaysMs: Object.freeze(e.RETRY_DELAYS_MS),
    deliveryLimit: e.DELIVERY_LIMIT,
    adminToken: e.ADMIN_TOKEN,
    outboxBacklogLimit: e.OUTBOX_BACKLOG_LIMIT,
    outboxRelayIntervalMs: e.OUTBOX_RELAY_INTERVAL_MS,
    retention: Object.freeze({ inboxDays: e.INBOX_RETENTION_DAYS, outboxDays: e.OUTBOX_RETENTION_DAYS }),
    intakePublishWaitMs: e.INTAKE_PUBLISH_WAIT_MS,
    webhookUrl: e.WEBHOOK_URL,
    seedCatalog: e.SEED_CATALOG,
    ordersListAdminOnly: e.ORDERS_LIST_ADMIN_ONLY,
    webhookTimeoutMs: e.WEBHOOK_TIMEOUT_MS,
    dlqMaxRedrives: e.DLQ_MAX_REDRIVES,
    dlqRedriveLimit: e.DLQ_REDRIVE_LIMIT,
    dlqRedriveRate: e.DLQ_REDRIVE_RATE,
    dlqScanLimit: e.DLQ_SCAN_LIMIT,
    dlqSampleSize: e.DLQ_SAMPLE_SIZE,
    dlqPreviewChars: e.DLQ_PREVIEW_CHARS,
  });
}

let cached: Config | undefined;

/** The process-wide configuration, parsed on first use. */
export function config(): Config {
  cached ??= loadConfig();
  return cached;
}

export { redactUrl } from 'middy-rabbitmq/amqp';
