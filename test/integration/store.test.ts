/**
 * The store's contract, run against both back ends: SQLite on a temporary file, and PostgreSQL in a schema
 * of its own (dropped afterwards) so parallel runs never collide. PostgreSQL comes from TEST_DATABASE_URL,
 * default postgres://postgres@127.0.0.1:5432/test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { sql } from 'kysely';
import { isLockContention } from 'middy-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DuplicateError,
  InvalidCursorError,
  type NewOrder,
  type OpenStoreOptions,
  type Order,
  openStore,
  pruneExpired,
  type ReserveResult,
  type Store,
  startPruning,
} from '../../shared/store';
import { postgresBackend, sqliteBackend } from '../support/databases';

const ROOT = resolve(import.meta.dirname, '../..');
const TSX = join(ROOT, 'node_modules/.bin/tsx');

function newOrder(overrides: Partial<NewOrder> = {}): NewOrder {
  return { order_id: randomUUID(), user_id: 'user-1', item: 'widget', quantity: 1, ...overrides };
}

/** Every order, following the cursors page by page. */
async function allPages(store: Store, limit: number): Promise<Order[][]> {
  const pages: Order[][] = [];
  let cursor: string | null = null;
  do {
    const page: Awaited<ReturnType<Store['orders']['list']>> = await store.orders.list({ limit, cursor });
    pages.push(page.orders);
    cursor = page.nextCursor;
  } while (cursor);
  return pages;
}

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a child process to the end, collecting its output. */
function finished(child: ChildProcess): Promise<Finished> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => (stdout += chunk));
  child.stderr?.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolveFinished, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolveFinished({ code, stdout, stderr }));
  });
}

/** Runs `npm run migrate` (shared/store/cli.ts) with only the given database settings. */
function runMigrateCli(env: NodeJS.ProcessEnv): Promise<Finished> {
  const { DATABASE_URL: _url, SQLITE_PATH: _path, ...rest } = process.env;
  return finished(spawn(TSX, ['shared/store/cli.ts'], { cwd: ROOT, env: { ...rest, ...env } }));
}

/**
 * A separate process that opens the store and, when told "go" on stdin, makes `attempts` concurrent
 * reservations of one unit of `item`; it prints its tally as JSON.
 */
async function spawnRacer(dir: string, options: OpenStoreOptions, item: string, attempts: number) {
  const script = join(dir, `racer-${randomUUID()}.mts`);
  const storeUrl = pathToFileURL(join(ROOT, 'shared/store/index.ts')).href;
  await writeFile(
    script,
    `import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { openStore } from ${JSON.stringify(storeUrl)};
const store = await openStore(${JSON.stringify(options)});
const lines = createInterface({ input: process.stdin });
console.log('ready');
await once(lines, 'line');
lines.close();
const tally = { reserved: 0, out_of_stock: 0, unknown_item: 0 };
await Promise.all(Array.from({ length: ${attempts} }, async (_, i) => {
  const result = i % 2 === 0
    ? await store.stock.reserve(${JSON.stringify(item)}, 1)
    : await store.transaction(async (tx) => {
        // Read before writing, as handlers do: without begin immediate, this is where SQLite deadlocks.
        if (!(await tx.stock.get(${JSON.stringify(item)}))) throw new Error('item vanished');
        await tx.inbox.claim('racer', 'child-' + i);
        return tx.stock.reserve(${JSON.stringify(item)}, 1);
      });
  tally[result]++;
}));
await store.close();
console.log(JSON.stringify(tally));
`,
  );
  const child = spawn(TSX, [script], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const done = finished(child);
  await new Promise<void>((resolveReady, reject) => {
    child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolveReady());
    void done.then((result) => reject(new Error(`racer exited early: ${result.stderr}`)));
  });
  return {
    go: () => child.stdin.end('go\n'),
    tally: async (): Promise<Record<ReserveResult, number>> => {
      const result = await done;
      if (result.code !== 0) throw new Error(`racer failed (${result.code}): ${result.stderr}`);
      return JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}');
    },
  };
}

describe.each([sqliteBackend(), postgresBackend()])('store on $name', (backend) => {
  let options: OpenStoreOptions;
  let store: Store;

  beforeAll(async () => {
    await backend.setup();
    options = await backend.fresh();
    store = await openStore(options);
  });

  afterAll(async () => {
    await store?.close();
    await backend.teardown();
  });

  describe('migrations', () => {
    it('creates the schema on first open and does nothing when run again, even concurrently', async () => {
      const fresh = await backend.fresh();
      const first = await Promise.all([openStore(fresh), openStore(fresh), openStore(fresh)]);
      try {
        // One of them applies every migration; the others find the schema up to date.
        expect(first.map((s) => s.appliedMigrations.join()).sort()).toEqual([
          '',
          '',
          '0001_initial,0002_outbox_claims,0003_outbox_trace_context,0004_retention_indexes',
        ]);
        expect(first.every((s) => s.dialect === backend.name)).toBe(true);
        const again = await openStore(fresh);
        expect(again.appliedMigrations).toEqual([]);
        expect(await again.orders.list()).toEqual({ orders: [], nextCursor: null });
        await again.close();
      } finally {
        await Promise.all(first.map((s) => s.close()));
      }
    });

    it('migrates from two processes at once: one applies, the other finds the schema up to date', async () => {
      const env = backend.env(await backend.fresh());
      const runs = await Promise.all([runMigrateCli(env), runMigrateCli(env)]);
      expect(runs.map((r) => r.code)).toEqual([0, 0]);
      const lines = runs.map((r) => r.stdout.trim()).sort();
      expect(lines[0]).toMatch(
        /^Store ready: .* \(applied 0001_initial, 0002_outbox_claims, 0003_outbox_trace_context, 0004_retention_indexes\)$/,
      );
      expect(lines[1]).toMatch(/^Store ready: .* \(schema already up to date\)$/);
    });

    if (backend.name === 'sqlite') {
      it('creates the file in a new directory, in WAL mode with foreign keys on', async () => {
        expect(existsSync(options.sqlitePath!)).toBe(true);
        expect(store.location).toBe(resolve(options.sqlitePath!));
        const { rows: mode } = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(store.db);
        const { rows: fk } = await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(store.db);
        expect(mode[0]?.journal_mode).toBe('wal');
        expect(fk[0]?.foreign_keys).toBe(1);
      });
    } else {
      it('names the database without its password', async () => {
        expect(store.describe()).toMatch(/^PostgreSQL at postgres:\/\//);
        expect(store.location).not.toMatch(/:[^:@/]+@/);
      });
    }
  });

  describe('orders', () => {
    it('stores an order and reads it back with identical values', async () => {
      const input = { order_id: randomUUID(), user_id: 'ada', item: 'gizmo', quantity: 3, correlation_id: 'corr-1' };
      const inserted = await store.orders.insert({ ...input, created_at: '2024-05-01T12:00:00.000Z' });
      const expected: Order = {
        ...input,
        status: 'accepted',
        reason: null,
        idempotency_key: null,
        request_hash: null,
        created_at: '2024-05-01T12:00:00.000Z',
        updated_at: '2024-05-01T12:00:00.000Z',
        notified_at: null,
      };
      expect(inserted).toEqual(expected);
      expect(await store.orders.get(input.order_id)).toEqual(expected);
      expect(await store.orders.get(randomUUID())).toBeUndefined();
      await expect(store.orders.insert(input)).rejects.toBeInstanceOf(DuplicateError);
    });

    it('lists newest first in pages that neither repeat nor skip, ties broken by order id', async () => {
      const base = Date.parse('2030-01-01T00:00:00.000Z');
      const mine = new Set<string>();
      for (let i = 0; i < 7; i++) {
        const order = await store.orders.insert({ ...newOrder(), created_at: new Date(base + i * 1000) });
        mine.add(order.order_id);
      }
      for (let i = 0; i < 4; i++) {
        const order = await store.orders.insert({ ...newOrder(), created_at: new Date(base + 3500) });
        mine.add(order.order_id);
      }

      const pages = await allPages(store, 3);
      expect(pages.slice(0, -1).every((page) => page.length === 3)).toBe(true);
      const all = pages.flat();
      expect(new Set(all.map((o) => o.order_id)).size).toBe(all.length);
      const sorted = [...all].sort(
        (a, b) => b.created_at.localeCompare(a.created_at) || (b.order_id < a.order_id ? -1 : b.order_id > a.order_id ? 1 : 0),
      );
      expect(all.map((o) => o.order_id)).toEqual(sorted.map((o) => o.order_id));
      expect(all.filter((o) => mine.has(o.order_id))).toHaveLength(mine.size);
      // These are the newest orders in the store, so the first page is the latest three of them.
      expect(pages[0]?.map((o) => o.created_at)).toEqual([
        new Date(base + 6000).toISOString(),
        new Date(base + 5000).toISOString(),
        new Date(base + 4000).toISOString(),
      ]);
    });

    it('clamps the page size and rejects a cursor it did not hand out', async () => {
      const page = await store.orders.list({ limit: 0 });
      expect(page.orders).toHaveLength(1);
      await expect(store.orders.list({ cursor: 'not-a-cursor' })).rejects.toBeInstanceOf(InvalidCursorError);
    });

    it('finds an order by idempotency key, and refuses a second order with the same key', async () => {
      const key = `key-${randomUUID()}`;
      const order = await store.orders.insert({ ...newOrder(), idempotency_key: key, request_hash: 'h1' });
      expect(await store.orders.findByIdempotencyKey(key)).toMatchObject({ order_id: order.order_id, request_hash: 'h1' });
      expect(await store.orders.findByIdempotencyKey(`key-${randomUUID()}`)).toBeUndefined();
      await expect(store.orders.insert({ ...newOrder(), idempotency_key: key })).rejects.toBeInstanceOf(DuplicateError);
    });

    it('moves an order to reserved or rejected and records when the customer was notified', async () => {
      const order = await store.orders.insert({ ...newOrder(), created_at: '2020-01-01T00:00:00.000Z' });
      const rejected = await store.orders.setStatus(order.order_id, 'rejected', 'out_of_stock');
      expect(rejected).toMatchObject({ status: 'rejected', reason: 'out_of_stock' });
      expect(rejected!.updated_at > order.updated_at).toBe(true);
      expect(await store.orders.setStatus(order.order_id, 'reserved')).toMatchObject({ status: 'reserved', reason: null });
      expect(await store.orders.setStatus(randomUUID(), 'reserved')).toBeUndefined();

      expect(await store.orders.markNotified(order.order_id, '2024-06-01T10:00:00Z')).toBe(true);
      expect((await store.orders.get(order.order_id))?.notified_at).toBe('2024-06-01T10:00:00.000Z');
      expect(await store.orders.markNotified(randomUUID())).toBe(false);
    });
  });

  describe('inbox', () => {
    it('lets a consumer claim a message id once; another consumer claims it independently', async () => {
      const messageId = randomUUID();
      expect(await store.inbox.claim('inventory', messageId)).toBe(true);
      expect(await store.inbox.claim('inventory', messageId)).toBe(false);
      expect(await store.inbox.claim('notification', messageId)).toBe(true);
    });

    it('releases the claim when the transaction rolls back, together with its writes', async () => {
      const messageId = randomUUID();
      const order = newOrder();
      await expect(
        store.transaction(async (tx) => {
          expect(await tx.inbox.claim('intake', messageId)).toBe(true);
          await tx.orders.insert(order);
          throw new Error('crash before commit');
        }),
      ).rejects.toThrow('crash before commit');
      expect(await store.orders.get(order.order_id)).toBeUndefined();

      const committed = await store.transaction(async (tx) => {
        if (!(await tx.inbox.claim('intake', messageId))) return false;
        await tx.orders.insert(order);
        return true;
      });
      expect(committed).toBe(true);
      expect(await store.orders.get(order.order_id)).toBeDefined();
      expect(await store.inbox.claim('intake', messageId)).toBe(false);
    });

    it('claims many ids in one statement with the answers single claims give, and releases them', async () => {
      const [taken, fresh, again] = [randomUUID(), randomUUID(), randomUUID()];
      expect(await store.inbox.claim('inventory', taken)).toBe(true);
      const unit = await store.begin();
      try {
        const answers = await unit.tx.inbox.tryClaimAll('inventory', [taken, fresh, again, fresh]);
        expect(Object.fromEntries(answers)).toEqual({ [taken]: 'duplicate', [fresh]: 'claimed', [again]: 'claimed' });
        expect(await unit.tx.inbox.tryClaim('inventory', fresh)).toBe('duplicate'); // ours now, in this transaction
        await unit.tx.inbox.release('inventory', [again]);
        expect(await unit.tx.inbox.tryClaim('inventory', again)).toBe('claimed'); // released: free to claim
        await unit.tx.inbox.release('inventory', [again]);
        await unit.commit();
      } catch (error) {
        await unit.rollback();
        throw error;
      }
      expect(await store.inbox.claim('inventory', fresh)).toBe(false); // committed with the transaction
      expect(await store.inbox.claim('inventory', again)).toBe(true); // released before the commit
      expect(await store.inbox.claim('notification', fresh)).toBe(true); // per consumer
    });

    it('gives a message to exactly one of many concurrent claimers on separate connections', async () => {
      const other = await openStore(options);
      try {
        const messageId = randomUUID();
        const claims = await Promise.all(
          Array.from({ length: 20 }, (_, i) => (i % 2 ? store : other).transaction((tx) => tx.inbox.claim('inventory', messageId))),
        );
        expect(claims.filter(Boolean)).toHaveLength(1);
      } finally {
        await other.close();
      }
    });
  });

  describe('outbox', () => {
    it('keeps the trace context an event was caused in, for whoever publishes it (null when there was none)', async () => {
      const traced = randomUUID();
      const untraced = randomUUID();
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const message = (event_id: string) => ({
        event_id,
        exchange: 'orders',
        routing_key: 'order.placed',
        body: { event_id },
        properties: {},
      });
      await store.outbox.add([{ ...message(traced), traceparent, tracestate: 'vendor=1' }, message(untraced)]);
      const rows = (await store.outbox.claim(1000, 1_000)).filter((row) => row.event_id === traced || row.event_id === untraced);
      expect(rows.map(({ event_id, traceparent, tracestate }) => ({ event_id, traceparent, tracestate }))).toEqual([
        { event_id: traced, traceparent, tracestate: 'vendor=1' },
        { event_id: untraced, traceparent: null, tracestate: null },
      ]);
      await store.outbox.markPublished(rows.map((row) => row.id));
    });

    it('keeps messages pending, oldest first, until published; counts failures; backlog follows', async () => {
      // Start from an empty backlog.
      for (let rows = await store.outbox.pending(1000); rows.length > 0; rows = await store.outbox.pending(1000)) {
        await store.outbox.markPublished(rows.map((r) => r.id));
      }
      expect(await store.outbox.backlog()).toBe(0);

      const events = [randomUUID(), randomUUID(), randomUUID()].map((event_id, i) => ({
        event_id,
        exchange: 'orders',
        routing_key: 'order.placed',
        body: { event_id, event_type: 'OrderPlaced', quantity: i + 1 },
        properties: { messageId: event_id, contentType: 'application/json', deliveryMode: 2 },
      }));
      const order = newOrder();
      await store.transaction(async (tx) => {
        await tx.orders.insert(order);
        await tx.outbox.add(events);
        await tx.outbox.add([events[0]!]); // the same event again is kept once
      });
      await expect(
        store.transaction(async (tx) => {
          await tx.outbox.add([{ ...events[0]!, event_id: randomUUID() }]);
          throw new Error('rolled back');
        }),
      ).rejects.toThrow('rolled back');
      expect(await store.outbox.backlog()).toBe(3);
      // Bounded, as intake's load shedding counts (up to its limit): never more than asked, never more than there are.
      expect([await store.outbox.backlog(2), await store.outbox.backlog(5), await store.outbox.backlog(0)]).toEqual([2, 3, 0]);

      const pending = await store.outbox.pending(10);
      expect(pending.map((p) => p.event_id)).toEqual(events.map((e) => e.event_id));
      expect(pending.every((p, i) => i === 0 || p.id > pending[i - 1]!.id)).toBe(true);
      expect(typeof pending[0]!.id).toBe('number');
      expect(JSON.parse(pending[1]!.body)).toEqual(events[1]!.body);
      expect(pending[1]!.properties).toEqual(events[1]!.properties);
      expect(pending[0]).toMatchObject({ attempts: 0, last_error: null, exchange: 'orders', routing_key: 'order.placed' });
      expect(await store.outbox.pending(2)).toHaveLength(2);

      await store.outbox.recordFailure(pending[0]!.id, new Error('broker unreachable'));
      await store.outbox.recordFailure(pending[0]!.id, new Error('broker unreachable'));
      expect((await store.outbox.pending(1))[0]).toMatchObject({ attempts: 2, last_error: 'Error: broker unreachable' });

      expect(await store.outbox.markPublished([pending[0]!.id, pending[2]!.id], '2024-01-01T00:00:00Z')).toBe(2);
      expect(await store.outbox.markPublished([pending[0]!.id])).toBe(0);
      expect(await store.outbox.backlog()).toBe(1);
      expect([await store.outbox.backlog(1), await store.outbox.backlog(3)]).toEqual([1, 1]); // published rows are not counted
      expect((await store.outbox.pending(10)).map((p) => p.event_id)).toEqual([events[1]!.event_id]);
    });
  });

  describe('retention', () => {
    let fresh: Store;
    beforeAll(async () => {
      fresh = await openStore(await backend.fresh());
    });
    afterAll(async () => {
      await fresh?.close();
    });
    const daysAgo = (days: number) => new Date(Date.now() - days * 24 * 60 * 60 * 1000).toISOString();
    const claims = async (consumer: string) =>
      (await fresh.db.selectFrom('inbox').select('message_id').where('consumer', '=', consumer).orderBy('message_id').execute()).map(
        (row) => row.message_id,
      );

    it('deletes inbox claims older than the retention, oldest first, a slice at a time; a message claimed again after that has its effect again', async () => {
      const consumer = `retention-${randomUUID()}`;
      await fresh.db
        .insertInto('inbox')
        .values([10, 9, 8, 6].map((days) => ({ consumer, message_id: `m${days}`, processed_at: daysAgo(days) })))
        .execute();
      expect(await fresh.inbox.claim(consumer, 'm0')).toBe(true);

      expect(await pruneExpired(fresh, { inboxDays: 0, outboxDays: 0 })).toEqual({ inbox: 0, outbox: 0 }); // 0 keeps all
      expect(await pruneExpired(fresh, { inboxDays: 7, outboxDays: 0 }, { limit: 2 })).toEqual({ inbox: 2, outbox: 0 });
      expect(await claims(consumer)).toEqual(['m0', 'm6', 'm8']);
      expect(await pruneExpired(fresh, { inboxDays: 7, outboxDays: 0 }, { limit: 2 })).toEqual({ inbox: 1, outbox: 0 });
      expect(await pruneExpired(fresh, { inboxDays: 7, outboxDays: 0 })).toEqual({ inbox: 0, outbox: 0 });
      expect(await claims(consumer)).toEqual(['m0', 'm6']);
      expect(await fresh.inbox.claim(consumer, 'm6')).toBe(false); // still recognised
      expect(await fresh.inbox.claim(consumer, 'm10')).toBe(true); // forgotten
    });

    it('deletes published outbox rows older than the retention, never an unpublished row however old', async () => {
      const message = () => {
        const event_id = randomUUID();
        return { event_id, exchange: 'orders', routing_key: 'order.placed', body: { event_id }, properties: {} };
      };
      const [oldA, oldB, recent, unpublished] = [message(), message(), message(), message()];
      await fresh.outbox.add([oldA, oldB, recent, unpublished]);
      await fresh.db
        .updateTable('outbox')
        .set({ created_at: daysAgo(30) })
        .execute();
      const rows = await fresh.outbox.pending(10);
      const id = (m: { event_id: string }) => rows.find((row) => row.event_id === m.event_id)!.id;
      await fresh.outbox.markPublished([id(oldA), id(oldB)], daysAgo(8));
      await fresh.outbox.markPublished([id(recent)]);

      expect(await pruneExpired(fresh, { inboxDays: 0, outboxDays: 7 }, { limit: 1 })).toEqual({ inbox: 0, outbox: 1 });
      expect(await pruneExpired(fresh, { inboxDays: 0, outboxDays: 7 })).toEqual({ inbox: 0, outbox: 1 });
      expect(await pruneExpired(fresh, { inboxDays: 0, outboxDays: 7 })).toEqual({ inbox: 0, outbox: 0 });
      const left = await fresh.db.selectFrom('outbox').select('event_id').orderBy('id').execute();
      expect(left.map((row) => row.event_id)).toEqual([recent.event_id, unpublished.event_id]);
      expect((await fresh.outbox.pending(10)).map((row) => row.event_id)).toEqual([unpublished.event_id]);
    });

    it('prunes in the background as soon as it starts and again every interval, until stopped', async () => {
      const consumer = `retention-loop-${randomUUID()}`;
      const oldClaim = (message_id: string) =>
        fresh.db
          .insertInto('inbox')
          .values({ consumer, message_id, processed_at: daysAgo(8) })
          .execute();
      const gone = async (message_id: string) => {
        const deadline = Date.now() + 10_000;
        while ((await claims(consumer)).includes(message_id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        return !(await claims(consumer)).includes(message_id);
      };
      await oldClaim('first');
      const stop = startPruning({ store: fresh, retention: { inboxDays: 7, outboxDays: 7 }, intervalMs: 50 });
      try {
        expect(await gone('first')).toBe(true);
        await oldClaim('second');
        expect(await gone('second')).toBe(true);
      } finally {
        await stop();
      }
      await oldClaim('after-stop');
      await new Promise((r) => setTimeout(r, 200));
      expect(await claims(consumer)).toEqual(['after-stop']);
    });
  });

  describe('notifications', () => {
    it('stores exactly one notification per order event', async () => {
      const orderId = randomUUID();
      const eventId = randomUUID();
      const notification = {
        event_id: eventId,
        order_id: orderId,
        user_id: 'ada',
        kind: 'reserved' as const,
        message: 'Reserved 1 widget',
      };
      expect(await store.notifications.insert(notification)).toBe(true);
      expect(await store.notifications.insert({ ...notification, message: 'again' })).toBe(false);
      expect(await store.notifications.setWebhookStatus(eventId, 'sent')).toBe(true);

      const stored = await store.notifications.listByOrder(orderId);
      expect(stored).toHaveLength(1);
      expect(stored[0]).toMatchObject({ ...notification, webhook_status: 'sent' });
      expect(stored[0]!.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(await store.notifications.listByOrder(randomUUID())).toEqual([]);
    });

    it('stores a notification and stamps its order as notified, once: a second copy of the event changes nothing', async () => {
      const order = await store.orders.insert(newOrder());
      const notification = {
        event_id: randomUUID(),
        order_id: order.order_id,
        user_id: order.user_id,
        kind: 'rejected' as const,
        message: 'Out of stock',
        created_at: '2024-06-01T10:00:00Z',
      };
      expect(await store.transaction((tx) => tx.notifications.insertAndMarkOrder(notification))).toBe(true);
      expect(await store.orders.get(order.order_id)).toMatchObject({ notified_at: '2024-06-01T10:00:00.000Z' });
      const again = { ...notification, message: 'again', created_at: '2025-01-01T00:00:00Z' };
      expect(await store.transaction((tx) => tx.notifications.insertAndMarkOrder(again))).toBe(false);
      expect(await store.orders.get(order.order_id)).toMatchObject({ notified_at: '2024-06-01T10:00:00.000Z' });
      expect(await store.notifications.listByOrder(order.order_id)).toMatchObject([{ message: 'Out of stock' }]);
      // A notification for an order this store never saw is still stored (the order may be in another system).
      const orphan = { ...notification, event_id: randomUUID(), order_id: randomUUID() };
      expect(await store.transaction((tx) => tx.notifications.insertAndMarkOrder(orphan))).toBe(true);
    });
  });

  describe('stock', () => {
    it('seeds only missing items, reserves, refuses to oversell, tells unknown items apart, restocks', async () => {
      const a = `item-${randomUUID()}`;
      const b = `item-${randomUUID()}`;
      expect(await store.stock.seed({ [a]: 5 })).toBe(1);
      expect(await store.stock.seed({ [a]: 100, [b]: 1 })).toBe(1);
      expect(await store.stock.get(a)).toMatchObject({ item: a, available: 5, reserved: 0 });

      expect(await store.stock.reserve(a, 3)).toBe('reserved');
      expect(await store.stock.reserve(a, 3)).toBe('out_of_stock');
      expect(await store.stock.reserve(`item-${randomUUID()}`, 1)).toBe('unknown_item');
      expect(await store.stock.get(a)).toMatchObject({ available: 2, reserved: 3 });

      expect(await store.stock.restock(a, 4)).toMatchObject({ item: a, available: 6, reserved: 3 });
      expect(await store.stock.reserve(a, 6)).toBe('reserved');
      expect(await store.stock.get(a)).toMatchObject({ available: 0, reserved: 9 });
      expect(await store.stock.restock(`${a}-new`, 2)).toMatchObject({ available: 2, reserved: 0 });
      await expect(store.stock.restock(a, 0)).rejects.toThrow(RangeError);

      await store.stock.upsert({ [a]: 10 });
      expect(await store.stock.get(a)).toMatchObject({ available: 10, reserved: 9 });
      expect((await store.stock.list()).map((row) => row.item)).toEqual(expect.arrayContaining([a, b, `${a}-new`]));
    });

    it('refuses, in the database itself, to store negative availability', async () => {
      const item = `item-${randomUUID()}`;
      await store.stock.seed({ [item]: 1 });
      await expect(store.db.updateTable('stock').set({ available: -1 }).where('item', '=', item).execute()).rejects.toThrow();
      expect((await store.stock.get(item))?.available).toBe(1);
    });

    it('never oversells when separate connections and a separate process race for the same item', async () => {
      const item = `race-${randomUUID()}`;
      const initial = 60;
      await store.stock.seed({ [item]: initial });
      const dir = await mkdtemp(join(tmpdir(), 'store-racer-'));
      const other = await openStore(options);
      try {
        const racer = await spawnRacer(dir, options, item, 50);
        const race = (s: Store, name: string) =>
          Array.from({ length: 50 }, (_, i) =>
            i % 2 === 0
              ? s.stock.reserve(item, 1)
              : s.transaction(async (tx) => {
                  // Read before writing, as handlers do (see the racer).
                  if (!(await tx.stock.get(item))) throw new Error('item vanished');
                  await tx.inbox.claim('racer', `${name}-${i}`);
                  return tx.stock.reserve(item, 1);
                }),
          );
        racer.go();
        const here = await Promise.all([...race(store, 'a'), ...race(other, 'b')]);
        const child = await racer.tally();

        const reserved = here.filter((r) => r === 'reserved').length + child.reserved;
        const refused = here.filter((r) => r === 'out_of_stock').length + child.out_of_stock;
        expect(reserved).toBe(initial);
        expect(refused).toBe(150 - initial);
        expect(await store.stock.get(item)).toMatchObject({ available: 0, reserved: initial });
      } finally {
        await other.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});

describe('batch transactions on postgres', () => {
  const backend = postgresBackend();
  let store: Store;

  beforeAll(async () => {
    await backend.setup();
    store = await openStore(await backend.fresh());
    await store.stock.upsert({ widget: 10 });
  });

  afterAll(async () => {
    await store?.close();
    await backend.teardown();
  });

  it("gives up at once on a row another batch holds (lock_not_available), as contention, instead of waiting for that batch's commit", async () => {
    const first = await store.begin();
    const second = await store.begin();
    try {
      await first.tx.stock.reserve('widget', 1); // holds the widget row until the first batch ends
      const blocked = await second.tx.stock.reserve('widget', 1).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect((blocked as { code?: string } | undefined)?.code).toBe('55P03');
      expect(isLockContention(blocked)).toBe(true);
    } finally {
      await second.rollback();
      await first.rollback();
    }
    expect((await store.stock.get('widget'))?.available).toBe(10);
  });

  it('answers busy at once for ids another open batch claimed, in a claim of many as in a single claim', async () => {
    const [held, free] = [randomUUID(), randomUUID()];
    const first = await store.begin();
    const second = await store.begin();
    try {
      expect(Object.fromEntries(await first.tx.inbox.tryClaimAll('inventory', [held]))).toEqual({ [held]: 'claimed' });
      const answers = await second.tx.inbox.tryClaimAll('inventory', [held, free]);
      expect(Object.fromEntries(answers)).toEqual({ [held]: 'busy', [free]: 'claimed' });
      expect(await second.tx.inbox.tryClaim('inventory', held)).toBe('busy');
    } finally {
      await second.rollback();
      await first.rollback();
    }
  });
});

describe('sqlite file locked by another program', () => {
  let dir: string;
  let store: Store;
  let locker: Database.Database;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'store-locked-'));
    store = await openStore({ sqlitePath: join(dir, 'app.sqlite') });
    locker = new Database(join(dir, 'app.sqlite'));
  });
  afterAll(async () => {
    locker?.close();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The longest the event loop went without running a 10 ms timer while `work` ran. */
  const longestStall = async (work: Promise<unknown>) => {
    let last = performance.now();
    let longest = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 10);
    try {
      await work.catch(() => undefined);
    } finally {
      clearInterval(ticker);
    }
    return longest;
  };

  it('waits for the lock without stopping the process: a write goes through once it is released', async () => {
    locker.exec('BEGIN EXCLUSIVE');
    // Released by a timer of this process: it can only fire if waiting for the lock leaves the event loop free.
    setTimeout(() => locker.exec('ROLLBACK'), 300);
    const write = store.orders.insert(newOrder());
    expect(await longestStall(write)).toBeLessThan(1_000);
    await expect(write).resolves.toMatchObject({ status: 'accepted' });
  });

  it('opens a new file another program holds locked once the lock is released, as two processes creating the store at once do', async () => {
    // A file not yet in WAL mode, locked by another connection: switching it to WAL needs that lock. (Two `npm run
    // migrate` on a fresh path failed this way about one time in eight: "Cannot open the database: database is locked".)
    const path = join(dir, 'fresh.sqlite');
    const other = new Database(path);
    try {
      other.exec('create table taken (x integer); BEGIN EXCLUSIVE');
      setTimeout(() => other.exec('ROLLBACK'), 300);
      const opening = openStore({ sqlitePath: path });
      expect(await longestStall(opening)).toBeLessThan(1_000);
      const opened = await opening;
      expect(opened.appliedMigrations).toContain('0001_initial');
      await opened.close();
    } finally {
      other.close();
    }
    const reader = new Database(path, { readonly: true });
    expect(reader.pragma('journal_mode', { simple: true })).toBe('wal');
    reader.close();
  });

  it('gives up after its 5 s busy timeout with "database is locked", the process running all along', async () => {
    locker.exec('BEGIN EXCLUSIVE');
    try {
      const started = Date.now();
      const write = store.orders.insert(newOrder());
      expect(await longestStall(write)).toBeLessThan(1_000);
      await expect(write).rejects.toMatchObject({ code: 'SQLITE_BUSY', message: 'database is locked' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(4_900);
    } finally {
      locker.exec('ROLLBACK');
    }
  });
});

describe('migrate CLI', () => {
  it('fails with one line naming the database, password hidden, when PostgreSQL cannot be reached', async () => {
    const run = await runMigrateCli({ DATABASE_URL: 'postgres://app:s3cret@127.0.0.1:1/orders' });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain('postgres://app:***@127.0.0.1:1/orders');
    expect(run.stderr).not.toContain('s3cret');
  });
});
