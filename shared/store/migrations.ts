/**
 * The schema, as Kysely migrations kept in code (no migration files to ship in a bundle).
 *
 * The same migrations serve both back ends; the only difference is how the outbox's auto-increment id is
 * spelled. Add a migration by appending a new key that sorts after the last one; never edit one that shipped.
 */
import { type Kysely, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import { describeError, MigrationError } from './errors';

export type DialectName = 'sqlite' | 'postgres';

/**
 * The database as a migration sees it. A migration describes the schema as it was when it shipped, so it must
 * not be typed against today's `Database` (which later migrations change); Kysely's own Migration.up takes this.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type, see above
type SchemaAtMigration = Kysely<any>;

function migrations(dialect: DialectName): Record<string, Migration> {
  return {
    '0001_initial': {
      async up(db: SchemaAtMigration) {
        await db.schema
          .createTable('orders')
          .addColumn('order_id', 'text', (c) => c.primaryKey())
          .addColumn('user_id', 'text', (c) => c.notNull())
          .addColumn('item', 'text', (c) => c.notNull())
          .addColumn('quantity', 'integer', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('accepted', 'reserved', 'rejected')`))
          .addColumn('reason', 'text')
          .addColumn('correlation_id', 'text')
          .addColumn('idempotency_key', 'text', (c) => c.unique())
          .addColumn('request_hash', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addColumn('notified_at', 'text')
          .execute();
        await db.schema.createIndex('orders_newest_first').on('orders').columns(['created_at desc', 'order_id desc']).execute();

        await db.schema
          .createTable('stock')
          .addColumn('item', 'text', (c) => c.primaryKey())
          .addColumn('available', 'integer', (c) => c.notNull().check(sql`available >= 0`))
          .addColumn('reserved', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();

        await db.schema
          .createTable('notifications')
          .addColumn('notification_id', 'text', (c) => c.primaryKey())
          .addColumn('event_id', 'text', (c) => c.notNull().unique())
          .addColumn('order_id', 'text', (c) => c.notNull())
          .addColumn('user_id', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('reserved', 'rejected')`))
          .addColumn('message', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('webhook_status', 'text')
          .execute();
        await db.schema.createIndex('notifications_by_order').on('notifications').columns(['order_id', 'created_at']).execute();

        await db.schema
          .createTable('inbox')
          .addColumn('consumer', 'text', (c) => c.notNull())
          .addColumn('message_id', 'text', (c) => c.notNull())
          .addColumn('processed_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('inbox_pk', ['consumer', 'message_id'])
          .execute();

        await db.schema
          .createTable('outbox')
          .addColumn('id', dialect === 'postgres' ? 'bigserial' : 'integer', (c) =>
            dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
          )
          .addColumn('event_id', 'text', (c) => c.notNull().unique())
          .addColumn('exchange', 'text', (c) => c.notNull())
          .addColumn('routing_key', 'text', (c) => c.notNull())
          .addColumn('body', 'text', (c) => c.notNull())
          .addColumn('properties', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('published_at', 'text')
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('last_error', 'text')
          .execute();
        await db.schema.createIndex('outbox_unpublished').on('outbox').column('id').where(sql.ref('published_at'), 'is', null).execute();
      },
    },
    // Leases on outbox rows: until `claimed_until` no one else sends the row (its producer publishes it
    // itself, or a relay has claimed it), so a relay never sends a row its producer or another relay is sending.
    '0002_outbox_claims': {
      async up(db: SchemaAtMigration) {
        await db.schema.alterTable('outbox').addColumn('claimed_until', 'text').execute();
      },
    },
    // W3C trace context of the event (the span that caused it): whoever publishes the row, now or after a
    // crash, continues that trace. Nullable: rows written before it, and events caused outside any trace.
    '0003_outbox_trace_context': {
      async up(db: SchemaAtMigration) {
        await db.schema.alterTable('outbox').addColumn('traceparent', 'text').execute();
        await db.schema.alterTable('outbox').addColumn('tracestate', 'text').execute();
      },
    },
    // Retention (shared/store/retention.ts): claims and published rows are deleted oldest first once they are
    // older than their retention, a bounded slice at a time; these indexes find that slice without a table scan.
    '0004_retention_indexes': {
      async up(db: SchemaAtMigration) {
        await db.schema.createIndex('inbox_by_processed_at').on('inbox').column('processed_at').execute();
        await db.schema
          .createIndex('outbox_published')
          .on('outbox')
          .column('published_at')
          .where(sql.ref('published_at'), 'is not', null)
          .execute();
      },
    },
  };
}

/**
 * Brings the schema up to date. Safe to run again and from several processes at once: PostgreSQL takes
 * Kysely's advisory lock; SQLite runs inside one `begin immediate` transaction (see sqlite.ts).
 * Returns the names of the migrations this call applied. `schema` (PostgreSQL) holds the bookkeeping tables.
 */
export async function migrate<DB>(db: Kysely<DB>, dialect: DialectName, schema?: string): Promise<string[]> {
  // Every cold start opens the store: when the schema is already current, a read says so, without the lock
  // the migrator takes (a burst of cold starts would otherwise queue on it, one after another).
  if (await upToDate(db, dialect, schema)) return [];
  const provider: MigrationProvider = { getMigrations: async () => migrations(dialect) };
  const migrator = new Migrator({ db, provider, ...(schema ? { migrationTableSchema: schema } : {}) });
  const { error, results = [] } = await migrator.migrateToLatest();
  if (error) {
    const failed = results.find((r) => r.status === 'Error')?.migrationName;
    const what = failed ? `Migration ${failed}` : 'Migrating';
    throw new MigrationError(`${what} failed: ${describeError(error)}`, { cause: error });
  }
  return results.filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** True when every migration this code knows is recorded as applied (false when unsure: then the migrator decides). */
async function upToDate<DB>(db: Kysely<DB>, dialect: DialectName, schema?: string): Promise<boolean> {
  const table = schema ? sql.table(`${schema}.kysely_migration`) : sql.table('kysely_migration');
  try {
    const { rows } = await sql<{ name: string }>`select name from ${table}`.execute(db);
    const applied = new Set(rows.map((row) => row.name));
    return Object.keys(migrations(dialect)).every((name) => applied.has(name));
  } catch {
    return false; // no bookkeeping table yet: a fresh database
  }
}
