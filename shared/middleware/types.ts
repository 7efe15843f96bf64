/** Types shared by the queue-function middleware. */
import type { Context } from 'aws-lambda';
import type { Logger } from '../logging';
import type { AmqpHeaderValue, RabbitMQProperties } from '../rmq-event';
import type { DomainEvent } from '../events';
import type { Tx } from '../store';

export { ATTEMPT_HEADER } from '../contract/headers';

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
export interface RecordContext extends Context {
  /** Logger with function, request id, message id, queue, attempt and correlation id on every line. */
  logger: Logger;
  /** The transaction the message was claimed in; write through it so the claim and the writes commit together. */
  tx: Tx;
  /** Adds an outgoing event to the outbox in the same transaction; published after commit. */
  emit(event: DomainEvent): Promise<void>;
}

/** The whole invocation's report, returned by the handler (Lambda ignores it for MQ; tests read it). */
export interface BatchReport {
  records: number;
  processed: number;
  duplicates: number;
  retried: number;
  deadLettered: number;
}
