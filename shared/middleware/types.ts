/** Types shared by the queue-function middleware. */
import type { Context } from 'aws-lambda';
import type { Logger } from 'pino';
import type { AmqpHeaderValue, RabbitMQProperties } from './rmq-event/index.js';

export { ATTEMPT_HEADER } from './headers.js';

/** One message of an `aws:rmq` batch, decoded; `payload` is filled in by the body-parsing middleware. */
export interface QueueRecord<T = unknown> {
  /** Position in the batch. */
  index: number;
  queue: string;
  vhost: string;
  redelivered: boolean;
  /** 1 for the first delivery, 2 after the first retry, ... (from ATTEMPT_HEADER). */
  attempt: number;
  messageId: string | undefined;
  correlationId: string | undefined;
  properties: RabbitMQProperties;
  headers: Record<string, AmqpHeaderValue>;
  body: Buffer;
  payload: T;
}

/** What happened to one record; the batch succeeds when every record has an outcome. */
export type RecordOutcome =
  | { outcome: 'processed'; result?: unknown }
  | { outcome: 'duplicate' }
  | { outcome: 'retried'; nextAttempt: number; delayMs: number; error: string }
  | { outcome: 'dead-lettered'; errorClass: string; error: string };

/** The context a record handler gets: Lambda's, plus what the middleware provides. */
export interface RecordContext<Tx = unknown> extends Context {
  /** Logger with function, request id, message id, queue, attempt and correlation id on every line. */
  logger: Logger;
  /** The invocation's own context, one per batch: what batch-level middleware keys its state by. */
  invocation: Context;
  /** The transaction the message was claimed in; write through it so the claim and the writes commit together. */
  tx: Tx;
  /**
   * Runs `task` in the batch's transaction just before it commits, if this record succeeded (never for a
   * record rolled back to its savepoint): where writes many records share go in one statement. A task that
   * throws fails the whole batch (rolled back, redelivered).
   */
  beforeCommit(task: () => Promise<void> | void): void;
  /** Runs `task` once the record's transaction has committed (never after a rollback). */
  afterCommit(task: () => Promise<void> | void): void;
}

/** The whole invocation's report, returned by the handler (Lambda ignores it for MQ; the local trigger counts it). */
export type { BatchReport } from './metrics/index.js';
