/**
 * Fault suite: the real worker (`npm run worker`: shared/runner/worker.ts reading functions/*.yml) killed with
 * SIGKILL again and again while 2,000 orders flow through all three queue functions, then left to finish.
 * Afterwards every order must have had exactly one effect: one outcome, stock moved once, one notification,
 * its status projected, every message claimed once, nothing dead-lettered and nothing left in a queue.
 *
 * PostgreSQL, not SQLite: it is the store the README names for several workers and deployments, and a killed
 * worker leaves something SQLite cannot show, a server-side transaction holding the stock row's lock until
 * the server notices the dead client; the restarted worker has to get past it. (SQLite's crash safety is
 * covered by the middleware suite's commit-then-SIGKILL test.)
 *
 * Everything broker-side lives in a vhost of this test's own, so other tests on the broker neither see these
 * messages nor take them, and deleting the vhost cleans up every queue.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { declareTopology, dlqName, FUNCTION_QUEUES, WORK_QUEUES } from '../../shared/messaging';
import { openStore, type Store } from '../../shared/store';
import { queueDepth } from '../support/amqp';
import { postgresBackend } from '../support/databases';
import { FAULT_STOCK, makeOrders, publishOrderPlaced, seededRandom, storeOrders } from '../support/orders';
import { allSettled, exactlyOnceProblems, readFlow } from '../support/outcomes';
import { waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';
import { killAll, spawnWorker, type WorkerProcess } from '../support/worker-process';

const ORDERS = 2_000;
const KILLS = 5;
const RETRY_DELAYS_MS = [200, 400];
const DELIVERY_LIMIT = 10;
const QUEUES = WORK_QUEUES.map((q) => q.name);
const DUPLICATE = '"outcome":"duplicate"';
const CONSUMING = '"message":"consuming"';

describe('the worker killed with SIGKILL while thousands of orders flow (PostgreSQL)', () => {
  const backend = postgresBackend();
  let vhost: TestVhost;
  let amqp: VhostAmqp;
  let store: Store;
  let workerEnv: NodeJS.ProcessEnv;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    vhost = await createVhost('fault-kill');
    amqp = await openAmqp(vhost.url);
    const db = await backend.fresh();
    store = await openStore(db);
    // The worker's own settings; the test declares the same topology so the queues exist before it publishes.
    workerEnv = {
      AMQP_URL: vhost.url,
      AMQP_URLS: '',
      DATABASE_URL: db.databaseUrl,
      RETRY_DELAYS_MS: RETRY_DELAYS_MS.join(','),
      DELIVERY_LIMIT: String(DELIVERY_LIMIT),
      OUTBOX_RELAY_INTERVAL_MS: '200',
      WEBHOOK_URL: '',
      // info: the worker logs one line per record, with its outcome; the test counts the duplicates it skipped.
      LOG_LEVEL: 'info',
    };
    await declareTopology(amqp.connection, { deliveryLimit: DELIVERY_LIMIT, retryDelaysMs: RETRY_DELAYS_MS });
  }, 60_000);

  afterAll(async () => {
    await killAll(workers);
    await amqp?.close();
    await store?.close();
    await vhost?.remove();
    await backend.teardown();
  }, 60_000);

  it('leaves exactly one effect per order after 5 kills and restarts', async () => {
    const seed = Date.now() % 1_000_000;
    const random = seededRandom(seed);
    const orders = makeOrders(ORDERS, random, 'kill-user');
    await store.stock.upsert(FAULT_STOCK);
    await storeOrders(store, orders);

    const claims = async () =>
      Number(
        (
          await store.db
            .selectFrom('inbox')
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    const crashedOnItsOwn = (worker: WorkerProcess) => {
      if (worker.child.exitCode !== null || (worker.child.signalCode !== null && worker.child.signalCode !== 'SIGKILL')) {
        throw new Error(`the worker exited by itself (${worker.child.exitCode ?? worker.child.signalCode}):\n${worker.output()}`);
      }
    };

    // Orders arrive in waves, one per worker life, so every life starts with work queued and is killed mid-flow.
    const waveSize = Math.ceil(ORDERS / (KILLS + 1));
    const waves = Array.from({ length: KILLS + 1 }, (_, i) => orders.slice(i * waveSize, (i + 1) * waveSize));
    const kills: Array<{ lifeMs: number; claimsAtKill: number; claimsDue: number }> = [];
    const started = Date.now();
    for (let life = 0; life < KILLS; life++) {
      const born = Date.now();
      const worker = spawnWorker(workerEnv, { count: [DUPLICATE, CONSUMING] });
      workers.push(worker);
      await publishOrderPlaced(
        amqp.channel,
        waves[life]!.map((o) => o.event),
      );
      // Up (all four triggers consuming), then visibly at work: it claims messages of its own.
      await waitFor(
        () => {
          crashedOnItsOwn(worker);
          // Every trigger: the three contract queues' and dlq-redrive-jobs'.
          return worker.counts[CONSUMING]! >= QUEUES.length + FUNCTION_QUEUES.length;
        },
        `worker ${life + 1} to start consuming`,
        60_000,
      );
      const before = await claims();
      await waitFor(
        async () => {
          crashedOnItsOwn(worker);
          return (await claims()) > before;
        },
        `worker ${life + 1} to handle messages`,
        60_000,
      );
      await sleep(300 + Math.floor(random() * 1_200)); // let it get into the middle of batches, commits and publishes
      const claimsAtKill = await claims();
      const ended = await worker.kill('SIGKILL');
      expect(ended.signal, `worker ${life + 1} was still running when killed`).toBe('SIGKILL');
      // Claims due so far: each published order is claimed by inventory-reservation, notification and order-status.
      kills.push({ lifeMs: Date.now() - born, claimsAtKill, claimsDue: (life + 1) * waveSize * 3 });
    }

    // The last worker is left to finish everything, including what the killed ones left half done.
    const survivor = spawnWorker(workerEnv, { count: [DUPLICATE, CONSUMING] });
    workers.push(survivor);
    await publishOrderPlaced(
      amqp.channel,
      waves[KILLS]!.map((o) => o.event),
    );
    const orderIds = orders.map((o) => o.order_id);
    await waitFor(
      async () => {
        crashedOnItsOwn(survivor);
        if (!(await allSettled(store, orderIds))) return false;
        const depths = await Promise.all(QUEUES.map((q) => queueDepth(amqp.connection, q)));
        return depths.every((d) => d === 0);
      },
      'every order to be decided, notified and every queue drained',
      180_000,
    );
    const finishedMs = Date.now() - started;
    const stopped = await survivor.kill('SIGTERM');
    expect(stopped, `the surviving worker shuts down cleanly on SIGTERM:\n${survivor.output()}`).toEqual({ code: 0, signal: null });

    const { problems, summary } = exactlyOnceProblems(await readFlow(store), orders, FAULT_STOCK);
    // Messages a killed worker had committed but not acked came back and were recognised by their inbox claim.
    const duplicatesSkipped = workers.reduce((sum, w) => sum + w.counts[DUPLICATE]!, 0);
    console.log(
      `[fault] worker SIGKILL x${KILLS} (seed ${seed}): ${JSON.stringify(summary)}; ` +
        `kills at inbox claims ${kills.map((k) => `${k.claimsAtKill}/${k.claimsDue} after ${k.lifeMs} ms`).join(', ')}; all settled in ${finishedMs} ms; ` +
        `${duplicatesSkipped} redelivered messages recognised as already handled`,
    );
    expect(problems).toEqual([]);
    // A batch is one transaction, so a kill leaves it all committed or none of it; a kill that lands between
    // the commit and the ack (a window of a publish round) brings the batch back as duplicates, reported above.
    // That window is hit deterministically by test/integration/middleware.test.ts (SIGKILL right after the commit).
    // The kills landed while work was outstanding, so the restarts really had something half done to recover.
    expect(kills.filter((k) => k.claimsAtKill < k.claimsDue).length).toBeGreaterThanOrEqual(1);
    // Rejections of both kinds happened, so both outcome paths were exercised under the kills.
    expect(summary.rejected.out_of_stock).toBeGreaterThan(0);
    expect(summary.rejected.unknown_item).toBeGreaterThan(0);
    // Nothing was dead-lettered: no message hit the delivery limit or was mistaken for poison after a crash.
    for (const queue of QUEUES) expect(await queueDepth(amqp.connection, dlqName(queue)), `${dlqName(queue)} is empty`).toBe(0);
    for (const queue of QUEUES) expect(await queueDepth(amqp.connection, queue), `${queue} is empty`).toBe(0);
  }, 300_000);
});
