/**
 * The DLQ reprocessor's admin API, on the same base as order intake (createHttpApp) and behind the same
 * admin-token plugin:
 *
 *   GET  /dlq?queue=<dlq>&sample=<n>   each DLQ's depth and first messages (nothing removed, order kept),
 *                                      and the parking lot's depth                       → 200 DlqListing
 *   POST /dlq/redrive                  {queue, limit?, rate?, error_class?, error_name?, dry_run?}
 *                                      moves messages back to their work queue           → 200 RedriveReport
 *
 * Both need `Authorization: Bearer <ADMIN_TOKEN>` (401 without it, with a wrong one, or when ADMIN_TOKEN is
 * unset). Bad input is a 400 problem+json naming the field; a DLQ another list/redrive is reading is a 409
 * (the reprocessor's errors carry those answers).
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { type Config, config as processConfig } from '../config';
import { DlqReprocessor, parseListRequest, parseRedriveRequest } from '../dlq';
import { type Logger, logger as processLogger } from '../logging';
import { type Broker, messaging, type Publisher } from '../messaging';
import { adminAuth } from './admin-auth';
import { createHttpApp } from './app';

export const DLQ_FUNCTION_NAME = 'dlq-reprocessor';

export interface DlqAppOptions {
  /** Broker and publisher go together (default: the process-wide messaging()). */
  broker?: Broker;
  publisher?: Publisher;
  /** Default: the process configuration (ADMIN_TOKEN, DLQ_*). */
  config?: Config;
  logger?: Logger;
  /** DLQs shown besides the work queues' own. */
  extraQueues?: readonly string[];
  /** A redrive starts no new message after this long, to answer inside the function's timeout (default 45 s). */
  maxDurationMs?: number;
  /** How long a read waits for the next message before deciding there is none (default 2 s). */
  idleTimeoutMs?: number;
}

const defaults = { maxDurationMs: 45_000 };

const dlqRoutes: FastifyPluginAsync<{ reprocessor: DlqReprocessor; config: Config; maxDurationMs: number }> = async (
  app,
  { reprocessor, config, maxDurationMs },
) => {
  await app.register(adminAuth, { token: config.adminToken });

  app.get('/dlq', async (request) => reprocessor.list(parseListRequest(request.query)));

  app.post('/dlq/redrive', async (request) => {
    const report = await reprocessor.redrive({ ...parseRedriveRequest(request.body), maxDurationMs });
    const { dlq, dryRun, moved, parked, skipped, failed, stopped } = report;
    request.log.info(
      { dlq, dryRun, moved: moved.length, parked: parked.length, skipped: skipped.length, failed: failed.length, stopped },
      'dlq redrive requested',
    );
    return report;
  });
};

/** The app behind the DLQ handler; tests build their own with injected broker, publisher and config. */
export function buildDlqApp(options: DlqAppOptions = {}): FastifyInstance {
  if (Boolean(options.broker) !== Boolean(options.publisher)) throw new TypeError('buildDlqApp: pass broker and publisher together');
  const { maxDurationMs } = { ...defaults, ...options };
  const config = options.config ?? processConfig();
  const logger = options.logger ?? processLogger().child({ function: DLQ_FUNCTION_NAME });
  const { broker, publisher } =
    options.broker && options.publisher ? { broker: options.broker, publisher: options.publisher } : messaging();
  const reprocessor = new DlqReprocessor({
    broker,
    publisher,
    config,
    logger,
    ...(options.extraQueues ? { extraQueues: options.extraQueues } : {}),
    ...(options.idleTimeoutMs ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
  });
  const app = createHttpApp({ functionName: DLQ_FUNCTION_NAME, logger });
  app.register(dlqRoutes, { reprocessor, config, maxDurationMs });
  return app;
}
