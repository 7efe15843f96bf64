/**
 * The store itself: repositories over Kysely, and opening SQLite or PostgreSQL with migrations. Loaded by
 * openStore (index.ts) on first use, so Kysely and the repositories are not a cold start's cost before a
 * function opens its store.
 */
import { resolve } from 'node:path';
import { Kysely, sql } from 'kysely';
import type { UnitOfWork as MiddlewareUnitOfWork } from 'middy-rabbitmq';
import { recordFailure, startSpan, traced } from 'middy-rabbitmq/tracing';
import { redactUrl } from '../config';
import { describeError, MigrationError, StoreError } from './errors';
import { Inbox } from './inbox';
import { type DialectName, migrate } from './migrations';
import { Notifications } from './notifications';
import { Orders } from './orders';
import { Outbox } from './outbox';
import type { Database } from './schema';
import { TRANSACTION_SPAN, transactionSpanOptions } from './spans';
import { Stock } from './stock';

/** The repositories, bound to one executor: the store itself or a transaction. */
class Repositories {
  readonly orders: Orders;
  readonly stock: Stock;
  readonly inbox: Inbox;
  readonly notifications: Notifications;
  readonly outbox: Outbox;

  constructor(
    readonly db: Kysely<Database>,
    readonly dialect: DialectName,
  ) {
    this.orders = new Orders(db, dialect);
    this.stock = new Stock(db);
    this.inbox = new Inbox(db, dialect);
    this.notifications = new Notifications(db, dialect);
    this.outbox = new Outbox(db, dialect);
  }
}

/** What a transaction callback gets: the same repositories, inside the transaction. */
export type Tx = Repositories;

/** A transaction controlled from outside (savepoints, commit, rollback), as the queue middleware runs a batch. */
export type UnitOfWork = MiddlewareUnitOfWork<Tx>;

/** An open store. Get one with openStore(); close it with close(). */
export class Store extends Repositories {
  constructor(
    db: Kysely<Database>,
    dialect: DialectName,
    /** Where the data lives: the SQLite file's absolute path, or the PostgreSQL URL with its password hidden. */
    readonly location: string,
    /** Migrations that openStore() applied (empty when the schema was already up to date). */
    readonly appliedMigrations: readonly string[],
  ) {
    super(db, dialect);
  }

  /**
   * Runs `fn` in one write transaction: committed when it resolves, rolled back when it throws. On SQLite
   * the write lock is taken at the start (`begin immediate`), so concurrent writers queue instead of failing.
   */
  async transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return traced(TRANSACTION_SPAN, transactionSpanOptions(this.dialect), () =>
      this.db.transaction().execute((trx) => fn(new Repositories(trx, this.dialect))),
    );
  }

  /**
   * Begins a transaction controlled from outside (a queue function's batch: one transaction, a savepoint per
   * record). Same write lock as `transaction`; the caller must commit or roll back.
   */
  async begin(): Promise<UnitOfWork> {
    // The transaction's span, from begin to commit or rollback, under the active context (the batch's).
    const span = startSpan(TRANSACTION_SPAN, transactionSpanOptions(this.dialect));
    const ending = async (end: Promise<void>, outcome: 'commit' | 'rollback') => {
      span.setAttribute('db.transaction.outcome', outcome);
      try {
        await end;
      } catch (error) {
        recordFailure(span, error);
        throw error;
      } finally {
        span.end();
      }
    };
    let trx: Awaited<ReturnType<ReturnType<Kysely<Database>['startTransaction']>['execute']>> | undefined;
    try {
      trx = await this.db.startTransaction().execute();
      // A batch holds the rows it wrote until it commits, so a record of a concurrent batch (another worker, or
      // concurrency > 1) that needs one of them would wait for that whole batch, and batches that wait on each
      // other's rows chain into lock waits and deadlocks that take a second each to break. On PostgreSQL such a
      // record gives up after BATCH_LOCK_TIMEOUT instead (lock_not_available) and is retried later without using
      // up an attempt (shared/middleware/errors.ts isLockContention); its batch goes on.
      if (this.dialect === 'postgres') await sql`select set_config('lock_timeout', ${BATCH_LOCK_TIMEOUT}, true)`.execute(trx);
    } catch (error) {
      await trx
        ?.rollback()
        .execute()
        .catch(() => undefined);
      recordFailure(span, error);
      span.end();
      throw error;
    }
    return {
      tx: new Repositories(trx, this.dialect),
      savepoint: async (name) => void (await trx.savepoint(name).execute()),
      rollbackToSavepoint: async (name) => void (await trx.rollbackToSavepoint(name as never).execute()),
      releaseSavepoint: async (name) => void (await trx.releaseSavepoint(name as never).execute()),
      commit: () => ending(trx.commit().execute(), 'commit'),
      rollback: () => ending(trx.rollback().execute(), 'rollback'),
    };
  }

  /** Resolves when the database answers; throws StoreError naming the database otherwise (for /health). */
  async ping(): Promise<void> {
    try {
      await sql`select 1`.execute(this.db);
    } catch (error) {
      throw new StoreError(`Database unreachable (${this.describe()}): ${describeError(error)}`, { cause: error });
    }
  }

  /** E.g. "SQLite at /srv/app/.data/app.sqlite" or "PostgreSQL at postgres://app:***@db/app". */
  describe(): string {
    return `${this.dialect === 'sqlite' ? 'SQLite' : 'PostgreSQL'} at ${this.location}`;
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

/** How long a statement of a queue function's batch waits for a row lock another transaction holds (PostgreSQL). */
const BATCH_LOCK_TIMEOUT = '200ms';

export async function openPostgres(url: string): Promise<Store> {
  const where = `PostgreSQL at ${redactUrl(url)}`;
  let db: Kysely<Database> | undefined;
  try {
    // Loaded on first use, not at import: the pg driver is a cold start's cost a function pays only when it opens
    // its store (and a local SQLite process never).
    const { createPostgresDialect } = await import('./postgres');
    db = new Kysely<Database>({ dialect: createPostgresDialect(url).dialect });
    // Kysely's migration bookkeeping goes into the schema our tables go into (the first on the search_path).
    const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db);
    const schema = rows[0]?.schema;
    if (!schema) throw new Error('no schema on the search_path exists');
    const applied = await migrate(db, 'postgres', schema);
    return new Store(db, 'postgres', redactUrl(url), applied);
  } catch (error) {
    await db?.destroy().catch(() => {});
    throw openFailure(where, error);
  }
}

export async function openSqlite(path: string): Promise<Store> {
  const location = path === ':memory:' ? path : resolve(path);
  let db: Kysely<Database> | undefined;
  try {
    // Loaded on first use: a deployed function never opens SQLite.
    const { openSqliteFile, StoreSqliteDialect } = await import('./sqlite');
    db = new Kysely<Database>({ dialect: new StoreSqliteDialect(await openSqliteFile(path), path) });
    const applied = await migrate(db, 'sqlite');
    return new Store(db, 'sqlite', location, applied);
  } catch (error) {
    await db?.destroy().catch(() => {});
    throw openFailure(`SQLite at ${location}`, error);
  }
}

function openFailure(where: string, error: unknown): StoreError {
  if (error instanceof MigrationError) return new MigrationError(`${error.message} (${where})`, { cause: error.cause });
  return new StoreError(`Cannot open the database (${where}): ${describeError(error)}`, { cause: error });
}
