/**
 * How a function's log lines look (the middleware's logger and the trigger's both follow it): JSON lines (one object per line, for machines: CloudWatch, `jq`, log shippers) or, on a
 * terminal, one readable line per record or request through pino's own pretty printer (pino-pretty):
 *
 *   [12:00:01.234] INFO: inventoryReservation [order-events] processed message 3f2a… 4.1 ms: record handled
 *   [12:00:01.240] WARN: notification [inventory-events] dead-lettered message 9c1d… 2 ms: record handled (ContractViolationError: …)
 *   [12:00:01.250] INFO: order-intake POST /order 202 12 ms: request completed
 *
 * The pretty printer only reformats what pino already wrote, so redaction (done by pino before any line leaves
 * it) applies to both. It is loaded only when chosen, never in a deployed bundle, where logs are always JSON.
 */

import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import type { DestinationStream } from 'pino';
import type PinoPretty from 'pino-pretty';

export type LogFormat = 'json' | 'pretty';

/** In AWS Lambda (not serverless-offline or invoke local, which set the same variable for their handlers). */
export const inLambda = (env: NodeJS.ProcessEnv) => Boolean(env.AWS_LAMBDA_FUNCTION_NAME) && !env.IS_OFFLINE && !env.IS_LOCAL;

/**
 * JSON always in Lambda; else `LOG_FORMAT` (`json` or `pretty`) when set; else pretty when standard output is a
 * terminal. `isatty(1)` asks about the file descriptor itself, so a handler that serverless-offline runs in a
 * worker thread (whose `process.stdout` is never a TTY) gets the same answer as `npm start` itself.
 */
export function logFormat(env: NodeJS.ProcessEnv = process.env, terminal: boolean = isatty(1)): LogFormat {
  if (inLambda(env)) return 'json';
  const chosen = env.LOG_FORMAT?.trim().toLowerCase();
  if (chosen === 'json' || chosen === 'pretty') return chosen;
  return terminal ? 'pretty' : 'json';
}

type Line = Record<string, unknown>;

/** Fields the readable line shows in its own words, or leaves out as noise (LOG_FORMAT=json has them all). */
const SHOWN = [
  'function',
  'component',
  'queue',
  'outcome',
  'method',
  'path',
  'statusCode',
  'messageId',
  'orderId',
  'durationMs',
  'attempt',
  'error',
];
const NOISE = ['pid', 'hostname', 'service', 'requestId', 'reqId', 'coldStart', 'correlationId', 'trace_id', 'span_id'];

const text = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : typeof value === 'number' ? String(value) : undefined;

/**
 * The line's own words: who (function, queue), what happened (a record's outcome; a request's method, path and
 * status), to which message or order, how long it took, the message, and an error's reason.
 */
export function readableMessage(line: Line, messageKey = 'message'): string {
  const err = line.err as { type?: unknown; message?: unknown } | undefined;
  const reason =
    text(line.error) ?? (err && typeof err === 'object' ? [text(err.type), text(err.message)].filter(Boolean).join(': ') : undefined);
  const attempt = typeof line.attempt === 'number' && line.attempt > 1 ? `attempt ${line.attempt}` : undefined;
  const parts = [
    text(line.function) ?? text(line.component),
    text(line.queue) && `[${text(line.queue)}]`,
    text(line.outcome),
    [text(line.method), text(line.path), text(line.statusCode)].filter(Boolean).join(' ') || undefined,
    text(line.messageId) && `message ${text(line.messageId)}`,
    text(line.orderId) && `order ${text(line.orderId)}`,
    attempt,
    typeof line.durationMs === 'number' ? `${line.durationMs} ms` : undefined,
  ].filter(Boolean);
  const message = text(line[messageKey]) ?? '';
  const head = parts.length ? `${parts.join(' ')}: ${message}` : message;
  return reason ? `${head} (${reason})` : head;
}

let load: NodeRequire | undefined;

/** A stream that writes each pino line to standard output as one readable line (errors add their stack). */
export function prettyDestination(options: { messageKey?: string; destination?: number | DestinationStream } = {}): DestinationStream {
  // Loaded here, not imported: a deployed bundle never carries or loads it.
  load ??= createRequire(import.meta.url);
  const pretty = load('pino-pretty') as typeof PinoPretty;
  const messageKey = options.messageKey ?? 'message';
  return pretty({
    messageKey,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: [...SHOWN, ...NOISE].join(','),
    singleLine: true,
    messageFormat: (log) => readableMessage(log as Line, messageKey),
    destination: options.destination ?? 1,
    sync: true,
  });
}
