/**
 * Idempotency: per-record middleware that claims the message's id in the inbox table inside the same
 * database transaction as the record handler's own writes and its outgoing events (outbox). The claim and
 * the effects commit together or not at all, so a redelivered or duplicated message has exactly one
 * effect: also after a crash between commit and ack, and when two workers get the same message at once
 * (the second claim waits on the first transaction and then finds the id taken).
 *
 * Stronger than Powertools' idempotency utility, whose record lives outside the business transaction.
 * Effects that leave the database (a webhook) are at-least-once: pass the message id along as an
 * idempotency key so the receiver can dedupe.
 *
 *   middy(recordHandler).use(idempotency({ store: () => openStore(), consumer: 'inventory-reservation' }))
 */
import type middy from '@middy/core';
import { eventProperties, ROUTES, type DomainEvent } from '../events';
import { toShortstr } from '../messaging/republish';
import type { NewOutboxMessage, Store, Tx } from '../store';
import { MissingMessageIdError } from './errors';
import type { QueueRecord, RecordContext, RecordOutcome } from './types';

export interface IdempotencyOptions {
  /** The store, or a function that opens it on first use (a Lambda container reuses it). */
  store: Store | (() => Promise<Store>);
  /** Name the claims are kept under; each consuming function has its own. */
  consumer: string;
  /** `appId` of the events the handler emits (default: the consumer name). */
  appId?: string;
  /** Called after commit with the outbox rows the record emitted, e.g. to have them published. */
  onCommitted?: (rows: readonly NewOutboxMessage[], context: RecordContext) => Promise<void>;
}

interface OpenTransaction {
  tx: Tx;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

/** Signals a deliberate rollback through the store's transaction callback. */
class Rollback extends Error {}

/**
 * Opens a transaction and hands it out, so that `before` can begin it and `after`/`onError` finish it
 * (the store's API is callback-shaped: the callback stays pending until commit or rollback).
 */
function openTransaction(store: Store): Promise<OpenTransaction> {
  return new Promise((resolveOpen, rejectOpen) => {
    let finish!: (error?: Error) => void;
    const finished = new Promise<void>((resolve, reject) => {
      finish = (error) => (error ? reject(error) : resolve());
    });
    let opened = false;
    const completion = store.transaction(async (tx) => {
      opened = true;
      resolveOpen({
        tx,
        commit: async () => {
          finish();
          await completion;
        },
        rollback: async () => {
          finish(new Rollback('rollback'));
          await completion.catch((error: unknown) => {
            if (!(error instanceof Rollback)) throw error;
          });
        },
      });
      await finished;
    });
    completion.catch((error: unknown) => {
      if (!opened) rejectOpen(error);
    });
  });
}

type Request = middy.Request<QueueRecord<unknown>, unknown, Error, RecordContext, { transaction?: OpenTransaction; emitted?: NewOutboxMessage[] }>;

export function idempotency<T = unknown>(options: IdempotencyOptions): middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext> {
  const appId = options.appId ?? options.consumer;
  let store: Promise<Store> | undefined;
  const getStore = () => {
    store ??= typeof options.store === 'function' ? options.store() : Promise.resolve(options.store);
    store.catch(() => (store = undefined));
    return store;
  };

  const before = async (request: Request): Promise<RecordOutcome | undefined> => {
    const { messageId, correlationId } = request.event;
    if (!messageId) throw new MissingMessageIdError('Message has no messageId; it cannot be processed exactly once');
    const transaction = await openTransaction(await getStore());
    const claimed = await transaction.tx.inbox.claim(options.consumer, messageId).catch(async (error: unknown) => {
      await transaction.rollback();
      throw error;
    });
    if (!claimed) {
      await transaction.rollback();
      return { outcome: 'duplicate' }; // early response: the handler does not run
    }
    const emitted: NewOutboxMessage[] = [];
    request.internal.transaction = transaction;
    request.internal.emitted = emitted;
    request.context.tx = transaction.tx;
    request.context.emit = async (event: DomainEvent) => {
      const route = ROUTES[event.event_type];
      const row: NewOutboxMessage = {
        event_id: event.event_id,
        exchange: route.exchange,
        routing_key: route.routingKey,
        body: event,
        // Cut to a shortstr: a correlationId that arrived with bytes that are not UTF-8 can be longer once
        // decoded, and an event amqplib refuses to publish would stay in the outbox for ever.
        properties: eventProperties(event, appId, toShortstr(correlationId)),
      };
      await transaction.tx.outbox.add([row]);
      emitted.push(row);
    };
    return undefined;
  };

  const after = async (request: Request): Promise<void> => {
    const { transaction, emitted = [] } = request.internal;
    if (!transaction) return;
    request.internal.transaction = undefined;
    await transaction.commit();
    request.response = { outcome: 'processed', result: request.response };
    // The record's effects are committed: a failure to publish now must not fail the record. The rows stay
    // in the outbox and the relay publishes them later.
    if (emitted.length && options.onCommitted) {
      await options.onCommitted(emitted, request.context).catch((error: unknown) =>
        request.context.logger?.warn({ err: error, events: emitted.length }, 'events left in the outbox for the relay'),
      );
    }
  };

  // Safe when `before` never ran or failed before opening a transaction: there is nothing to roll back.
  const onError = async (request: Request): Promise<void> => {
    const { transaction } = request.internal;
    if (!transaction) return;
    request.internal.transaction = undefined;
    await transaction.rollback();
  };

  return { before, after, onError } as middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext>;
}
