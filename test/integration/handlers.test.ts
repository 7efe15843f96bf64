/**
 * Each queue function's handler invoked directly with its committed fixture events, as `npm run invoke`
 * does: real middleware, the real broker, a real SQLite file.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Context, Handler } from 'aws-lambda';
import type { BatchReport, RabbitMQEvent } from 'middy-rabbitmq';
import { createLambdaContext } from 'serverless-offline-rabbitmq';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../shared/store';
import { getMessage, openTestAmqp, purgeQueues, queueDepth, type TestAmqp } from '../support/amqp';

const ROOT = resolve(import.meta.dirname, '../..');
const fixture = (path: string) => JSON.parse(readFileSync(join(ROOT, 'fixtures', path), 'utf8')) as RabbitMQEvent;
const context = (name: string): Context => createLambdaContext({ functionName: name, timeoutSeconds: 30, memorySize: 512 });

// Configuration is read once per process, so it is set before the handlers are imported.
const sqlitePath = join(mkdtempSync(join(tmpdir(), 'handlers-')), 'app.sqlite');
process.env.SQLITE_PATH = sqlitePath;
process.env.RETRY_DELAYS_MS = '100,200';
process.env.LOG_LEVEL = 'error';

interface WebhookCall {
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

const QUEUES = ['order-events', 'order-events-dlq', 'inventory-events', 'order-status-events', 'retry-100ms', 'retry-200ms'];

describe('queue function handlers invoked with their fixtures', () => {
  let amqp: TestAmqp;
  let store: Store;
  let webhook: Server;
  const calls: WebhookCall[] = [];
  let failNext = 0;
  let inventory: Handler<RabbitMQEvent, BatchReport>;
  let notification: Handler<RabbitMQEvent, BatchReport>;
  let orderStatus: Handler<RabbitMQEvent, BatchReport>;
  const invoke = (handler: Handler<RabbitMQEvent, BatchReport>, event: RabbitMQEvent, name: string) =>
    handler(event, context(name), () => undefined) as Promise<BatchReport>;

  beforeAll(async () => {
    webhook = createServer((request, response) => {
      let text = '';
      request.on('data', (chunk: Buffer) => (text += chunk.toString()));
      request.on('end', () => {
        if (failNext > 0) {
          failNext--;
          response.writeHead(503).end();
          return;
        }
        calls.push({ headers: request.headers, body: JSON.parse(text) as Record<string, unknown> });
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((done) => webhook.listen(0, '127.0.0.1', done));
    const address = webhook.address() as { port: number };
    process.env.WEBHOOK_URL = `http://127.0.0.1:${address.port}/hooks/orders`;

    amqp = await openTestAmqp();
    // The topology the handlers declare, declared before the first purge: purging a retry queue while a handler's
    // first invocation was still declaring it crashed the broker's channel with {case_clause,{error,noproc}}
    // (RabbitMQ 3.10), which closes the whole connection (541 INTERNAL_ERROR) and failed every test after it in CI.
    const { loadConfig } = await import('../../shared/config');
    const { declareTopology, topologyOptions } = await import('../../shared/messaging');
    await declareTopology(amqp.connection, topologyOptions(loadConfig(process.env)));
    ({ handler: inventory } = (await import('../../handlers/inventory-reservation')) as { handler: typeof inventory });
    ({ handler: notification } = (await import('../../handlers/notification')) as { handler: typeof notification });
    ({ handler: orderStatus } = (await import('../../handlers/order-status')) as { handler: typeof orderStatus });
    store = await openStore({ sqlitePath });
  });
  beforeEach(async () => {
    await purgeQueues(amqp.connection, QUEUES);
  });
  afterAll(async () => {
    await sleep(300); // let retried fixture messages come back from the retry queues, then clear them
    await purgeQueues(amqp.connection, QUEUES);
    const { closeMessaging } = await import('../../shared/messaging');
    await closeMessaging();
    await store.close();
    await amqp.close();
    await new Promise((done) => webhook.close(done));
  });

  it('inventoryReservation: reserves seeded stock and emits InventoryReserved with the correlation id', async () => {
    const report = await invoke(inventory, fixture('inventory-reservation/order-placed.json'), 'inventoryReservation');
    expect(report).toEqual({ records: 1, processed: 1, duplicates: 0, retried: 0, deadLettered: 0 });
    expect(await store.stock.get('Burger')).toMatchObject({ available: 98, reserved: 2 });
    const emitted = await getMessage(amqp.channel, 'inventory-events');
    expect(emitted.properties).toMatchObject({
      type: 'InventoryReserved',
      correlationId: 'corr-fixture-1',
      appId: 'inventory-reservation',
      contentType: 'application/json',
    });
    expect(JSON.parse(emitted.content.toString())).toMatchObject({ order_id: '11111111-1111-4111-8111-111111111111', quantity: 2 });
    expect(await store.outbox.backlog()).toBe(0);
  });

  it('inventoryReservation: a batch reserves what it can, reports out of stock, and does nothing twice', async () => {
    const report = await invoke(inventory, fixture('inventory-reservation/batch.json'), 'inventoryReservation');
    expect(report).toMatchObject({ records: 2, processed: 1, duplicates: 1 }); // the first order was handled above
    const failed = await getMessage(amqp.channel, 'inventory-events');
    expect(failed.properties.type).toBe('InventoryFailed');
    expect(JSON.parse(failed.content.toString())).toMatchObject({ item: 'Sushi', reason: 'out_of_stock' });
    expect(await store.stock.get('Burger')).toMatchObject({ available: 98 });
  });

  it('inventoryReservation: the poison batch dead-letters the malformed and the schema-invalid message', async () => {
    const report = await invoke(inventory, fixture('inventory-reservation/poison-batch.json'), 'inventoryReservation');
    expect(report).toMatchObject({ records: 3, duplicates: 1, deadLettered: 2 });
    expect(await queueDepth(amqp.connection, 'order-events-dlq')).toBe(2);
  });

  it('notification: stores one notification per event and posts it to the webhook with the idempotency key', async () => {
    const reserved = fixture('notification/inventory-reserved.json');
    expect(await invoke(notification, reserved, 'notification')).toMatchObject({ processed: 1 });
    expect(await invoke(notification, reserved, 'notification')).toMatchObject({ processed: 0, duplicates: 1 });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.headers['idempotency-key']).toBe('b1000000-0000-4000-8000-000000000001');
    expect(calls[0]!.headers['x-correlation-id']).toBe('corr-fixture-1');
    expect(calls[0]!.body).toMatchObject({ kind: 'reserved', order_id: '11111111-1111-4111-8111-111111111111' });
    const stored = await store.notifications.listByOrder('11111111-1111-4111-8111-111111111111');
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ kind: 'reserved', webhook_status: 'delivered (HTTP 204)' });
  });

  it('notification: a failing webhook rolls the notification back and schedules a retry', async () => {
    failNext = 1;
    const failedEvent = fixture('notification/inventory-failed.json');
    expect(await invoke(notification, failedEvent, 'notification')).toMatchObject({ processed: 0, retried: 1 });
    expect(await store.notifications.listByOrder('22222222-2222-4222-8222-222222222222')).toHaveLength(0);
    // The retry comes back to inventory-events after the delay; delivered again, it succeeds.
    const retried = await getMessage(amqp.channel, 'inventory-events');
    expect(retried.properties.headers?.['x-attempt']).toBe(2);
    expect(await invoke(notification, failedEvent, 'notification')).toMatchObject({ processed: 1 });
    const [stored] = await store.notifications.listByOrder('22222222-2222-4222-8222-222222222222');
    expect(stored).toMatchObject({ kind: 'rejected' });
    expect(stored!.message).toMatch(/out of stock/);
  });

  it('orderStatus: retries outcomes whose order is not stored yet, then projects them', async () => {
    const outcomes = fixture('order-status/outcomes.json');
    expect(await invoke(orderStatus, outcomes, 'orderStatus')).toMatchObject({ retried: 2, processed: 0 });
    for (const [order_id, item] of [
      ['11111111-1111-4111-8111-111111111111', 'Burger'],
      ['22222222-2222-4222-8222-222222222222', 'Sushi'],
    ] as const) {
      await store.orders.insert({ order_id, user_id: 'user-42', item, quantity: 1 });
    }
    expect(await invoke(orderStatus, outcomes, 'orderStatus')).toMatchObject({ processed: 2 });
    expect(await store.orders.get('11111111-1111-4111-8111-111111111111')).toMatchObject({ status: 'reserved', reason: null });
    expect(await store.orders.get('22222222-2222-4222-8222-222222222222')).toMatchObject({ status: 'rejected', reason: 'out_of_stock' });
  });
});
