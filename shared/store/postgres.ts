/**
 * The PostgreSQL back end (DATABASE_URL): a pg Pool under Kysely's PostgresDialect.
 *
 * The pool parses bigint (int8: bigserial ids, count(*)) as a JS number, as SQLite returns it, so both back
 * ends hand out identical values. Settings such as the search_path can ride in the URL:
 * `postgres://user@host/db?options=-c%20search_path%3Dmy_schema`.
 */

import { PostgresDialect } from 'kysely';
import pg from 'pg';

const INT8_OID = 20;

const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary'
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

/** How long opening a connection may take before the store reports the database unreachable. */
const CONNECT_TIMEOUT_MS = 5_000;

export function createPostgresDialect(databaseUrl: string): { dialect: PostgresDialect; pool: pg.Pool } {
  const pool = new pg.Pool({ connectionString: databaseUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, types });
  // An idle connection that the server drops emits 'error' on the pool; without a listener that would end
  // the process. The next query gets a fresh connection (or a clear error), so there is nothing to do here.
  pool.on('error', () => {});
  return { dialect: new PostgresDialect({ pool }), pool };
}
