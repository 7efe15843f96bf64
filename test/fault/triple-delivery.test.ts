/**
 * Fault suite: every event delivered three times. Each OrderPlaced is published three times (two copies
 * back to back, so they can share a batch, and a third a moment later, after the first has been handled),
 * and every InventoryReserved / InventoryFailed the reservation emits is copied twice more into
 * `inventory-events` and `order-status-events` (one copy at once, one later) by a tap on the `inventory`
 * exchange. The real worker runs on SQLite as `npm run worker` does by default (one invocation at a time
 * per function), and on PostgreSQL with `--concurrency 3`, so that copies also race each other in
 * concurrent invocations and transactions.
 *
 * Each function must process each event once and recognise the other two copies as duplicates: one stock
 * movement, one outcome, one notification, one status change per order.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { declareTopology, dlqName, WORK_QUEUES } from '../../shared/messaging';
import { type OpenStoreOptions, openStore, type Store } from '../../shared/store';
import { drainQueue, queueDepth } from '../support/amqp';
import { type Backend, postgresBackend, sqliteBackend } from '../support/databases';
import { FAULT_STOCK, makeOrders, publishOrderPlaced, seededRandom, storeOrders } from '../support/orders';
import { allSettled, exactlyOnceProblems, readFlow } from '../support/outcomes';
import { waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';
import { killAll, spawnWorker, type WorkerProcess } from '../support/worker-process';

const ORDERS = 300;
const RETRY_DELAYS_MS = [200, 400];
const QUEUES = WORK_QUEUES.map((q) => q.name);
const TAP = 'fault-duplicator-tap';
const PROCESSED = '"outcome":"processed"';
const DUPLICATE = '"outcome":"duplicate"';
/**
 * On SQLite the worker's handler bundles each open their own connection; they share the store's per-file
 * lock (kept on globalThis), so none waits out the busy timeout on another's write lock.
 */
const LOCKED = 'database is locked';
/** A batch rolled back and redelivered whole: its records that were logged processed are processed (and logged) again. */
const BATCH_FAILED = 'the whole batch will be redelivered';

const CASES: Array<{ backend: Backend; concurrency: number }> = [
  { backend: sqliteBackend(), concurrency: 1 },
  { backend: postgresBackend(), concurrency: 3 },
];

describe.each(CASES)('every event delivered three times ($backend.name, concurrency $concurrency)', ({ backend, concurrency }) => {
  let vhost: TestVhost;
  let amqp: VhostAmqp;
  let store: Store;
  let db: OpenStoreOptions;
  const workers: WorkerProcess[] = [];
  const pendingCopies = new Set<Promise<void>>();

  beforeAll(async () => {
    await backend.setup();
    vhost = await createVhost(`fault-triple-${backend.name}`);
    amqp = await openAmqp(vhost.url);
    db = await backend.fresh();
    store = await openStore(db);
    await declareTopology(amqp.connection, { deliveryLimit: 10, retryDelaysMs: RETRY_DELAYS_MS });
  }, 60_000);

  afterAll(async () => {
    await killAll(workers);
    await Promise.allSettled([...pendingCopies]);
    await amqp?.close();
    await store?.close();
    await vhost?.remove();
    await backend.teardown();
  }, 60_000);

  it('has one effect per order: stock, outcome, notification and status', async () => {
    const orders = makeOrders(ORDERS, seededRandom(Date.now() % 1_000_000), `triple-${backend.name}`);
    await store.stock.upsert(FAULT_STOCK);
    await storeOrders(store, orders);

    // The tap: every outcome the reservation publishes reaches both downstream queues twice more.
    const tap = await amqp.connection.createConfirmChannel();
    tap.on('error', () => undefined);
    await tap.assertQueue(TAP, { durable: true });
    await tap.bindQueue(TAP, 'inventory', 'inventory.*');
    let tapped = 0;
    const copy = (message: ConsumeMessage) => {
      for (const queue of ['inventory-events', 'order-status-events']) tap.sendToQueue(queue, message.content, message.properties);
    };
    await tap.consume(TAP, (message) => {
      if (!message) return;
      tapped++;
      copy(message);
      const later = sleep(300 + Math.floor(Math.random() * 700))
        .then(() => copy(message))
        .catch(() => undefined); // the channel is gone: the test has already failed or ended
      pendingCopies.add(later);
      void later.finally(() => pendingCopies.delete(later));
      tap.ack(message);
    });

    const worker = spawnWorker(
      {
        AMQP_URL: vhost.url,
        AMQP_URLS: '',
        DATABASE_URL: '',
        ...backend.env(db),
        RETRY_DELAYS_MS: RETRY_DELAYS_MS.join(','),
        OUTBOX_RELAY_INTERVAL_MS: '200',
        WEBHOOK_URL: '',
        LOG_LEVEL: 'info',
      },
      { args: ['--concurrency', String(concurrency)], count: [PROCESSED, DUPLICATE, LOCKED, BATCH_FAILED] },
    );
    workers.push(worker);

    // Two copies back to back, then the third once the worker has had time to handle the first.
    const events = orders.map((o) => o.event);
    await publishOrderPlaced(amqp.channel, events, 2);
    await sleep(1_000);
    await publishOrderPlaced(amqp.channel, events, 1);

    const deliveries = ORDERS * 3 * 3; // three copies of each event, three functions
    await waitFor(
      async () => {
        if (worker.child.exitCode !== null) throw new Error(`the worker exited:\n${worker.output()}`);
        if (
          !(await allSettled(
            store,
            orders.map((o) => o.order_id),
          )) ||
          tapped < ORDERS ||
          pendingCopies.size > 0
        )
          return false;
        // A redone batch logs its records again, so the sum alone can be reached early: each count on its own.
        const processed = worker.counts[PROCESSED]!;
        const duplicates = worker.counts[DUPLICATE]!;
        return processed >= ORDERS * 3 && duplicates >= ORDERS * 3 * 2;
      },
      'every copy of every event to be handled',
      120_000,
    );
    await tap.waitForConfirms();
    for (const queue of QUEUES) expect(await queueDepth(amqp.connection, queue), `${queue} is drained`).toBe(0);

    const stopped = await worker.kill('SIGTERM');
    expect(stopped).toEqual({ code: 0, signal: null });
    const { problems, summary } = exactlyOnceProblems(await readFlow(store), orders, FAULT_STOCK);
    console.log(
      `[fault] triple delivery on ${backend.name}: ${JSON.stringify(summary)}; records processed ${worker.counts[PROCESSED]}, ` +
        `recognised as duplicates ${worker.counts[DUPLICATE]} (of ${deliveries} deliveries); records retried after "database is locked": ${worker.counts[LOCKED]}; ` +
        `invocations failed and redone whole: ${worker.counts[BATCH_FAILED]}`,
    );
    expect(problems).toEqual([]);
    // One processing per event and function; every other copy was recognised as a duplicate, none failed.
    // A record is logged `processed` when it is done, before its batch commits: a batch whose invocation then
    // failed (rolled back whole, e.g. a PostgreSQL deadlock between concurrent batches) is redone, and its
    // records are logged again while their effects stay single (checked above). Only then may the count exceed.
    if (worker.counts[BATCH_FAILED]) expect(worker.counts[PROCESSED]).toBeGreaterThanOrEqual(ORDERS * 3);
    else expect(worker.counts[PROCESSED]).toBe(ORDERS * 3);
    expect(worker.counts[DUPLICATE]).toBeGreaterThanOrEqual(ORDERS * 3 * 2);
    expect(worker.counts[LOCKED] ?? 0).toBe(0);
    for (const queue of QUEUES) {
      const dead = await drainQueue(amqp.channel, dlqName(queue));
      const why = dead.map(
        (m) => `${m.properties.messageId}: ${m.properties.headers?.['x-error-name']} ${m.properties.headers?.['x-error-message']}`,
      );
      expect(why, `${dlqName(queue)} is empty`).toEqual([]);
    }
  }, 240_000);
});
