/**
 * A queue function in one call: the batch-level and per-record middleware stacked in the order that makes
 * them correct, around a record handler that sees one typed record at a time and never thinks about
 * batches, duplicates or dead letters.
 *
 * Batch level (one middy instance per invocation):
 *   structuredLogging   outermost: the logger exists before anything can fail, and it sees every failure
 *   publishCommitted    after the records: publishes the events they committed, all at once (one round of
 *                       confirms per batch instead of one per record); what fails stays for the outbox relay
 *   rabbitmqRecords     decodes the aws:rmq event into records
 *   forEachRecord       base handler: runs the per-record pipeline below for each record, in order
 *
 * Per record (one middy instance per record; `before` runs top-down, `after`/`onError` bottom-up):
 *   poisonMessages      outermost, so its onError sees every failure below, after the transaction has been
 *                       rolled back: a message is dead-lettered or retried only when none of its effects stayed
 *   parseBody           before idempotency: a malformed message never opens a transaction or claims an id
 *   idempotency         innermost: the transaction spans exactly the claim and the handler's writes
 *   handler             the domain step, writing through context.tx and context.emit
 */
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import type { z } from 'zod';
import { config } from '../config';
import type { Logger } from '../logging';
import { messaging } from '../messaging';
import { publishEvent } from '../outbox';
import type { RabbitMQEvent } from '../rmq-event';
import { openStore, type NewOutboxMessage, type Store } from '../store';
import { idempotency } from './idempotency';
import { structuredLogging } from './logging';
import { parseBody } from './parse-body';
import { poisonMessages } from './poison-messages';
import { forEachRecord, rabbitmqRecords } from './records';
import type { BatchReport, QueueRecord, RecordContext } from './types';

export interface QueueFunctionOptions<T> {
  /** Function name for logs, and the consumer name idempotency claims are kept under. */
  name: string;
  /** Payload schema of the messages this function handles. */
  schema: z.ZodType<T>;
  /** Event types handled; any other is dead-lettered as UnknownEventTypeError. */
  eventTypes?: readonly string[];
  /** The messageId and type a payload's message must carry (see parseBody); others are dead-lettered. */
  identity?: (payload: T) => { messageId: string; type: string };
  /** The domain step for one record. */
  handle: (record: QueueRecord<T>, context: RecordContext) => Promise<unknown>;
  /** Overrides for tests and special deployments. */
  logger?: Logger;
  store?: Store | (() => Promise<Store>);
  retryDelaysMs?: readonly number[];
  /** Runs after each record's commit with the events it emitted (default: queue them for the batch's publish). */
  onCommitted?: (rows: readonly NewOutboxMessage[], store: Store) => Promise<void>;
}

let sharedStore: Promise<Store> | undefined;
/** The process-wide store, opened on first use (a Lambda container reuses it). */
export function defaultStore(): Promise<Store> {
  sharedStore ??= openStore();
  sharedStore.catch(() => (sharedStore = undefined));
  return sharedStore;
}

export function queueFunction<T>(options: QueueFunctionOptions<T>) {
  const store = options.store ?? defaultStore;
  const resolveStore = () => (typeof store === 'function' ? store() : Promise.resolve(store));
  const perRecord = middy<QueueRecord<T>, unknown, Error, RecordContext>()
    .use(poisonMessages<T>({ publisher: () => messaging().publisher, retryDelaysMs: options.retryDelaysMs ?? config().retryDelaysMs }))
    .use(
      parseBody<T>({
        schema: options.schema,
        ...(options.eventTypes ? { eventTypes: options.eventTypes } : {}),
        ...(options.identity ? { identity: options.identity } : {}),
      }),
    )
    .use(
      idempotency<T>({
        store: resolveStore,
        consumer: options.name,
        onCommitted: async (rows, context) =>
          options.onCommitted ? options.onCommitted(rows, await resolveStore()) : queueForPublish(context, rows),
      }),
    )
    .handler(options.handle);

  return middy<RabbitMQEvent, BatchReport>()
    .use(structuredLogging({ functionName: options.name, ...(options.logger ? { logger: options.logger } : {}) }))
    .use(publishCommitted(resolveStore))
    .use(rabbitmqRecords())
    .handler(forEachRecord(perRecord));
}

/** Where a batch collects the events its records committed; record contexts inherit it from the batch's. */
interface WithOutgoing {
  outgoing?: NewOutboxMessage[];
}

function queueForPublish(context: object, rows: readonly NewOutboxMessage[]): Promise<void> {
  (context as WithOutgoing).outgoing?.push(...rows);
  return Promise.resolve();
}

/**
 * Batch-level middleware: publishes the events the batch's records committed, in parallel, each through the
 * outbox's own path (confirm, then mark published). A failure leaves the row for the relay, so this never
 * fails the batch; it runs on the error path too, for the records that did commit.
 */
function publishCommitted(store: () => Promise<Store>): middy.MiddlewareObj<RabbitMQEvent, BatchReport> {
  const publishAll = async (request: middy.Request<RabbitMQEvent, BatchReport>) => {
    const context = request.context as Context & WithOutgoing & { logger?: Logger };
    const rows = context.outgoing ?? [];
    context.outgoing = [];
    if (rows.length === 0) return;
    const resolved = await store();
    const { publisher } = messaging();
    const results = await Promise.allSettled(rows.map((row) => publishEvent(resolved, publisher, row.event_id)));
    const failed = results.filter((result) => result.status === 'rejected' || result.value === 'failed').length;
    if (failed) context.logger?.warn({ events: failed }, 'events left in the outbox for the relay');
  };
  return {
    before: (request) => {
      (request.context as Context & WithOutgoing).outgoing = [];
    },
    after: publishAll,
    onError: async (request) => {
      await publishAll(request).catch(() => undefined); // the batch's own error is what counts here
    },
  };
}
