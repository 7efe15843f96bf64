/**
 * Idempotency: per-record middleware that claims the message's id in an inbox inside the same database
 * transaction as the record handler's own writes. The claim and the effects commit together or not at all,
 * so a redelivered or duplicated message has exactly one effect: also after a crash between commit and
 * ack, and when two workers get the same message at once (the second claim waits on the first transaction
 * and then finds the id taken).
 *
 * Stronger than Powertools' idempotency utility, whose record lives outside the business transaction.
 * Effects that leave the database (a webhook) are at-least-once: pass the message id along as an
 * idempotency key so the receiver can dedupe. The store is pluggable (InboxStore): any database with
 * transactions and a unique (consumer, message id) key will do; this app's is the SQL inbox table.
 *
 *   middy(recordHandler).use(idempotency({ store: () => openInbox(), consumer: 'inventory-reservation' }))
 */
import type middy from '@middy/core';
import { MissingMessageIdError } from './errors';
import type { QueueRecord, RecordContext, RecordOutcome } from './types';

/** Where claims are kept: transactions, and a claim that is true only for the first of a (consumer, id). */
export interface InboxStore<Tx> {
  /** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<R>(work: (tx: Tx) => Promise<R>): Promise<R>;
  /** True for the first claim of `messageId` by `consumer`, false if it was claimed before (inside `tx`). */
  claim(tx: Tx, consumer: string, messageId: string): Promise<boolean>;
}

export interface IdempotencyOptions<Tx> {
  /** The store, or a function that opens it on first use (a Lambda container reuses it). */
  store: InboxStore<Tx> | (() => Promise<InboxStore<Tx>>);
  /**
   * Name the claims are kept under: one per consuming function, and stable. Renaming the function must not
   * change it, or every message would be processed again under the new name.
   */
  consumer: string;
}

interface OpenTransaction<Tx> {
  tx: Tx;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

/** Signals a deliberate rollback through the store's transaction callback. */
class Rollback extends Error {}

/**
 * Opens a transaction and hands it out, so that `before` can begin it and `after`/`onError` finish it
 * (a store's transaction API is callback-shaped: the callback stays pending until commit or rollback).
 */
function openTransaction<Tx>(store: InboxStore<Tx>): Promise<OpenTransaction<Tx>> {
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

type Internal<Tx> = {
  transaction?: OpenTransaction<Tx>;
  afterCommit?: Array<() => Promise<void> | void>;
};

type Request<Tx> = middy.Request<QueueRecord<unknown>, unknown, Error, RecordContext<Tx>, Internal<Tx>>;

export function idempotency<T = unknown, Tx = unknown>(
  options: IdempotencyOptions<Tx>,
): middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext<Tx>> {
  const { consumer } = options;
  let store: Promise<InboxStore<Tx>> | undefined;
  const getStore = () => {
    store ??= typeof options.store === 'function' ? options.store() : Promise.resolve(options.store);
    store.catch(() => (store = undefined));
    return store;
  };

  const before = async (request: Request<Tx>): Promise<RecordOutcome | undefined> => {
    const { messageId } = request.event;
    if (!messageId) throw new MissingMessageIdError('Message has no messageId; it cannot be processed exactly once');
    const inbox = await getStore();
    const transaction = await openTransaction(inbox);
    const claimed = await inbox.claim(transaction.tx, consumer, messageId).catch(async (error: unknown) => {
      await transaction.rollback();
      throw error;
    });
    if (!claimed) {
      await transaction.rollback();
      return { outcome: 'duplicate' }; // early response: the handler does not run
    }
    const tasks: Array<() => Promise<void> | void> = [];
    request.internal.transaction = transaction;
    request.internal.afterCommit = tasks;
    request.context.tx = transaction.tx;
    request.context.afterCommit = (task) => tasks.push(task);
    return undefined;
  };

  const after = async (request: Request<Tx>): Promise<void> => {
    const { transaction, afterCommit = [] } = request.internal;
    if (!transaction) return;
    request.internal.transaction = undefined;
    await transaction.commit();
    request.response = { outcome: 'processed', result: request.response };
    // The record's effects are committed: what runs after must not fail the record.
    for (const task of afterCommit) {
      try {
        await task();
      } catch (error) {
        request.context.logger?.warn({ err: error }, 'after-commit task failed');
      }
    }
  };

  // Safe when `before` never ran or failed before opening a transaction: there is nothing to roll back.
  const onError = async (request: Request<Tx>): Promise<void> => {
    const { transaction } = request.internal;
    if (!transaction) return;
    request.internal.transaction = undefined;
    await transaction.rollback();
  };

  return { before, after, onError } as middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext<Tx>>;
}
