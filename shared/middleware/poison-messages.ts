/**
 * Poison messages: per-record middleware that decides what happens to a record that failed, so that it
 * never fails the whole batch. Permanent errors (unparseable body, schema violation, unknown event type, a
 * domain error marked permanent) go to the queue's DLQ at once; transient ones are republished through the
 * retry exchange with a growing delay (the work queue is never held up), and dead-lettered after the last
 * attempt. Both publishes are confirmed before the record counts as handled; if that is not possible the
 * middleware rethrows, the batch fails and the broker redelivers it (idempotency makes that safe).
 *
 * A dead-lettered message keeps its body and properties and gains headers naming the error class, error,
 * first-failure time, attempts and original queue.
 *
 *   middy(recordHandler).use(poisonMessages({ publisher, retryDelaysMs: [1000, 10000, 60000] }))
 */
import type middy from '@middy/core';
import type { OutgoingMessage } from './amqp/publisher.js';
import { republishProperties } from './amqp/republish.js';
import { classifyError, DeadLetterPublishError, isLockContention } from './errors.js';
import { ATTEMPT_HEADER, FAILURE_HEADERS, failureHeaders, RETRY_DELAY_HEADER } from './headers.js';
import { publishSpan, withTraceHeaders } from './tracing/index.js';
import type { QueueRecord, RecordContext, RecordOutcome } from './types.js';

/** Headers this middleware adds to retried and dead-lettered messages (defined with the messaging contract). */
export { FAILURE_HEADERS } from './headers.js';

/** What retries and dead letters are published with: resolves only once the broker has the message (confirms). */
export interface ConfirmingPublisher {
  publish(message: OutgoingMessage): Promise<void>;
}

export interface PoisonMessageOptions {
  /** Publisher (confirms + mandatory), or a function returning it. */
  publisher: ConfirmingPublisher | (() => ConfirmingPublisher);
  /**
   * Headers exchange of the retry path (default `retry`): a message published to it with routing key = its
   * queue and header `retry-delay-ms` waits in the queue of that delay, then returns to its queue.
   */
  retryExchange?: string;
  /** Exchange dead letters go to, routed by the queue's name (default `dlx`). */
  deadLetterExchange?: string;
  /** Delay before each retry, in ms; its length is the number of retries (default 1 s, 10 s, 60 s). A function is asked at each failure. */
  retryDelaysMs?: readonly number[] | (() => readonly number[]);
  /** Longest error message kept in a header (default 1000 characters). */
  maxErrorLength?: number;
}

const defaults = {
  retryDelaysMs: [1_000, 10_000, 60_000],
  maxErrorLength: 1_000,
  retryExchange: 'retry',
  deadLetterExchange: 'dlx',
};

type Request = middy.Request<QueueRecord<unknown>, unknown, Error, RecordContext>;

export function poisonMessages<T = unknown>(
  options: PoisonMessageOptions,
): middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext> {
  const { maxErrorLength, retryExchange, deadLetterExchange } = { ...defaults, ...options };
  const delays = options.retryDelaysMs ?? defaults.retryDelaysMs;
  const retryDelays = typeof delays === 'function' ? delays : () => delays;
  const publisher = () => (typeof options.publisher === 'function' ? options.publisher() : options.publisher);

  // Runs for any failure of the record, whether or not an earlier `before` ran: it only reads the record.
  const onError = async (request: Request): Promise<void> => {
    const record = request.event;
    const retryDelaysMs = retryDelays();
    const error = request.error ?? new Error('unknown failure');
    const errorClass = classifyError(error);
    const message = String(error.message ?? error).slice(0, maxErrorLength);
    // An attempt count past the last retry is not one this middleware wrote: count it as a first delivery.
    const attempt = record.attempt <= retryDelaysMs.length + 1 ? record.attempt : 1;
    const failure = failureHeaders({
      errorClass,
      name: error.name ?? 'Error',
      message,
      attempts: attempt,
      queue: record.queue,
      firstFailedAt: record.headers[FAILURE_HEADERS.firstFailedAt],
    });
    // A message another invocation is processing right now, or whose record met a lock another batch holds, has not
    // failed: it waits the first delay and comes back with the same attempt (the other invocation ends within its
    // timeout, so this cannot go on).
    const notAnAttempt = (error as { countsAsAttempt?: unknown }).countsAsAttempt === false || isLockContention(error);
    const delayMs = errorClass !== 'transient' ? undefined : notAnAttempt ? retryDelaysMs[0] : retryDelaysMs[attempt - 1];
    const retry = delayMs !== undefined;
    const nextAttempt = notAnAttempt ? attempt : attempt + 1;
    const headers = { ...record.headers, ...failure, ...(retry ? { [ATTEMPT_HEADER]: nextAttempt, [RETRY_DELAY_HEADER]: delayMs } : {}) };
    // Retries go back to the queue the message came from; dead letters to that queue's DLQ (dlx, keyed by queue).
    const target = { exchange: retry ? retryExchange : deadLetterExchange, routingKey: record.queue };
    try {
      // In a publish span under the record's: the copy carries that span's trace context (not the one it came
      // with), so the retried delivery or the dead letter continues the same trace, one step further.
      await publishSpan({ ...target, messageId: record.messageId }, undefined, (trace) =>
        publisher().publish({
          ...target,
          body: record.body,
          options: republishProperties(record.properties, withTraceHeaders(headers, trace)),
        }),
      );
    } catch (publishError) {
      throw new DeadLetterPublishError(
        `Could not ${retry ? 'schedule a retry for' : 'dead-letter'} message ${record.messageId ?? '(no id)'}: ${(publishError as Error).message}`,
        { cause: error },
      );
    }
    const outcome: RecordOutcome = retry
      ? { outcome: 'retried', nextAttempt, delayMs, error: `${error.name}: ${message}` }
      : { outcome: 'dead-lettered', errorClass, error: `${error.name}: ${message}` };
    request.response = outcome;
  };

  return { onError } as middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext>;
}
