/** Fresh, empty databases for tests: a SQLite file in a temp directory, or a PostgreSQL schema of its own. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { OpenStoreOptions } from '../../shared/store';

const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** One back end under test: where its databases live and how to make a fresh, empty one. */
export interface Backend {
  name: 'sqlite' | 'postgres';
  setup(): Promise<void>;
  /** A new, empty database (SQLite file or PostgreSQL schema), as openStore options. */
  fresh(): Promise<OpenStoreOptions>;
  /** The same options as environment variables, for a child process running the migrate CLI. */
  env(options: OpenStoreOptions): NodeJS.ProcessEnv;
  teardown(): Promise<void>;
}

export function sqliteBackend(): Backend {
  let dir = '';
  let count = 0;
  return {
    name: 'sqlite',
    setup: async () => {
      dir = await mkdtemp(join(tmpdir(), 'store-test-'));
    },
    // A directory that does not exist yet: the store must create it.
    fresh: async () => ({ sqlitePath: join(dir, `db${++count}`, 'nested', 'app.sqlite') }),
    env: (options) => ({ SQLITE_PATH: options.sqlitePath }),
    teardown: async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

export function postgresBackend(): Backend {
  const admin = new pg.Pool({ connectionString: PG_URL, max: 2 });
  const schemas: string[] = [];
  return {
    name: 'postgres',
    setup: async () => {},
    fresh: async () => {
      const schema = `store_test_${randomBytes(6).toString('hex')}`;
      await admin.query(`create schema ${schema}`);
      schemas.push(schema);
      const url = new URL(PG_URL);
      url.searchParams.set('options', `-c search_path=${schema}`);
      return { databaseUrl: url.toString() };
    },
    env: (options) => ({ DATABASE_URL: options.databaseUrl }),
    teardown: async () => {
      for (const schema of schemas) await admin.query(`drop schema if exists ${schema} cascade`);
      await admin.end();
    },
  };
}

/** Both back ends, for `describe.each`. */
export const backends = (): Backend[] => [sqliteBackend(), postgresBackend()];
