/**
 * A queue function in one call: the batch-level and per-record middleware stacked in the order that makes
 * them correct, around a record handler that sees one typed record at a time and never thinks about
 * batches, duplicates or dead letters. It returns the middy handler, so a caller can `.use()` more batch-level
 * middleware.
 *
 * Batch level (`before` top-down, `after`/`onError` bottom-up):
 *   structuredLogging   outermost: the logger exists before anything can fail, and it sees every failure
 *   cloudWatchMetrics   (when given) outside the unit of work, so its `after` counts only a committed batch
 *   invocationTracing   the invocation's span, around the unit of work so its transaction and publishes are in it;
 *                       its logger carries the span's ids (each record's span: forEachRecord)
 *   idempotency.batch   the batch's one transaction: begun by the first record that needs it, committed after
 *                       the last (then the records' afterCommit tasks and `onCommitted`), rolled back on a throw
 *   rabbitmqRecords     decodes the aws:rmq event into records
 *   forEachRecord       base handler: runs the per-record pipeline below for each record, in order
 *
 * Per record (`before` top-down, `after`/`onError` bottom-up):
 *   poisonMessages      outermost, so its onError sees every failure below, after the record's savepoint has
 *                       been rolled back: a message is dead-lettered or retried only when none of its effects stay
 *   parseBody           before idempotency: a malformed message never takes a savepoint or claims an id
 *   idempotency.record  innermost: a savepoint spans exactly the claim and the handler's writes
 *   handler             the domain step, writing through context.tx
 *
 * Everything it talks to is given: the inbox store and the publisher (so it runs against an in-memory
 * database and a recording publisher in a unit test), and the logger.
 */
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { type InboxStore, idempotency } from './idempotency.js';
import { structuredLogging } from './logging.js';
import { type CloudWatchMetricsOptions, cloudWatchMetrics } from './metrics/index.js';
import { parseBody } from './parse-body.js';
import { type ConfirmingPublisher, poisonMessages } from './poison-messages.js';
import { forEachRecord, rabbitmqRecords } from './records.js';
import type { RabbitMQEvent } from './rmq-event/index.js';
import { invocationTracing } from './tracing/invocation.js';
import type { BatchReport, QueueRecord, RecordContext } from './types.js';

export interface QueueFunctionOptions<T, Tx> {
  /** Function name for logs. */
  name: string;
  /** Name the idempotency claims are kept under: stable across renames of the function (see idempotency). */
  consumer: string;
  /** Payload schema of the messages this function handles. */
  schema: z.ZodType<T>;
  /** Event types handled, by the body's `event_type`; any other is dead-lettered as UnknownEventTypeError. */
  eventTypes?: readonly string[];
  /** The messageId and type a payload's message must carry (see parseBody); others are dead-lettered. */
  identity?: (payload: T) => { messageId: string; type: string };
  /** The domain step for one record. */
  handle: (record: QueueRecord<T>, context: RecordContext<Tx>) => Promise<unknown>;
  /** Where the idempotency claims are kept, in the same transactions as the handler's writes. */
  store: InboxStore<Tx> | (() => Promise<InboxStore<Tx>>);
  /** Publishes retries and dead letters with confirms. */
  publisher: ConfirmingPublisher | (() => ConfirmingPublisher);
  /** Delay before each retry, in ms (default 1 s, 10 s, 60 s), or a function asked at each failure. */
  retryDelaysMs?: readonly number[] | (() => readonly number[]);
  /** Exchanges of the retry path and of dead letters (defaults `retry`, `dlx`; see poisonMessages). */
  retryExchange?: string;
  deadLetterExchange?: string;
  /** The logger, or a function giving it at the first invocation (default: plain pino at LOG_LEVEL). */
  logger?: Logger | (() => Logger);
  /** Runs in the batch's transaction just before its commit (e.g. to write the records' events in one statement). */
  onCommitting?: (invocation: Context, tx: Tx) => Promise<void>;
  /** Runs once the batch's transaction has committed, with the invocation's context (e.g. to publish its events). */
  onCommitted?: (invocation: Context) => Promise<void>;
  /** CloudWatch embedded-metric-format lines per invocation (metrics/cloudwatch.ts); asked at the first invocation. */
  cloudWatchMetrics?: CloudWatchMetricsOptions | (() => CloudWatchMetricsOptions);
}

export function queueFunction<T, Tx>(options: QueueFunctionOptions<T, Tx>) {
  const { retryDelaysMs, retryExchange, deadLetterExchange, eventTypes, identity } = options;
  const unitOfWork = idempotency<T, Tx>({
    store: options.store,
    consumer: options.consumer,
    ...(options.onCommitting ? { onCommitting: options.onCommitting } : {}),
    ...(options.onCommitted ? { onCommitted: options.onCommitted } : {}),
  });
  const perRecord = middy<QueueRecord<T>, unknown, Error, RecordContext<Tx>>()
    .use(
      poisonMessages<T>({
        publisher: options.publisher,
        ...(retryDelaysMs ? { retryDelaysMs } : {}),
        ...(retryExchange ? { retryExchange } : {}),
        ...(deadLetterExchange ? { deadLetterExchange } : {}),
      }) as middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext<Tx>>,
    )
    .use(
      parseBody<T>({
        schema: options.schema,
        ...(eventTypes ? { eventTypes } : {}),
        ...(identity ? { identity } : {}),
      }) as middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext<Tx>>,
    )
    .use(unitOfWork.record)
    .handler(options.handle);

  const handler = middy<RabbitMQEvent, BatchReport>().use(
    structuredLogging({ functionName: options.name, ...(options.logger ? { logger: options.logger } : {}) }),
  );
  if (options.cloudWatchMetrics)
    handler.use(cloudWatchMetrics(options.cloudWatchMetrics) as middy.MiddlewareObj<RabbitMQEvent, BatchReport>);
  return handler
    .use(invocationTracing({ functionName: options.name }) as middy.MiddlewareObj<RabbitMQEvent, BatchReport>)
    .use(unitOfWork.batch as middy.MiddlewareObj<RabbitMQEvent, BatchReport>)
    .use(rabbitmqRecords())
    .handler(forEachRecord(perRecord as unknown as Parameters<typeof forEachRecord>[0]));
}
