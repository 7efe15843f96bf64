/**
 * The SQLite back end: one file, no server.
 *
 * Opens the file (creating its directory) in WAL mode with a busy timeout and foreign keys on, and wraps
 * Kysely's SqliteDialect so that
 * - write transactions start with `begin immediate`: the write lock is taken up front, so two processes on
 *   the same file queue on the busy timeout instead of deadlocking when both try to upgrade a read lock;
 * - all connections to the same file in this process take turns (an async lock per file). better-sqlite3
 *   is synchronous: a second connection waiting for the write lock would block the event loop and with it
 *   the transaction it waits for, so two Store instances in one process must never wait on each other in
 *   SQLite itself;
 * - migrations run in one transaction (Kysely's SQLite adapter says it has no transactional DDL and takes
 *   no lock; SQLite has the first, and `begin immediate` is the second, across processes too).
 */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import {
  CompiledQuery,
  type DatabaseConnection,
  type DialectAdapter,
  type Driver,
  SqliteAdapter,
  SqliteDialect,
  type SqliteDialectConfig,
  SqliteDriver,
} from 'kysely';

/** How long a connection waits for another process's write lock before failing with SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5_000;

/** Opens (creating if needed) the database file at `path` with the pragmas the store relies on. */
export function openSqliteFile(path: string): BetterSqlite3.Database {
  const inMemory = path === ':memory:';
  if (!inMemory) mkdirSync(dirname(resolve(path)), { recursive: true });
  const db = new BetterSqlite3(path);
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (!inMemory) db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** A FIFO async lock; `lock()` resolves to the function that releases it. */
class AsyncLock {
  #tail: Promise<void> = Promise.resolve();

  async lock(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((resolveHeld) => (release = resolveHeld));
    const previous = this.#tail;
    this.#tail = previous.then(() => held);
    await previous;
    return release;
  }
}

/** One lock per database file, shared by every Store in this process that opens that file. */
const fileLocks = new Map<string, AsyncLock>();

function lockFor(path: string): AsyncLock {
  if (path === ':memory:') return new AsyncLock();
  const key = resolve(path);
  let lock = fileLocks.get(key);
  if (!lock) fileLocks.set(key, (lock = new AsyncLock()));
  return lock;
}

class StoreSqliteDriver extends SqliteDriver {
  readonly #fileLock: AsyncLock;
  #release: (() => void) | undefined;

  constructor(config: SqliteDialectConfig, fileLock: AsyncLock) {
    super(config);
    this.#fileLock = fileLock;
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    const release = await this.#fileLock.lock();
    try {
      const connection = await super.acquireConnection();
      this.#release = release;
      return connection;
    } catch (error) {
      release();
      throw error;
    }
  }

  override async releaseConnection(): Promise<void> {
    const release = this.#release;
    this.#release = undefined;
    try {
      await super.releaseConnection();
    } finally {
      release?.();
    }
  }

  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class StoreSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/** Kysely's SqliteDialect with `begin immediate` transactions and a per-file lock (see the file comment). */
export class StoreSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  readonly #path: string;

  constructor(database: BetterSqlite3.Database, path: string) {
    const config: SqliteDialectConfig = { database };
    super(config);
    this.#config = config;
    this.#path = path;
  }

  override createDriver(): Driver {
    return new StoreSqliteDriver(this.#config, lockFor(this.#path));
  }

  override createAdapter(): DialectAdapter {
    return new StoreSqliteAdapter();
  }
}
