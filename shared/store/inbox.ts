/**
 * Inbox: exactly-once effects for at-least-once delivery. A consuming function claims a message id inside
 * the same transaction as its own writes; a redelivered or duplicated message finds the claim and skips,
 * and a rolled-back transaction releases the claim with everything else.
 */
import { CompiledQuery, type Kysely, sql } from 'kysely';
import type { DialectName } from './migrations';
import { type Database, toIso } from './schema';

const CLAIM_SQL: Record<DialectName, string> = {
  sqlite: 'insert into inbox (consumer, message_id, processed_at) values (?, ?, ?) on conflict (consumer, message_id) do nothing',
  postgres: 'insert into inbox (consumer, message_id, processed_at) values ($1, $2, $3) on conflict (consumer, message_id) do nothing',
};

/** The advisory lock key of a claim is this prefix and the message id, hashed (tryClaim and tryClaimAll alike). */
const lockKeyPrefix = (consumer: string) => `${consumer.length}:${consumer}:`;

/** tryClaim for an array of ids: each id's lock tried, the locked ones inserted; per id, locked and inserted. */
const CLAIM_ALL_POSTGRES = `
  with ids as (
    select id, pg_try_advisory_xact_lock(hashtextextended($4 || id, 0)) as locked from unnest($2::text[]) as id
  ), claimed as (
    insert into inbox (consumer, message_id, processed_at)
    select $1, id, $3 from ids where locked
    on conflict (consumer, message_id) do nothing
    returning message_id
  )
  select ids.id, ids.locked, claimed.message_id is not null as inserted
  from ids left join claimed on claimed.message_id = ids.id`;

/** The ids as a JSON array: one statement text whatever their number (prepared once). `where true` lets SQLite parse the upsert. */
const CLAIM_ALL_SQLITE = `
  insert into inbox (consumer, message_id, processed_at)
  select ?, value, ? from json_each(?) where true
  on conflict (consumer, message_id) do nothing
  returning message_id`;

/** Ids per SQLite statement: bounds the JSON text and the rows returned at once. */
const SQLITE_CLAIM_CHUNK = 1_000;

const RELEASE_SQL: Record<DialectName, string> = {
  sqlite: 'delete from inbox where consumer = ? and message_id in (select value from json_each(?))',
  postgres: 'delete from inbox where consumer = $1 and message_id = any($2::text[])',
};

/** What a claim found: the id is now ours, was taken before, or is being claimed by a transaction still open. */
export type Claim = 'claimed' | 'duplicate' | 'busy';

export class Inbox {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  /**
   * Claims without waiting, for a transaction that claims many ids (a queue function's batch): on PostgreSQL
   * another open transaction claiming the same id would make this one wait until it ended, and two batches
   * that claim ids of each other's in different orders would deadlock. So the id's transaction-scoped advisory
   * lock is tried first: taken by someone else, the answer is 'busy' at once (try again later); held, the
   * insert can only find a committed claim ('duplicate') or none ('claimed'). SQLite has one writer at a time.
   */
  async tryClaim(consumer: string, messageId: string): Promise<Claim> {
    if (this.dialect !== 'postgres') return (await this.claim(consumer, messageId)) ? 'claimed' : 'duplicate';
    // One round trip: the lock is tried first (a CTE's select runs before the insert that reads it), and the
    // insert runs only when it was taken.
    const { rows } = await sql<{ locked: boolean; inserted: number }>`
      with lock as (
        select pg_try_advisory_xact_lock(hashtextextended(${lockKeyPrefix(consumer) + messageId}, 0)) as locked
      ), claim as (
        insert into inbox (consumer, message_id, processed_at)
        select ${consumer}, ${messageId}, ${toIso()} from lock where lock.locked
        on conflict (consumer, message_id) do nothing
        returning 1
      )
      select (select locked from lock) as locked, (select count(*)::int from claim) as inserted`.execute(this.db);
    const row = rows[0];
    if (!row?.locked) return 'busy';
    return row.inserted > 0 ? 'claimed' : 'duplicate';
  }

  /**
   * tryClaim for many ids in one statement (a batch's records, claimed before the first runs): the same answer
   * per id as tryClaim would give, one round trip instead of one per record. Ids repeated in `messageIds`
   * are claimed once. On PostgreSQL each id's advisory lock is tried first, as in tryClaim.
   */
  async tryClaimAll(consumer: string, messageIds: readonly string[]): Promise<Map<string, Claim>> {
    const ids = [...new Set(messageIds)];
    const answers = new Map<string, Claim>();
    if (ids.length === 0) return answers;
    const processedAt = toIso();
    if (this.dialect === 'postgres') {
      // The lock CTE is volatile, so PostgreSQL runs it once, before the insert that reads it, for every id.
      const { rows } = await this.db.executeQuery<{ id: string; locked: boolean; inserted: boolean }>(
        CompiledQuery.raw(CLAIM_ALL_POSTGRES, [consumer, ids, processedAt, lockKeyPrefix(consumer)]),
      );
      for (const row of rows) answers.set(row.id, !row.locked ? 'busy' : row.inserted ? 'claimed' : 'duplicate');
      return answers;
    }
    for (let start = 0; start < ids.length; start += SQLITE_CLAIM_CHUNK) {
      const chunk = ids.slice(start, start + SQLITE_CLAIM_CHUNK);
      const { rows } = await this.db.executeQuery<{ message_id: string }>(
        CompiledQuery.raw(CLAIM_ALL_SQLITE, [consumer, processedAt, JSON.stringify(chunk)]),
      );
      const inserted = new Set(rows.map((row) => row.message_id));
      for (const id of chunk) answers.set(id, inserted.has(id) ? 'claimed' : 'duplicate');
    }
    return answers;
  }

  /** Deletes the claims of `messageIds` (made in this transaction by tryClaimAll, for records that then did not commit). */
  async release(consumer: string, messageIds: readonly string[]): Promise<void> {
    if (messageIds.length === 0) return;
    await this.db.executeQuery(
      CompiledQuery.raw(RELEASE_SQL[this.dialect], [consumer, this.dialect === 'postgres' ? [...messageIds] : JSON.stringify(messageIds)]),
    );
  }

  /**
   * Deletes up to `limit` claims made before `before`, oldest first; returns how many (shared/store/retention.ts).
   * A message redelivered after its claim is gone would have its effect again: the retention must outlast any
   * redelivery (days, where redeliveries come within minutes of a crash or an outage's end).
   */
  async prune(before: Date, limit: number): Promise<number> {
    const expired = this.db
      .selectFrom('inbox')
      .select(['consumer', 'message_id'])
      .where('processed_at', '<', toIso(before))
      .orderBy('processed_at')
      .limit(Math.max(1, Math.trunc(limit)));
    const result = await this.db
      .deleteFrom('inbox')
      .where(({ eb, refTuple }) => eb(refTuple('consumer', 'message_id'), 'in', expired.$asTuple('consumer', 'message_id')))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /**
   * True for the first claim of `messageId` by `consumer`, false if it was claimed before. On PostgreSQL a
   * concurrent claimer waits until the first transaction ends, then gets false (commit) or true (rollback).
   */
  async claim(consumer: string, messageId: string): Promise<boolean> {
    // Once per record of every batch (on SQLite through tryClaim): the statement's text is fixed per dialect, so it
    // is not built by Kysely each time (building it took about a third of a claim's time in bench:pipeline's profile).
    const result = await this.db.executeQuery(CompiledQuery.raw(CLAIM_SQL[this.dialect], [consumer, messageId, toIso()]));
    return (result.numAffectedRows ?? 0n) > 0n;
  }
}
