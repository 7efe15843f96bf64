/**
 * What a dead-lettered message says about itself, and the copies the reprocessor publishes of it.
 *
 * A message reaches a DLQ two ways: our poison-message middleware publishes it to `dlx` with FAILURE_HEADERS
 * (x-error-class, x-error-name, ...), or the broker dead-letters it after the quorum delivery limit (or a
 * reject) and adds `x-death`. Transient retries also leave `x-death` entries, with reason `expired`, from
 * the retry queues' TTL: those are not dead-letterings into the DLQ and are ignored when classifying.
 */
import type { Message, Options } from 'amqplib';
import { ATTEMPT_HEADER, FAILURE_HEADERS, type FailureClass } from 'middy-rabbitmq/core';
import { REDACTED_FIELDS } from '../logging';
import { RETRY_DELAY_HEADER, republishProperties } from '../messaging';

/** Headers the reprocessor adds. */
export const REDRIVE_HEADERS = {
  /** How many times the message has been redriven out of a DLQ. */
  count: 'x-redrive-count',
  redrivenAt: 'x-redriven-at',
  redrivenFrom: 'x-redriven-from',
  /** On a redriven copy: the failure that sent it to the DLQ (FAILURE_HEADERS renamed, see `redriveCopy`). */
  lastErrorClass: 'x-last-error-class',
  lastErrorName: 'x-last-error-name',
  lastErrorMessage: 'x-last-error-message',
  lastAttempts: 'x-last-attempts',
  /** On a redriven copy: the broker's last dead-lettering (x-death is dropped, see `redriveCopy`). */
  lastDeathReason: 'x-last-death-reason',
  lastDeathQueue: 'x-last-death-queue',
  /** On a parked message. */
  parkedAt: 'x-parked-at',
  parkedFrom: 'x-parked-from',
  parkedReason: 'x-parked-reason',
} as const;

/**
 * Why a message is in its DLQ: the class our middleware or trigger gave it (see FailureClass), `broker` (the
 * broker dead-lettered it: delivery limit, expiry, reject), or `unknown`.
 */
export type DlqErrorClass = FailureClass | 'broker' | 'unknown';
export const DLQ_ERROR_CLASSES: readonly DlqErrorClass[] = [
  'permanent',
  'transient',
  'unrepresentable',
  'payload-too-large',
  'broker',
  'unknown',
];
const FAILURE_CLASSES = new Set<string>(DLQ_ERROR_CLASSES.filter((c) => c !== 'broker' && c !== 'unknown'));

/** One `x-death` entry, as far as we use it. */
export interface DeathSummary {
  reason: string;
  queue: string;
  count: number;
  /** When the broker dead-lettered it (ISO-8601), if it said. */
  time: string | null;
}

/** What the reprocessor shows of one message in a DLQ. */
export interface DlqMessageSummary {
  /** 1-based position in the DLQ at the time it was read. */
  position: number;
  messageId: string | null;
  type: string | null;
  correlationId: string | null;
  appId: string | null;
  timestamp: string | null;
  errorClass: DlqErrorClass;
  errorName: string | null;
  errorMessage: string | null;
  attempts: number | null;
  originalQueue: string | null;
  firstFailedAt: string | null;
  lastFailedAt: string | null;
  redriveCount: number;
  /** The broker's dead-lettering into this DLQ, when it did it (not the retry queues' expiries). */
  death: DeathSummary | null;
  /** Where a redrive would send it, and whether it would be parked instead. */
  redriveTarget: string;
  wouldPark: boolean;
  bodyBytes: number;
  /** The body's first characters, personal fields masked; empty when previews are off. */
  bodyPreview: string;
}

/** Message headers as amqplib decodes them (MessagePropertyHeaders fits). */
type Headers = Readonly<Record<string, unknown>> | undefined;

const text = (value: unknown): string | null => {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return null;
};

const integer = (value: unknown): number | null => {
  const n = Number(text(value) ?? Number.NaN);
  return Number.isInteger(n) ? n : null;
};

/** amqplib decodes AMQP timestamps as `{'!': 'timestamp', value: seconds}`; plain numbers are seconds too. */
const timestampSeconds = (value: unknown): number | null => {
  if (typeof value === 'number') return value;
  if (value && typeof value === 'object' && typeof (value as { value?: unknown }).value === 'number')
    return (value as { value: number }).value;
  return null;
};

const isoFromSeconds = (seconds: number | null): string | null => (seconds === null ? null : new Date(seconds * 1000).toISOString());

/** A retry queue: its `expired` deaths are the retry path's delay running out, not a dead-lettering. */
const isRetryQueue = (queue: string | null): boolean => !!queue && /^retry-\d+ms$/.test(queue);

/**
 * The broker's most recent dead-lettering out of a work queue, if any: delivery limit, reject, or a message
 * whose own `expiration` ran out in the work queue. The retry queues' expiries are skipped.
 */
export function brokerDeath(headers: Headers): (DeathSummary & { seconds: number | null }) | null {
  const deaths = headers?.['x-death'];
  if (!Array.isArray(deaths)) return null;
  for (const entry of deaths as unknown[]) {
    if (!entry || typeof entry !== 'object') continue;
    const death = entry as Record<string, unknown>;
    const reason = text(death.reason);
    if (!reason || (reason === 'expired' && isRetryQueue(text(death.queue)))) continue;
    const seconds = timestampSeconds(death.time);
    return { reason, queue: text(death.queue) ?? '', count: integer(death.count) ?? 1, time: isoFromSeconds(seconds), seconds };
  }
  return null;
}

/**
 * Why the message is in its DLQ. `broker` when the broker dead-lettered it after our middleware last
 * touched it (an x-death newer than x-last-failed-at, same second counting as newer); else our
 * middleware's x-error-class; else `unknown`.
 */
export function errorClassOf(headers: Headers): DlqErrorClass {
  const death = brokerDeath(headers);
  const ours = text(headers?.[FAILURE_HEADERS.errorClass]);
  if (death) {
    const lastFailed = Date.parse(text(headers?.[FAILURE_HEADERS.lastFailedAt]) ?? '');
    if (!ours || death.seconds === null || Number.isNaN(lastFailed) || death.seconds >= Math.floor(lastFailed / 1000)) return 'broker';
  }
  return ours !== null && FAILURE_CLASSES.has(ours) ? (ours as FailureClass) : 'unknown';
}

/**
 * How often the message was redriven: x-redrive-count when it is one a redrive could have set (0 to
 * `maxRedrives`; a message that reaches the limit is parked, never redriven again), else 0. A producer
 * can thus not have a message parked at its first redrive by sending it with a count of 999.
 */
export const redriveCountOf = (headers: Headers, maxRedrives = Number.POSITIVE_INFINITY): number => {
  const count = integer(headers?.[REDRIVE_HEADERS.count]) ?? 0;
  return count >= 0 && count <= maxRedrives ? count : 0;
};

/** The DLQ's own source queue: `order-events-dlq` → `order-events`. */
const sourceQueueOf = (dlq: string): string => dlq.replace(/-dlq$/, '');

/**
 * Where a redrive sends the message: the work queue the DLQ belongs to. `<queue>-dlq` is bound to `dlx` under
 * `<queue>`'s name alone, so everything in it came from that queue; no header a message carries (a producer
 * can set `x-original-queue` too) decides where its copy goes.
 */
export const redriveTarget = (dlq: string): string => sourceQueueOf(dlq);

const PERSONAL = new Set<string>(REDACTED_FIELDS);
const PERSONAL_PAIR = new RegExp(`"(${REDACTED_FIELDS.join('|')})"\\s*:\\s*("(?:[^"\\\\]|\\\\.)*"?|[^,}\\s]+)`, 'g');
/** Larger bodies are not parsed for a preview. */
const MAX_MASKED_BYTES = 64 * 1024;

const mask = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(mask);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, PERSONAL.has(key) ? '[redacted]' : mask(v)]));
  }
  return value;
};

/**
 * The first `chars` characters of the body: JSON with personal and secret fields (the logger's redaction
 * list) masked; other bodies as text with control characters replaced. Bodies can hold personal data the
 * list does not know, so keep previews short (DLQ_PREVIEW_CHARS) or off (0).
 */
export function bodyPreview(body: Buffer, chars: number): string {
  if (chars <= 0 || body.length === 0) return '';
  let shown: string | undefined;
  if (body.length <= MAX_MASKED_BYTES) {
    try {
      shown = JSON.stringify(mask(JSON.parse(body.toString('utf8'))));
    } catch {
      // Not JSON: shown as text below.
    }
  }
  if (shown === undefined) {
    const start = body.subarray(0, chars * 4).toString('utf8');
    // A JSON body too large to parse is not shown unmasked.
    if (body.length > MAX_MASKED_BYTES && /^\s*[[{]/.test(start)) return `[JSON body of ${body.length} bytes, too large to mask]`;
    // Broken JSON: mask `"field": "value"` pairs of personal fields as far as they can be recognised.
    shown = start.replace(PERSONAL_PAIR, '"$1":"[redacted]"');
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: it matches control characters on purpose, to show each as '.' in the preview
  shown = shown.replace(/[\u0000-\u001f\u007f]/g, '.');
  return shown.length > chars ? `${shown.slice(0, chars)}…` : shown;
}

export interface SummaryOptions {
  dlq: string;
  position: number;
  maxRedrives: number;
  previewChars: number;
}

/** What `GET /dlq` and `dlq list` show of one message. */
export function summarize(message: Message, options: SummaryOptions): DlqMessageSummary {
  const { properties, content } = message;
  const headers = properties.headers;
  const death = brokerDeath(headers);
  const redriveCount = redriveCountOf(headers, options.maxRedrives);
  const timestamp = typeof properties.timestamp === 'number' ? isoFromSeconds(properties.timestamp) : null;
  return {
    position: options.position,
    messageId: text(properties.messageId),
    type: text(properties.type),
    correlationId: text(properties.correlationId),
    appId: text(properties.appId),
    timestamp,
    errorClass: errorClassOf(headers),
    errorName: text(headers?.[FAILURE_HEADERS.errorName]),
    errorMessage: text(headers?.[FAILURE_HEADERS.errorMessage]),
    attempts: integer(headers?.[FAILURE_HEADERS.attempts]),
    originalQueue: text(headers?.[FAILURE_HEADERS.originalQueue]),
    firstFailedAt: text(headers?.[FAILURE_HEADERS.firstFailedAt]),
    lastFailedAt: text(headers?.[FAILURE_HEADERS.lastFailedAt]),
    redriveCount,
    death: death ? { reason: death.reason, queue: death.queue, count: death.count, time: death.time } : null,
    redriveTarget: redriveTarget(options.dlq),
    wouldPark: redriveCount >= options.maxRedrives,
    bodyBytes: content.length,
    bodyPreview: bodyPreview(content, options.previewChars),
  };
}

/**
 * The copy a redrive publishes to the work queue: same body and properties; x-redrive-count + 1; the attempt
 * header reset so the function gets its full retries again; the failure headers renamed to x-last-error-*
 * and x-death summarised into x-last-death-* and dropped, so that if the copy fails again the DLQ shows the
 * new failure and not a stale one (x-first-failed-at and x-original-queue are kept as history).
 */
export function redriveCopy(message: Message, dlq: string, now: Date, maxRedrives = Number.POSITIVE_INFINITY): Options.Publish {
  const headers: Record<string, unknown> = { ...(message.properties.headers ?? {}) };
  const renamed: Array<[string, string]> = [
    [FAILURE_HEADERS.errorClass, REDRIVE_HEADERS.lastErrorClass],
    [FAILURE_HEADERS.errorName, REDRIVE_HEADERS.lastErrorName],
    [FAILURE_HEADERS.errorMessage, REDRIVE_HEADERS.lastErrorMessage],
    [FAILURE_HEADERS.attempts, REDRIVE_HEADERS.lastAttempts],
  ];
  for (const [from, to] of renamed) {
    if (headers[from] !== undefined) headers[to] = headers[from];
    delete headers[from];
  }
  const death = brokerDeath(message.properties.headers);
  if (death) {
    headers[REDRIVE_HEADERS.lastDeathReason] = death.reason;
    headers[REDRIVE_HEADERS.lastDeathQueue] = death.queue;
  }
  delete headers['x-death'];
  delete headers[RETRY_DELAY_HEADER];
  delete headers[ATTEMPT_HEADER];
  headers[REDRIVE_HEADERS.count] = redriveCountOf(message.properties.headers, maxRedrives) + 1;
  headers[REDRIVE_HEADERS.redrivenAt] = now.toISOString();
  headers[REDRIVE_HEADERS.redrivenFrom] = dlq;
  return republishProperties(message.properties, headers);
}

/** The copy parked in `parking-lot`: the message as it was in the DLQ, plus where, when and why it was parked. */
export function parkedCopy(message: Message, dlq: string, maxRedrives: number, now: Date): Options.Publish {
  const count = redriveCountOf(message.properties.headers, maxRedrives);
  return republishProperties(message.properties, {
    ...(message.properties.headers ?? {}),
    [REDRIVE_HEADERS.parkedAt]: now.toISOString(),
    [REDRIVE_HEADERS.parkedFrom]: dlq,
    [REDRIVE_HEADERS.parkedReason]: `redriven ${count} times (DLQ_MAX_REDRIVES is ${maxRedrives})`,
  });
}

/** One message in full, for the console's "show message": the summary, every property, the whole body. */
export interface DlqMessageDetail extends DlqMessageSummary {
  /** The AMQP properties with their headers, as JSON (byte strings as text, 64-bit numbers as strings). */
  properties: Record<string, unknown>;
  /** The body: JSON pretty-printed with personal fields masked; other bodies as text; very large ones cut. */
  body: string;
}

/** Bodies shown in full up to this size; JSON up to this size is parsed to mask personal fields. */
const MAX_SHOWN_BYTES = 1024 * 1024;

const jsonSafe = (value: unknown, depth = 0): unknown => {
  if (depth > 32) return '[nested too deep]';
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map((item) => jsonSafe(item, depth + 1));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, jsonSafe(item, depth + 1)]));
  }
  return typeof value === 'number' && !Number.isFinite(value) ? String(value) : value;
};

/** The whole body as text, personal fields masked as in the previews (a large JSON body is not shown unmasked). */
function fullBody(body: Buffer): string {
  if (body.length > MAX_SHOWN_BYTES) return bodyPreview(body, 4_096);
  try {
    return JSON.stringify(mask(JSON.parse(body.toString('utf8'))), null, 2);
  } catch {
    // Not JSON: as text, broken JSON with the recognisable personal pairs masked (bodyPreview's rule).
    return bodyPreview(body, body.length);
  }
}

/** The summary plus every property and the whole body. */
export function describeMessage(message: Message, summary: DlqMessageSummary): DlqMessageDetail {
  return { ...summary, properties: jsonSafe(message.properties) as Record<string, unknown>, body: fullBody(message.content) };
}

/** How a message is named in reports: its messageId, else `#<position>` in the DLQ when it was read. */
export const reportId = (message: Message, position: number): string => text(message.properties.messageId) ?? `#${position}`;
