/**
 * This app's queue functions: the generic queueFunction (shared/middleware) bound to the app's pieces. Each
 * record runs in a transaction of the app's store, which is also the inbox; `emit` puts an event into the
 * outbox in that transaction; after the batch, the events its records committed are published together
 * (what fails to publish stays in the outbox for the relay). Event types handled and the contract's
 * messageId/type check come from the schema.
 *
 * Dependencies default to the process's own (configuration, store, broker), opened on first use and reused
 * while the container lives; a test or a bench passes its own.
 */
import type { Context } from 'aws-lambda';
import { type InboxStore, type QueueRecord, queueFunction, type RecordContext } from 'middy-rabbitmq';
import { ORDER_ID_ATTRIBUTE, tagActiveSpan } from 'middy-rabbitmq/tracing';
import type { z } from 'zod';
import { config } from '../config';
import { type DomainEvent, eventIdentity, eventTypesOf } from '../events';
import { lazy } from '../lib/lazy';
import { type Logger, logger as processLogger } from '../logging';
import { messaging, type Publisher } from '../messaging';
import { DEFAULT_PUBLISH_TIMEOUT_MS, outboxMessage, publishCommitted as publishFromMemory } from '../outbox';
import { type NewOutboxMessage, openStore, type Store, type Tx } from '../store';

/** What an invocation is assumed to have left when its context cannot say (a hand-made context in a test). */
const DEFAULT_INVOCATION_MS = 30_000;

/** The process-wide store, opened on first use (a Lambda container reuses it). */
export const processStore: () => Promise<Store> = lazy(() => openStore());

/** What a record handler of this app gets: the generic record context, and `emit`. */
interface AppRecordContext extends RecordContext<Tx> {
  /**
   * Adds an outgoing event to the outbox, committed with the record (written with the batch's other events
   * just before the batch commits, only if this record succeeded); published after the batch.
   */
  emit(event: DomainEvent): Promise<void>;
}

/** What an app queue function talks to; each has the process's own as default. */
export interface QueueDeps {
  store: () => Promise<Store>;
  publisher: () => Publisher;
  logger: () => Logger;
  retryDelaysMs: () => readonly number[];
}

const processDeps: QueueDeps = {
  store: processStore,
  publisher: () => messaging().publisher,
  logger: () => processLogger(),
  retryDelaysMs: () => config().retryDelaysMs,
};

export interface AppQueueFunctionOptions<T extends DomainEvent> {
  /** Function name for logs. */
  name: string;
  /** Name the inbox claims are kept under (stable across renames), and the `appId` of the events emitted. */
  consumer: string;
  /** The events handled (an event schema of shared/events). */
  schema: z.ZodType<T>;
  handle: (record: QueueRecord<T>, context: AppRecordContext) => Promise<unknown>;
  deps?: Partial<QueueDeps>;
}

/**
 * The app's SQL inbox as the idempotency middleware's store: claims in the store's own transactions, a batch's
 * in one statement (a round trip per record less on PostgreSQL).
 */
const inboxOf = (store: Store): InboxStore<Tx> => ({
  begin: () => store.begin(),
  claim: (tx, consumer, messageId) => tx.inbox.tryClaim(consumer, messageId),
  claimMany: (tx, consumer, messageIds) => tx.inbox.tryClaimAll(consumer, messageIds),
  release: (tx, consumer, messageIds) => tx.inbox.release(consumer, messageIds),
});

export function appQueueFunction<T extends DomainEvent>(options: AppQueueFunctionOptions<T>) {
  const deps: QueueDeps = { ...processDeps, ...options.deps };
  const { consumer } = options;
  // The events of each invocation's succeeded records: written to the outbox in one statement just before
  // the batch commits, then published from memory once it has.
  const emittedBy = new WeakMap<Context, NewOutboxMessage[]>();

  return queueFunction<T, Tx>({
    name: options.name,
    consumer,
    schema: options.schema,
    eventTypes: eventTypesOf(options.schema),
    identity: eventIdentity,
    store: async () => inboxOf(await deps.store()),
    publisher: () => deps.publisher(),
    retryDelaysMs: () => deps.retryDelaysMs(),
    logger: () => deps.logger(),
    // EMF lines for CloudWatch: on in a deployed function, off locally unless METRICS_EMF=true (the local runner
    // serves Prometheus instead).
    cloudWatchMetrics: () => config().cloudWatchMetrics,
    // In the batch's transaction: the outbox rows of every record that succeeded, one statement. Published by
    // publishCommitted below; the relays leave them alone until the invocation could be over and the publish
    // waited out, and after a crash they send them then.
    onCommitting: async (invocation, tx) => {
      const rows = emittedBy.get(invocation);
      if (!rows?.length) return;
      const remainingMs =
        typeof invocation.getRemainingTimeInMillis === 'function' ? invocation.getRemainingTimeInMillis() : DEFAULT_INVOCATION_MS;
      await tx.outbox.add(rows, { leaseMs: remainingMs + DEFAULT_PUBLISH_TIMEOUT_MS });
    },
    // After the batch's one commit: its committed events, published together from memory (one round of
    // confirms, one statement marking them); what fails stays in the outbox for the relay.
    onCommitted: async (invocation) => {
      const rows = emittedBy.get(invocation) ?? [];
      emittedBy.delete(invocation);
      if (rows.length === 0) return;
      const outcomes = await publishFromMemory(await deps.store(), deps.publisher(), rows);
      const left = outcomes.filter((outcome) => outcome !== 'published').length;
      if (left) (invocation as Context & { logger?: Logger }).logger?.warn({ events: left }, 'events left in the outbox for the relay');
    },
    handle: async (record, context) => {
      tagActiveSpan({ [ORDER_ID_ATTRIBUTE]: record.payload.order_id }); // the record's span: find the order's trace by its id
      const emitted: NewOutboxMessage[] = [];
      const emit = async (event: DomainEvent) => {
        emitted.push(outboxMessage(event, consumer, record.correlationId));
      };
      // Only a record that succeeded adds its events to the batch's (a failed one rolls back to its savepoint).
      context.beforeCommit(() => {
        if (emitted.length === 0) return;
        const rows = emittedBy.get(context.invocation) ?? [];
        rows.push(...emitted);
        emittedBy.set(context.invocation, rows);
      });
      return options.handle(record, { ...context, emit });
    },
  });
}
