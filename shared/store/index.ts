/**
 * The storage layer: one interface over SQLite (a file, the default) and PostgreSQL (DATABASE_URL).
 *
 *   const store = await openStore();                 // connects and runs migrations
 *   await store.orders.get(id);                      // one statement
 *   await store.transaction(async (tx) => {          // several, atomically
 *     if (!(await tx.inbox.claim('inventory', messageId))) return; // already processed
 *     const result = await tx.stock.reserve(item, quantity);
 *     await tx.outbox.add([...]);
 *   });
 *
 * `store` and `tx` offer the same repositories (orders, stock, inbox, notifications, outbox), each bound to
 * the store or to the transaction. `store.db` / `tx.db` is the Kysely instance for anything else.
 * Note: on PostgreSQL an error inside a transaction aborts it; catch DuplicateError and the like outside.
 */
import { config } from '../config';
import type { Store } from './open';

export * from './errors';
export type { Store, Tx } from './open';
export type { NewOrder, OrderPage } from './orders';
export { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './orders';
export type { NewOutboxMessage, OutboxMessage } from './outbox';
export * from './retention';
export * from './schema';
export type { ReserveResult } from './stock';

export interface OpenStoreOptions {
  /** A postgres:// URL; selects PostgreSQL. */
  databaseUrl?: string;
  /** The SQLite file (":memory:" for a private in-memory database); used when there is no databaseUrl. */
  sqlitePath?: string;
}

/**
 * Opens the store and brings its schema up to date. Without options it follows the configuration:
 * DATABASE_URL if set, else the SQLite file at SQLITE_PATH. Given either option, the configuration is not read.
 * Throws StoreError (MigrationError for a failed migration) naming the database, password redacted.
 */
export async function openStore(options: OpenStoreOptions = {}): Promise<Store> {
  const explicit = options.databaseUrl !== undefined || options.sqlitePath !== undefined;
  const databaseUrl = explicit ? options.databaseUrl : config().databaseUrl;
  // The store's code (Kysely, the repositories, the drivers) loads here, on first use, not at import.
  const { openPostgres, openSqlite } = await import('./open');
  if (databaseUrl) return openPostgres(databaseUrl);
  return openSqlite(options.sqlitePath ?? config().sqlitePath);
}
