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
 *   no lock; SQLite has the first, and `begin immediate` is the second, across processes too);
 * - waiting for another process's lock does not block the event loop: SQLite's own busy timeout sleeps inside
 *   the synchronous call, stalling every function, timer and socket of the process (a worker's AMQP connects
 *   timed out behind it and a locked file looked like a broker outage), so the busy timeout is 0 and a
 *   statement SQLite answers SQLITE_BUSY is tried again after an asynchronous pause, for up to the same 5 s.
 *
 * better-sqlite3 (a native module) is loaded on first use, not imported: deployed bundles leave it out
 * (they use PostgreSQL), and a static import would make every function fail at load time without it.
 */
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type BetterSqlite3 from 'better-sqlite3';
import {
  CompiledQuery,
  type DatabaseConnection,
  type DialectAdapter,
  type Driver,
  type QueryResult,
  SqliteAdapter,
  SqliteDialect,
  type SqliteDialectConfig,
  SqliteDriver,
} from 'kysely';

/** How long a statement waits for another process's lock before failing with SQLITE_BUSY ("database is locked"). */
const BUSY_TIMEOUT_MS = 5_000;

/** The pauses between tries while the file is locked: SQLite's default busy handler's, then its last one over and over. */
const BUSY_PAUSES_MS = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];

let driver: typeof BetterSqlite3 | undefined;

/** better-sqlite3, loaded once; a clear error where it is not installed (a deployed bundle). */
function loadDriver(): typeof BetterSqlite3 {
  if (driver) return driver;
  try {
    // Not a bare `require`, so bundlers leave the load to run time instead of resolving it at build time.
    const load = createRequire(import.meta.url);
    driver = load('better-sqlite3') as typeof BetterSqlite3;
    return driver;
  } catch (error) {
    throw new Error(
      `SQLite needs the better-sqlite3 package, which is not available here (${(error as Error).message.split('\n')[0]}). ` +
        'Deployed functions leave it out: set DATABASE_URL to a PostgreSQL database.',
      { cause: error },
    );
  }
}

/**
 * Opens (creating if needed) the database file at `path` with the pragmas the store relies on. Switching a file
 * to WAL needs a lock no one else holds: another process creating the same store at that moment (two migrate
 * runs, a worker and npm start) has it for a while, so the switch waits for it as statements do (`whileBusy`).
 */
export async function openSqliteFile(path: string): Promise<BetterSqlite3.Database> {
  const inMemory = path === ':memory:';
  const Database = loadDriver();
  if (!inMemory) mkdirSync(dirname(resolve(path)), { recursive: true });
  const db = new Database(path);
  try {
    db.pragma('busy_timeout = 0'); // waited out asynchronously instead: see whileBusy
    if (!inMemory) await whileBusy(() => db.pragma('journal_mode = WAL'));
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

/**
 * One lock per database file, shared by every Store in this process that opens that file. Kept on
 * globalThis because the worker bundles each handler separately, so this module can exist several times in
 * one process; a lock per copy would let two copies wait on each other through SQLite's busy timeout.
 */
const LOCKS_KEY = Symbol.for('rabbit-functions.store.sqlite-file-locks');
const processGlobals = globalThis as Record<symbol, unknown>;
processGlobals[LOCKS_KEY] ??= new Map<string, AsyncLock>();
const fileLocks = processGlobals[LOCKS_KEY] as Map<string, AsyncLock>;

function lockFor(path: string): AsyncLock {
  if (path === ':memory:') return new AsyncLock();
  const key = resolve(path);
  let lock = fileLocks.get(key);
  if (!lock) {
    lock = new AsyncLock();
    fileLocks.set(key, lock);
  }
  return lock;
}

const isBusy = (error: unknown) => String((error as { code?: unknown } | undefined)?.code).startsWith('SQLITE_BUSY');

/**
 * Runs `attempt`, and again after a pause (BUSY_PAUSES_MS) each time SQLite answers SQLITE_BUSY, until
 * BUSY_TIMEOUT_MS have passed; then throws that error. The event loop runs during the pauses.
 */
async function whileBusy<T>(attempt: () => T | Promise<T>): Promise<T> {
  const started = Date.now();
  for (let tries = 0; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      const waited = Date.now() - started;
      if (!isBusy(error) || waited >= BUSY_TIMEOUT_MS) throw error;
      await sleep(Math.min(BUSY_PAUSES_MS[tries] ?? BUSY_PAUSES_MS.at(-1)!, BUSY_TIMEOUT_MS - waited));
    }
  }
}

/**
 * A connection that waits for another process's lock without blocking the event loop: a statement answered
 * SQLITE_BUSY is tried again after a pause (BUSY_PAUSES_MS) until BUSY_TIMEOUT_MS have passed, then its error
 * is thrown. Only where trying again is what SQLite's busy handler would do: outside a transaction (a failed
 * `begin immediate` or single statement changed nothing) and a `commit` (the transaction stays open).
 */
class PatientConnection implements DatabaseConnection {
  constructor(
    private readonly inner: DatabaseConnection,
    private readonly database: BetterSqlite3.Database,
  ) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    if (this.database.inTransaction && query.sql !== 'commit') return this.inner.executeQuery<R>(query);
    return whileBusy(() => this.inner.executeQuery<R>(query));
  }

  streamQuery<R>(query: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(query, chunkSize);
  }
}

class StoreSqliteDriver extends SqliteDriver {
  readonly #fileLock: AsyncLock;
  readonly #database: BetterSqlite3.Database;
  #release: (() => void) | undefined;
  #connection: PatientConnection | undefined;

  constructor(config: SqliteDialectConfig, fileLock: AsyncLock, database: BetterSqlite3.Database) {
    super(config);
    this.#fileLock = fileLock;
    this.#database = database;
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    const release = await this.#fileLock.lock();
    try {
      this.#connection ??= new PatientConnection(await super.acquireConnection(), this.#database);
      this.#release = release;
      return this.#connection;
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

/** Prepared statements kept per connection: the store sends a few dozen distinct statements, over and over. */
const STATEMENT_CACHE_SIZE = 256;

/**
 * The database as Kysely sees it, preparing each distinct SQL text once: Kysely's driver prepares every
 * query anew, 5% of the queue functions' CPU time in bench:pipeline's profile. A statement is bound afresh
 * on every run, and this store never iterates one (no `stream()`), so sharing it cannot meet a busy one.
 */
function withStatementCache(database: BetterSqlite3.Database): SqliteDialectConfig['database'] {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => void database.close(),
    prepare: (sql: string) => {
      let statement = cache.get(sql);
      if (!statement) {
        statement = database.prepare(sql);
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
        cache.set(sql, statement);
      }
      return statement;
    },
  };
}

/** Kysely's SqliteDialect with `begin immediate` transactions and a per-file lock (see the file comment). */
export class StoreSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  readonly #database: BetterSqlite3.Database;
  readonly #path: string;

  constructor(database: BetterSqlite3.Database, path: string) {
    const config: SqliteDialectConfig = { database: withStatementCache(database) };
    super(config);
    this.#config = config;
    this.#database = database;
    this.#path = path;
  }

  override createDriver(): Driver {
    return new StoreSqliteDriver(this.#config, lockFor(this.#path), this.#database);
  }

  override createAdapter(): DialectAdapter {
    return new StoreSqliteAdapter();
  }
}
