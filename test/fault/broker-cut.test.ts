/**
 * Fault suite: the broker connection cut mid-flow. Orders are posted over real HTTP to the intake app while
 * the runner feeds the three queue functions; between them and RabbitMQ sits a TCP proxy that the test
 * severs three times (every connection through it destroyed, new ones refused for 1.5 s), so intake's
 * publisher, the functions' publisher, the outbox relay and the runner's consumers all lose the broker at
 * once, mid-batch and mid-publish, and must come back by themselves.
 *
 * Afterwards: every order posted, also during a cut, was accepted (202), published, processed exactly once
 * (one outcome, stock moved once, one notification, status projected), and nothing is left in a queue or
 * dead-lettered. Only connections through the proxy are cut, so other tests on the broker are untouched;
 * the queues live in a vhost of this test's own. SQLite, the default store, as `npm start` runs it.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { Runner } from 'serverless-offline-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appHooks } from '../../shared/app/runner-hooks';
import type { Store } from '../../shared/store';
import { AMQP_URL, queueDepth } from '../support/amqp';
import { FAULT_STOCK, makeOrders, seededRandom } from '../support/orders';
import { allSettled, exactlyOnceProblems, type PlacedOrder, readFlow } from '../support/outcomes';
import { LogCapture, waitFor } from '../support/runner';
import { TcpProxy } from '../support/tcp-proxy';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';

const ROOT = resolve(import.meta.dirname, '../..');
const ORDERS = 600;
const CLIENTS = 4;
const CUTS = 3;
const OUTAGE_MS = 1_500;
const QUEUES = ['order-events', 'inventory-events', 'order-status-events'];

/** Waits for a teardown step, at most 10 s; a step that hangs is reported, not waited for forever. */
async function bounded(step: Promise<unknown> | undefined, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((done) => (timer = setTimeout(() => done('late'), 10_000)));
  const result = await Promise.race([Promise.resolve(step).catch(() => undefined), late]);
  clearTimeout(timer);
  if (result === 'late') console.warn(`[fault] teardown: ${what} did not finish within 10 s; going on with the cleanup`);
}

describe('the broker connection cut mid-flow (TCP proxy)', () => {
  let vhost: TestVhost;
  let proxy: TcpProxy;
  let amqp: VhostAmqp;
  let dir: string;
  let store: Store;
  let relayStore: Store | undefined;
  let app: FastifyInstance;
  let runner: Runner;
  let base: string;
  const runnerLogs = new LogCapture();

  beforeAll(async () => {
    vhost = await createVhost('fault-cut');
    amqp = await openAmqp(vhost.url); // the test's own connection goes straight to the broker
    const broker = new URL(AMQP_URL);
    proxy = new TcpProxy({ host: broker.hostname, port: Number(broker.port || 5672) });
    const port = await proxy.start();
    dir = await mkdtemp(join(tmpdir(), 'fault-cut-'));
    // Configuration is read once per process, on first use: set it before any product module reads it.
    Object.assign(process.env, {
      AMQP_URL: vhost.urlVia('127.0.0.1', port),
      AMQP_URLS: '',
      DATABASE_URL: '',
      SQLITE_PATH: join(dir, 'app.sqlite'),
      RETRY_DELAYS_MS: '200,400',
      LOG_LEVEL: 'silent',
      INTAKE_PUBLISH_WAIT_MS: '300',
      OUTBOX_RELAY_INTERVAL_MS: '200',
      WEBHOOK_URL: '',
    });
    const { loadConfig } = await import('../../shared/config');
    const { createLogger } = await import('../../shared/logging');
    const { openStore } = await import('../../shared/store');
    const { InProcessInvoker, loadService, Runner, triggersFromFunctions } = await import('serverless-offline-rabbitmq');
    const handlers: Record<string, { handler: unknown }> = {
      inventoryReservation: await import('../../handlers/inventory-reservation'),
      notification: await import('../../handlers/notification'),
      orderStatus: await import('../../handlers/order-status'),
    };
    store = await openStore();
    await store.stock.upsert(FAULT_STOCK);
    ({ app } = (await import('../../handlers/order-intake')) as { app: FastifyInstance });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
    const service = loadService(ROOT);
    runner = new Runner({
      urls: loadConfig().amqpUrls,
      triggers: triggersFromFunctions(service.functions, service.info),
      invoker: new InProcessInvoker(async (t) => handlers[t.functionKey]!.handler as never),
      logger: createLogger({ level: 'info', destination: runnerLogs }),
      // The relay, as the worker runs it: sends what intake could not publish during a cut.
      hooks: appHooks({ relayStore: async () => (relayStore = await openStore()) }),
    });
    await runner.start();
  }, 60_000);

  afterAll(async () => {
    // Let the code under test reach the broker while it shuts down (a test that failed mid-cut leaves it
    // down), then stop listening. Each step is bounded so one that hangs cannot keep the rest from cleaning up.
    proxy?.up();
    await bounded(runner?.stop(), 'runner.stop()');
    await bounded(app?.close(), 'app.close()');
    const { closeMessaging } = await import('../../shared/messaging');
    await bounded(closeMessaging(), 'closeMessaging()');
    await proxy?.close();
    await relayStore?.close();
    await store?.close();
    await amqp?.close();
    await vhost?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('recovers by itself from three cuts: every order accepted, published and processed exactly once', async () => {
    const seed = Date.now() % 1_000_000;
    const wanted = makeOrders(ORDERS, seededRandom(seed), 'cut-user');
    const placed: PlacedOrder[] = [];
    const answers: Array<{ status: number; duringCut: boolean }> = [];
    let next = 0;
    let isDown = false;

    const client = async () => {
      while (next < wanted.length) {
        const o = wanted[next++]!;
        const downAtStart = isDown;
        const response = await fetch(`${base}/order`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ user_id: o.user_id, item: o.item, quantity: o.quantity }),
        });
        const body = (await response.json()) as { order_id?: string };
        answers.push({ status: response.status, duringCut: downAtStart || isDown });
        if (response.status === 202 && body.order_id)
          placed.push({ order_id: body.order_id, user_id: o.user_id, item: o.item, quantity: o.quantity });
        await sleep(5); // a steady stream rather than one burst, so the cuts land mid-flow
      }
    };

    const cuts: Array<{ severed: number; afterOrders: number }> = [];
    const cutter = async () => {
      for (let i = 1; i <= CUTS; i++) {
        await waitFor(() => answers.length >= (i * ORDERS) / (CUTS + 1), `order ${(i * ORDERS) / (CUTS + 1)} to be posted`, 60_000);
        // Both connections (the runner's, and the one intake and the functions publish on) are back by
        // themselves before the next cut, so every cut hits live connections. Asked of the Brokers, not of
        // the proxy: a socket through it may still be an attempt in its handshake, which a cut would just fail.
        const what = i === 1 ? 'to be connected' : `to reconnect after cut ${i - 1}`;
        const { messaging } = await import('../../shared/messaging');
        await waitFor(
          () => runner.broker.connected && messaging().broker.connected && proxy.open >= 2,
          `the runner and the publisher ${what}`,
          30_000,
        );
        isDown = true;
        cuts.push({ severed: proxy.down(), afterOrders: answers.length });
        await sleep(OUTAGE_MS);
        proxy.up();
        isDown = false;
      }
    };

    await Promise.all([...Array.from({ length: CLIENTS }, client), cutter()]);

    const postedDuringCuts = answers.filter((a) => a.duringCut);
    expect(
      answers.filter((a) => a.status !== 202),
      'every POST /order answered 202',
    ).toEqual([]);
    expect(postedDuringCuts.length, 'some orders were posted while the broker was unreachable').toBeGreaterThan(0);
    expect(placed).toHaveLength(ORDERS);

    const orderIds = placed.map((o) => o.order_id);
    await waitFor(
      async () => {
        if (!(await allSettled(store, orderIds))) return false;
        const depths = await Promise.all(QUEUES.map((q) => queueDepth(amqp.connection, q)));
        return depths.every((d) => d === 0);
      },
      'every order to be decided and notified, the outbox to be empty and the queues drained',
      120_000,
    );

    const { problems, summary } = exactlyOnceProblems(await readFlow(store), placed, FAULT_STOCK);
    const reconnects = runnerLogs.lines.filter((l) => l.message === 'connected to RabbitMQ').length;
    console.log(
      `[fault] broker cut x${CUTS} (seed ${seed}): ${JSON.stringify(summary)}; connections severed per cut ${cuts.map((c) => c.severed).join(', ')}, ` +
        `refused during outages ${proxy.stats.refused}; ${postedDuringCuts.length} orders posted during cuts; runner connected ${reconnects} times`,
    );
    expect(problems).toEqual([]);
    // Each cut hit both the runner's connection and the publishing connection of intake and the functions.
    for (const cut of cuts) expect(cut.severed).toBeGreaterThanOrEqual(2);
    expect(reconnects).toBeGreaterThanOrEqual(CUTS + 1);
    for (const queue of QUEUES) expect(await queueDepth(amqp.connection, `${queue}-dlq`), `${queue}-dlq is empty`).toBe(0);
    // And the intake says so itself.
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
  }, 240_000);
});
