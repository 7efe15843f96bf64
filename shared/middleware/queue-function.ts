/**
 * A queue function in one call: the batch-level and per-record middleware stacked in the order that makes
 * them correct, around a record handler that sees one typed record at a time and never thinks about
 * batches, duplicates or dead letters.
 *
 * Batch level (one middy instance per invocation):
 *   structuredLogging   outermost: the logger exists before anything can fail, and it sees every failure
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
  /** The domain step for one record. */
  handle: (record: QueueRecord<T>, context: RecordContext) => Promise<unknown>;
  /** Overrides for tests and special deployments. */
  logger?: Logger;
  store?: Store | (() => Promise<Store>);
  retryDelaysMs?: readonly number[];
  /** Publishes the events a record emitted, right after commit (default: publish and mark published). */
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
    .use(parseBody<T>({ schema: options.schema, ...(options.eventTypes ? { eventTypes: options.eventTypes } : {}) }))
    .use(
      idempotency<T>({
        store: resolveStore,
        consumer: options.name,
        onCommitted: async (rows) => (options.onCommitted ?? publishCommitted)(rows, await resolveStore()),
      }),
    )
    .handler(options.handle);

  return middy<RabbitMQEvent, BatchReport>()
    .use(structuredLogging({ functionName: options.name, ...(options.logger ? { logger: options.logger } : {}) }))
    .use(rabbitmqRecords())
    .handler(forEachRecord(perRecord));
}

/** Default after-commit step: publish each emitted event now, through the outbox's own path (confirm, then mark). */
async function publishCommitted(rows: readonly NewOutboxMessage[], store: Store): Promise<void> {
  const { publisher } = messaging();
  for (const row of rows) await publishEvent(store, publisher, row.event_id);
}
