/**
 * An InboxStore that keeps its claims in this process's memory: for tests, local runs and functions whose
 * effects need no transaction of their own. It dedupes within one warm container only (a cold start forgets
 * every claim, and two containers never see each other's), so it is NOT the transactional way: for effects in a
 * database, implement InboxStore on that database (claims in a table with a unique (consumer, message id) key,
 * in the same transaction as the handler's writes), as the idempotency middleware's doc describes.
 *
 *   const store = memoryInboxStore();
 *   export const handler = queueFunction({ name, consumer: 'my-fn', schema, handle, store, publisher });
 */
import type { InboxStore, UnitOfWork } from './idempotency.js';

/** The transaction a memory inbox hands the handler (`context.tx`): the claims it holds so far. */
export interface MemoryInboxTransaction {
  readonly claims: readonly string[];
}

interface OpenTransaction extends MemoryInboxTransaction {
  claims: string[];
  savepoints: Map<string, number>;
  open: boolean;
}

const keyOf = (consumer: string, messageId: string) => `${consumer}\u0000${messageId}`;

/** A new, empty in-memory inbox (see the module's doc for what it does not give). */
export function memoryInboxStore(): InboxStore<MemoryInboxTransaction> {
  const committed = new Set<string>();
  /** Claims of open transactions: a second transaction claiming one of them is told `busy`. */
  const pending = new Map<string, OpenTransaction>();

  const forget = (tx: OpenTransaction, from: number) => {
    for (const key of tx.claims.splice(from)) pending.delete(key);
  };

  return {
    async begin(): Promise<UnitOfWork<MemoryInboxTransaction>> {
      const tx: OpenTransaction = { claims: [], savepoints: new Map(), open: true };
      const close = () => {
        tx.open = false;
        tx.savepoints.clear();
      };
      return {
        tx,
        async savepoint(name) {
          tx.savepoints.set(name, tx.claims.length);
        },
        async rollbackToSavepoint(name) {
          const mark = tx.savepoints.get(name);
          if (mark === undefined) throw new Error(`No savepoint ${name}`);
          forget(tx, mark);
        },
        async releaseSavepoint(name) {
          tx.savepoints.delete(name);
        },
        async commit() {
          for (const key of tx.claims) {
            committed.add(key);
            pending.delete(key);
          }
          close();
        },
        async rollback() {
          forget(tx, 0);
          close();
        },
      };
    },
    async claim(transaction, consumer, messageId) {
      const tx = transaction as OpenTransaction;
      if (!tx.open) throw new Error('The transaction is no longer open');
      const key = keyOf(consumer, messageId);
      if (committed.has(key)) return 'duplicate';
      const holder = pending.get(key);
      if (holder === tx) return 'duplicate';
      if (holder) return 'busy';
      pending.set(key, tx);
      tx.claims.push(key);
      return 'claimed';
    },
  };
}
