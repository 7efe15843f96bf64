/**
 * The whole system in one process, as the worker runs it: orders posted over real HTTP to the intake app,
 * the three queue functions fed by the runner from the real broker, one SQLite file, the outbox relay.
 */

import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { type HandlerLoader, InProcessInvoker, loadService, Runner, triggersFromFunctions } from 'serverless-offline-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appHooks } from '../../shared/app/runner-hooks';
import { loadConfig } from '../../shared/config';
import { DlqReprocessor } from '../../shared/dlq';
import { createLogger } from '../../shared/logging';
import { Broker, Publisher } from '../../shared/messaging';
import { type Order, openStore, type Store } from '../../shared/store';
import { openTestAmqp, purgeQueues, queueDepth, type TestAmqp } from '../support/amqp';
import { brokerControl } from '../support/broker-control';
import { waitFor } from '../support/runner';

const ROOT = resolve(import.meta.dirname, '../..');
const CONTRACT_QUEUES = [
  'order-events',
  'inventory-events',
  'order-status-events',
  'order-events-dlq',
  'inventory-events-dlq',
  'order-status-events-dlq',
];

// Configuration is read once per process: set before anything reads it.
const sqlitePath = join(mkdtempSync(join(tmpdir(), 'flow-')), 'app.sqlite');
Object.assign(process.env, {
  SQLITE_PATH: sqlitePath,
  RETRY_DELAYS_MS: '200,400',
  LOG_LEVEL: 'error',
  INTAKE_PUBLISH_WAIT_MS: '300',
  OUTBOX_RELAY_INTERVAL_MS: '200',
});

describe('order flow through HTTP, the broker and every function', () => {
  let amqp: TestAmqp;
  let store: Store;
  let app: FastifyInstance;
  let runner: Runner;
  let base: string;

  const post = async (body: unknown) => {
    const response = await fetch(`${base}/order`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const order = async (id: string) => (await (await fetch(`${base}/orders/${id}`)).json()) as Order & { notified_at: string | null };
  const settled = (ids: string[]) =>
    waitFor(
      async () => (await Promise.all(ids.map(order))).every((o) => o.status !== 'accepted' && o.notified_at),
      `orders ${ids.join(', ')} to be decided and notified`,
      30_000,
    );

  beforeAll(async () => {
    amqp = await openTestAmqp();
    await purgeQueues(amqp.connection, CONTRACT_QUEUES);
    const handlers: Record<string, { handler: unknown }> = {
      inventoryReservation: await import('../../handlers/inventory-reservation'),
      notification: await import('../../handlers/notification'),
      orderStatus: await import('../../handlers/order-status'),
    };
    ({ app } = (await import('../../handlers/order-intake')) as { app: FastifyInstance });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
    store = await openStore({ sqlitePath });

    const service = loadService(ROOT);
    const load: HandlerLoader = async (trigger) => handlers[trigger.functionKey]!.handler as Awaited<ReturnType<HandlerLoader>>;
    runner = new Runner({
      urls: loadConfig().amqpUrls,
      triggers: triggersFromFunctions(service.functions, service.info).map((t) => ({ ...t, maximumBatchingWindow: 0.05 })),
      invoker: new InProcessInvoker(load),
      logger: createLogger({ level: 'error' }),
      hooks: appHooks({ relayStore: async () => store }),
    });
    await runner.start();
  }, 60_000);

  afterAll(async () => {
    await runner?.stop();
    await app?.close();
    await store?.close();
    const { closeMessaging } = await import('../../shared/messaging');
    await closeMessaging();
    await purgeQueues(amqp.connection, CONTRACT_QUEUES);
    await amqp.close();
  });

  it('reserves stock, notifies both outcomes and updates every order status', async () => {
    // The reference system's own example order, against the catalog seeded into this fresh database.
    const reserved = await post({ user_id: 'user123', item: 'Burger', quantity: 2 });
    const outOfStock = await post({ user_id: 'u-2', item: 'Sushi', quantity: 1 });
    const unknown = await post({ user_id: 'u-3', item: 'unobtainium', quantity: 1 });
    for (const answer of [reserved, outOfStock, unknown]) expect(answer).toMatchObject({ status: 202, body: { status: 'accepted' } });
    const ids = [reserved, outOfStock, unknown].map((a) => String(a.body.order_id));
    await settled(ids);

    const [a, b, c] = await Promise.all(ids.map(order));
    expect(a).toMatchObject({ status: 'reserved' });
    expect(b).toMatchObject({ status: 'rejected', reason: 'out_of_stock' });
    expect(c).toMatchObject({ status: 'rejected', reason: 'unknown_item' });
    expect(await store.stock.get('Burger')).toMatchObject({ available: 98, reserved: 2 });
    const kinds = await Promise.all(ids.map(async (id) => (await store.notifications.listByOrder(id)).map((n) => n.kind)));
    expect(kinds).toEqual([['reserved'], ['rejected'], ['rejected']]);
    expect(await store.outbox.backlog()).toBe(0);
  });

  it('loses no order while the broker is stopped: all are accepted, and flow on once it is back', async () => {
    const ids: string[] = [];
    const control = await brokerControl();
    await control.stop();
    try {
      for (let i = 0; i < 5; i++) {
        const answer = await post({ user_id: `u-down-${i}`, item: 'Pizza', quantity: 1 });
        expect(answer.status).toBe(202);
        ids.push(String(answer.body.order_id));
      }
      expect(await store.outbox.backlog()).toBeGreaterThanOrEqual(5);
    } finally {
      await control.start();
      amqp = await openTestAmqp(); // the test's own connection went down with the broker
    }
    await settled(ids);
    for (const o of await Promise.all(ids.map(order))) expect(o.status).toBe('reserved');
    expect(await store.stock.get('Pizza')).toMatchObject({ reserved: 5 });
    expect(await store.outbox.backlog()).toBe(0);
  }, 90_000);

  it('processes a message from a plain AMQP client that follows the contract', async () => {
    const orderId = randomUUID();
    await store.orders.insert({ order_id: orderId, user_id: 'u-plain', item: 'Salad', quantity: 2 });
    const event = {
      event_id: randomUUID(),
      event_type: 'OrderPlaced',
      order_id: orderId,
      timestamp: new Date().toISOString(),
      user_id: 'u-plain',
      item: 'Salad',
      quantity: 2,
    };
    const channel = await amqp.connection.createConfirmChannel();
    channel.publish('orders', 'order.placed', Buffer.from(JSON.stringify(event)), {
      messageId: event.event_id,
      contentType: 'application/json',
      persistent: true,
      type: 'OrderPlaced',
      correlationId: 'plain-client-1',
    });
    await channel.waitForConfirms();
    await channel.close();
    await settled([orderId]);
    expect(await order(orderId)).toMatchObject({ status: 'reserved' });
  });

  it('dead-letters a message that keeps failing while the database is locked, and redrives it once that is fixed', async () => {
    const orderId = randomUUID();
    await store.orders.insert({ order_id: orderId, user_id: 'u-locked', item: 'Sandwich', quantity: 1 });
    const event = {
      event_id: randomUUID(),
      event_type: 'OrderPlaced',
      order_id: orderId,
      timestamp: new Date().toISOString(),
      user_id: 'u-locked',
      item: 'Sandwich',
      quantity: 1,
    };
    // The cause: another program holds the database's write lock (the store waits its 5 s busy timeout per attempt).
    const locker = new Database(sqlitePath);
    locker.exec('BEGIN EXCLUSIVE');
    const broker = new Broker({ urls: [loadConfig().amqpUrls[0]!], connectionName: 'flow-test-dlq' });
    const reprocessor = new DlqReprocessor({ broker, publisher: new Publisher(broker) });
    try {
      const channel = await amqp.connection.createConfirmChannel();
      channel.publish('orders', 'order.placed', Buffer.from(JSON.stringify(event)), {
        messageId: event.event_id,
        type: event.event_type,
        contentType: 'application/json',
        persistent: true,
      });
      await channel.waitForConfirms();
      await channel.close();
      await waitFor(async () => (await queueDepth(amqp.connection, 'order-events-dlq')) === 1, 'the message to be dead-lettered', 60_000);
      const { sample } = await reprocessor.inspect('order-events-dlq');
      expect(sample[0]).toMatchObject({ messageId: event.event_id, errorClass: 'transient', attempts: 3, originalQueue: 'order-events' });
      expect(sample[0]!.errorMessage).toMatch(/locked/);

      locker.exec('ROLLBACK'); // the cause is fixed
      const report = await reprocessor.redrive({ queue: 'order-events-dlq' });
      expect(report.moved).toEqual([event.event_id]);
      await settled([orderId]);
      expect(await order(orderId)).toMatchObject({ status: 'reserved' });
      expect(await queueDepth(amqp.connection, 'order-events-dlq')).toBe(0);
    } finally {
      if (locker.inTransaction) locker.exec('ROLLBACK');
      locker.close();
      await broker.close();
    }
  }, 90_000);
});
