/**
 * Outbox: events written in the same transaction as the state change that caused them, then published
 * with confirms by a relay (pending → publish → markPublished), so none is lost while the broker is down.
 */
import { CompiledQuery, type Kysely } from 'kysely';
import type { DialectName } from './migrations';
import { type Database, toIso } from './schema';

export interface NewOutboxMessage {
  /** The event's id (and the message's messageId); adding the same event twice keeps the first. */
  event_id: string;
  exchange: string;
  routing_key: string;
  /** The message body; stored as JSON text. */
  body: unknown;
  /** The AMQP publish options (e.g. eventProperties(...)); stored as JSON text. */
  properties: object;
  /** W3C trace context of the span that caused the event (see shared/tracing); the publish continues it. */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

export interface OutboxMessage {
  id: number;
  event_id: string;
  exchange: string;
  routing_key: string;
  /** The body as stored JSON text: publish `Buffer.from(body)`. */
  body: string;
  properties: Record<string, unknown>;
  created_at: string;
  attempts: number;
  last_error: string | null;
  traceparent: string | null;
  tracestate: string | null;
}

const parsed = <Row extends { properties: string }>(row: Row) => ({
  ...row,
  properties: JSON.parse(row.properties) as Record<string, unknown>,
});

/** Longest error text kept per failed attempt. */
const MAX_ERROR_LENGTH = 2_000;

/** The columns of a new outbox row, in the order `outboxRows` and intake's insert (orders.ts) use. */
export const OUTBOX_COLUMNS = [
  'event_id',
  'exchange',
  'routing_key',
  'body',
  'properties',
  'created_at',
  'claimed_until',
  'traceparent',
  'tracestate',
] as const;

/** `rows` parenthesised lists of `width` placeholders for `dialect`, numbered from `offset` + 1 on PostgreSQL. */
export function valueList(dialect: DialectName, offset: number, rows: number, width: number): string {
  const tuples: string[] = [];
  for (let r = 0; r < rows; r++) {
    const marks: string[] = [];
    for (let c = 0; c < width; c++) marks.push(dialect === 'postgres' ? `$${offset + r * width + c + 1}` : '?');
    tuples.push(`(${marks.join(', ')})`);
  }
  return tuples.join(', ');
}

const markByEventIdSqls = new Map<string, string>();

/** Outbox rows for `messages` as they are stored (JSON text), leased to their producer for `leaseMs`. */
export function outboxRows(messages: readonly NewOutboxMessage[], options: { leaseMs?: number | undefined } = {}) {
  const createdAt = toIso();
  const claimedUntil = options.leaseMs === undefined ? null : toIso(new Date(Date.now() + options.leaseMs));
  return messages.map((m) => ({
    event_id: m.event_id,
    exchange: m.exchange,
    routing_key: m.routing_key,
    body: JSON.stringify(m.body),
    properties: JSON.stringify(m.properties),
    created_at: createdAt,
    claimed_until: claimedUntil,
    traceparent: m.traceparent ?? null,
    tracestate: m.tracestate ?? null,
  }));
}

/** The columns of a row as the relay reads it. */
const ROW = [
  'id',
  'event_id',
  'exchange',
  'routing_key',
  'body',
  'properties',
  'created_at',
  'attempts',
  'last_error',
  'traceparent',
  'tracestate',
] as const;

/** Rows per INSERT statement of `add` (about ten parameters each). */
const ADD_SLICE = 500;

export class Outbox {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  /**
   * Queues messages for publishing; call inside the transaction that makes the change they announce.
   * `leaseMs`: the caller publishes them itself right after the commit, so no relay sends them for that long
   * (if it crashes first, a relay sends them once the lease ends).
   */
  async add(messages: readonly NewOutboxMessage[], options: { leaseMs?: number } = {}): Promise<void> {
    const rows = outboxRows(messages, options);
    // In slices: a statement's bound parameters are limited (SQLite 32,766, PostgreSQL 65,535), a batch is not.
    for (let i = 0; i < rows.length; i += ADD_SLICE) {
      await this.db
        .insertInto('outbox')
        .values(rows.slice(i, i + ADD_SLICE))
        .onConflict((oc) => oc.column('event_id').doNothing())
        .execute();
    }
  }

  /** Up to `limit` unpublished messages, oldest first (leased or not). */
  async pending(limit = 100): Promise<OutboxMessage[]> {
    const rows = await this.db
      .selectFrom('outbox')
      .select(ROW)
      .where('published_at', 'is', null)
      .orderBy('id')
      .limit(Math.max(1, Math.trunc(limit)))
      .execute();
    return rows.map(parsed);
  }

  /**
   * Claims up to `limit` unpublished messages no one holds a lease on, oldest first, for `leaseMs`: one
   * statement, so two relays never claim the same row (PostgreSQL skips rows another transaction is
   * claiming; SQLite writes one at a time). A claimed row that is not marked published comes back to the
   * relays when its lease ends.
   */
  async claim(limit: number, leaseMs: number): Promise<OutboxMessage[]> {
    const now = new Date();
    const due = this.db
      .selectFrom('outbox')
      .select('id')
      .where('published_at', 'is', null)
      .where((eb) => eb.or([eb('claimed_until', 'is', null), eb('claimed_until', '<=', toIso(now))]))
      .orderBy('id')
      .limit(Math.max(1, Math.trunc(limit)));
    const rows = await this.db
      .updateTable('outbox')
      .set({ claimed_until: toIso(new Date(now.getTime() + leaseMs)) })
      .where('id', 'in', this.dialect === 'postgres' ? due.forUpdate().skipLocked() : due)
      .returning(ROW)
      .execute();
    return rows.sort((a, b) => a.id - b.id).map(parsed);
  }

  /** Ends the leases on these events' rows (their publish failed), so the next relay round sends them. */
  async release(eventIds: readonly string[]): Promise<void> {
    if (eventIds.length === 0) return;
    await this.db
      .updateTable('outbox')
      .set({ claimed_until: null })
      .where('event_id', 'in', eventIds)
      .where('published_at', 'is', null)
      .execute();
  }

  /** Marks messages as published (broker confirmed); returns how many were marked. */
  async markPublished(ids: readonly number[], at: Date | string = new Date()): Promise<number> {
    if (ids.length === 0) return 0;
    const result = await this.db
      .updateTable('outbox')
      .set({ published_at: toIso(at) })
      .where('id', 'in', ids)
      .where('published_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /** Marks the messages of these events as published (broker confirmed), in one statement; returns how many were marked. */
  async markPublishedByEventId(eventIds: readonly string[], at: Date | string = new Date()): Promise<number> {
    if (eventIds.length === 0) return 0;
    // After every intake request and batch: the text is kept per number of ids, not built by Kysely each time.
    let text = markByEventIdSqls.get(`${this.dialect}:${eventIds.length}`);
    if (text === undefined) {
      const ids = valueList(this.dialect, 1, 1, eventIds.length);
      text = `update outbox set published_at = ${this.dialect === 'postgres' ? '$1' : '?'} where event_id in ${ids} and published_at is null`;
      markByEventIdSqls.set(`${this.dialect}:${eventIds.length}`, text);
    }
    const result = await this.db.executeQuery(CompiledQuery.raw(text, [toIso(at), ...eventIds]));
    return Number(result.numAffectedRows ?? 0);
  }

  /**
   * Deletes up to `limit` rows published before `before`, oldest first; returns how many (shared/store/retention.ts).
   * Unpublished rows are never deleted, however old.
   */
  async prunePublished(before: Date, limit: number): Promise<number> {
    const expired = this.db
      .selectFrom('outbox')
      .select('id')
      .where('published_at', 'is not', null)
      .where('published_at', '<', toIso(before))
      .orderBy('published_at')
      .limit(Math.max(1, Math.trunc(limit)));
    const result = await this.db.deleteFrom('outbox').where('id', 'in', expired).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** Counts a failed publish attempt and keeps its error; the message stays pending. */
  async recordFailure(id: number, error: unknown): Promise<void> {
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    await this.db
      .updateTable('outbox')
      .set((eb) => ({ attempts: eb('attempts', '+', 1), last_error: text.slice(0, MAX_ERROR_LENGTH) }))
      .where('id', '=', id)
      .execute();
  }

  /**
   * How many messages wait to be published; with `upTo`, at most that many (enough to compare with a limit).
   * The bounded count walks the unpublished rows' partial index in id order, and that is what keeps it cheap
   * under load on PostgreSQL: marking a row published leaves its index entry behind until a vacuum, a plain
   * count (a bitmap scan) visits every such row again on each call (6-30 ms at a few thousand orders, growing
   * until autovacuum runs), while an ordered index scan marks the dead entries it meets so that later scans
   * skip them (20,000 heap visits on the first call, then only the live rows').
   */
  async backlog(upTo?: number): Promise<number> {
    if (upTo === undefined) {
      const row = await this.db
        .selectFrom('outbox')
        .select((eb) => eb.fn.countAll<number>().as('count'))
        .where('published_at', 'is', null)
        .executeTakeFirstOrThrow();
      return Number(row.count);
    }
    const unpublished = this.db
      .selectFrom('outbox')
      .select('id')
      .where('published_at', 'is', null)
      .orderBy('id')
      .limit(Math.max(0, Math.trunc(upTo)))
      .as('unpublished');
    const row = await this.db
      .selectFrom(unpublished)
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}
