/**
 * The intake app through fastify.inject, with the store, broker and publisher injected: the main flows on
 * SQLite (a temporary file) and on PostgreSQL (a schema of its own per test, from TEST_DATABASE_URL), with
 * the real broker. "Broker down" is a publisher whose broker URL points at a closed port.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config';
import { buildApp } from '../../shared/http';
import { createLogger } from '../../shared/logging';
import { Broker, declareTopology, Publisher, topologyOptions } from '../../shared/messaging';
import { publishPending } from '../../shared/outbox';
import { openStore } from '../../shared/store';
import { AMQP_URL, openTestAmqp, type TestAmqp } from '../support/amqp';
import { backends } from '../support/databases';
import { LogCapture } from '../support/runner';

const ADMIN_TOKEN = 'intake-app-test-admin-token';
const CLOSED_PORT_URL = 'amqp://guest:guest@127.0.0.1:1';

const order = (overrides: Record<string, unknown> = {}) => ({ user_id: 'user-7', item: 'widget', quantity: 2, ...overrides });

async function waitFor<T>(probe: () => T | undefined, what: string, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface Received {
  body: Record<string, unknown>;
  properties: Record<string, unknown>;
}

describe.each(backends())('order intake on $name', (backend) => {
  let amqp: TestAmqp;
  let broker: Broker;
  let publisher: Publisher;
  const received: Received[] = [];
  const open: Array<{ close(): Promise<unknown> }> = [];

  beforeAll(async () => {
    await backend.setup();
    amqp = await openTestAmqp();
    await declareTopology(amqp.connection, topologyOptions(loadConfig({})));
    // A private queue on the same binding as order-events sees every OrderPlaced of this file, without
    // taking messages from order-events that another test may be reading.
    const { queue } = await amqp.channel.assertQueue('', { exclusive: true, autoDelete: true });
    await amqp.channel.bindQueue(queue, 'orders', 'order.placed');
    await amqp.channel.consume(queue, (message) => {
      if (!message) return;
      received.push({ body: JSON.parse(message.content.toString()), properties: message.properties as unknown as Record<string, unknown> });
      amqp.channel.ack(message);
    });
    broker = new Broker({ urls: [AMQP_URL], connectionName: 'intake-app-test' });
    publisher = new Publisher(broker);
  });

  afterEach(async () => {
    for (const resource of open.splice(0).reverse()) await resource.close();
  });

  afterAll(async () => {
    await publisher.close();
    await broker.close();
    await amqp.close();
    await backend.teardown();
  });

  const eventsFor = (orderId: string) => received.filter((r) => r.body.order_id === orderId);

  /**
   * A fresh store and an app on it; `brokerDown` gives the app a publisher that cannot reach RabbitMQ, or
   * `downBroker` the broker to use for that (e.g. one that keeps retrying); `logs` captures the app's log.
   */
  async function setup(options: { brokerDown?: boolean; downBroker?: Broker; env?: NodeJS.ProcessEnv; logs?: LogCapture } = {}) {
    const store = await openStore(await backend.fresh());
    open.push(store);
    let appBroker = broker;
    let appPublisher = publisher;
    if (options.brokerDown || options.downBroker) {
      appBroker = options.downBroker ?? new Broker({ urls: [CLOSED_PORT_URL], maxAttempts: 1, connectionName: 'intake-app-test-down' });
      appPublisher = new Publisher(appBroker);
      open.push(appBroker);
    }
    const app: FastifyInstance = buildApp({
      store,
      broker: appBroker,
      publisher: appPublisher,
      config: loadConfig({ ADMIN_TOKEN, ...options.env }),
      logger: options.logs ? createLogger({ level: 'info', destination: options.logs }) : createLogger({ level: 'silent' }),
    });
    open.push(app);
    const post = (body: unknown, headers: Record<string, string> = {}) =>
      app.inject({ method: 'POST', url: '/order', payload: body as object, headers });
    return { store, app, post };
  }

  it('accepts an order with 202, shows it on GET and publishes OrderPlaced with the correlation id', async () => {
    const { app, post, store } = await setup();
    const accepted = await post(order(), { 'x-correlation-id': 'corr-main-flow' });
    expect(accepted.statusCode).toBe(202);
    expect(accepted.headers['x-correlation-id']).toBe('corr-main-flow');
    const { order_id: orderId } = accepted.json();
    expect(accepted.headers.location).toBe(`/orders/${orderId}`);

    const got = await app.inject({ method: 'GET', url: `/orders/${orderId}` });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({ order_id: orderId, user_id: 'user-7', item: 'widget', quantity: 2, status: 'accepted' });

    const [event] = await waitFor(() => (eventsFor(orderId).length ? eventsFor(orderId) : undefined), 'the OrderPlaced event');
    expect(event!.body).toMatchObject({ event_type: 'OrderPlaced', order_id: orderId, quantity: 2 });
    expect(event!.properties).toMatchObject({ messageId: event!.body.event_id, appId: 'order-intake', correlationId: 'corr-main-flow' });
    expect(await store.outbox.backlog()).toBe(0);
    expect((await store.orders.get(orderId))?.correlation_id).toBe('corr-main-flow');
  });

  it('opens GET /orders to anyone by default (local), and only to the admin token with ORDERS_LIST_ADMIN_ONLY (deployed); GET /orders/{id} stays open', async () => {
    const local = await setup();
    const mine = (await local.post(order())).json().order_id;
    const open = await local.app.inject({ method: 'GET', url: '/orders' });
    expect(open.statusCode).toBe(200);
    expect(open.json().orders.map((o: { order_id: string }) => o.order_id)).toEqual([mine]);

    const deployed = await setup({ env: { ORDERS_LIST_ADMIN_ONLY: 'true' } });
    const orderId = (await deployed.post(order({ user_id: 'user-private' }))).json().order_id;
    for (const headers of [{}, { authorization: 'Bearer not-the-admin-token' }]) {
      const refused = await deployed.app.inject({ method: 'GET', url: '/orders?limit=5', headers });
      expect(refused.statusCode).toBe(401);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.body).not.toContain('user-private');
    }
    const admin = await deployed.app.inject({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(admin.statusCode).toBe(200);
    expect(admin.json().orders).toEqual([expect.objectContaining({ order_id: orderId, user_id: 'user-private' })]);
    const one = await deployed.app.inject({ method: 'GET', url: `/orders/${orderId}` });
    expect(one.statusCode).toBe(200);
    expect(one.json()).toMatchObject({ order_id: orderId, status: 'accepted' });
    // Without any admin token configured, the list is closed to everyone in that mode.
    const noToken = await setup({ env: { ORDERS_LIST_ADMIN_ONLY: 'true', ADMIN_TOKEN: '' } });
    expect(
      (await noToken.app.inject({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).statusCode,
    ).toBe(401);
  });

  it('pages GET /orders newest first, without repeats, until next_cursor is null', async () => {
    const { app, post } = await setup();
    const created: string[] = [];
    for (let i = 1; i <= 5; i++) {
      created.push((await post(order({ quantity: i }))).json().order_id);
      await sleep(3); // distinct creation times
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `limit=2&cursor=${encodeURIComponent(cursor)}` : 'limit=2';
      const page = await app.inject({ method: 'GET', url: `/orders?${query}` });
      expect(page.statusCode).toBe(200);
      const body = page.json();
      expect(body.orders.length).toBeLessThanOrEqual(2);
      seen.push(...body.orders.map((o: { order_id: string }) => o.order_id));
      cursor = body.next_cursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual([...created].reverse());
  });

  it('returns the same order for a retry with the same Idempotency-Key, and 422 for another body', async () => {
    const { app, post } = await setup();
    const key = `key-${randomUUID()}`;
    const first = await post({ user_id: 'user-7', item: 'widget', quantity: 2 }, { 'idempotency-key': key });
    const retry = await post({ quantity: 2, item: 'widget', user_id: 'user-7' }, { 'idempotency-key': key });
    expect(first.statusCode).toBe(202);
    expect(retry.statusCode).toBe(202);
    expect(retry.body).toBe(first.body);
    expect(retry.headers['idempotent-replayed']).toBe('true');

    const conflict = await post(order({ quantity: 3 }), { 'idempotency-key': key });
    expect(conflict.statusCode).toBe(422);
    expect(conflict.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(conflict.json().errors).toEqual([{ field: 'Idempotency-Key', message: expect.any(String) }]);

    const listed = (await app.inject({ method: 'GET', url: '/orders' })).json();
    expect(listed.orders.map((o: { order_id: string }) => o.order_id)).toEqual([first.json().order_id]);
    await sleep(200);
    expect(eventsFor(first.json().order_id)).toHaveLength(1);
  });

  it('creates one order for concurrent retries with one Idempotency-Key', async () => {
    const { app, post } = await setup();
    const key = `key-${randomUUID()}`;
    const answers = await Promise.all(Array.from({ length: 8 }, () => post(order(), { 'idempotency-key': key })));
    expect(answers.map((a) => a.statusCode)).toEqual(Array(8).fill(202));
    expect(new Set(answers.map((a) => a.json().order_id)).size).toBe(1);
    expect((await app.inject({ method: 'GET', url: '/orders' })).json().orders).toHaveLength(1);
  });

  it('answers bad input with 4xx problem+json naming the field, never 500', async () => {
    const { app, post } = await setup();
    const cases = [
      { response: await post(order({ quantity: 0 })), status: 400, field: 'quantity' },
      { response: await post(order({ user_id: 42 })), status: 400, field: 'user_id' },
      { response: await post('{"user_id":', { 'content-type': 'application/json' }), status: 400, field: 'body' },
      { response: await post('quantity=1', { 'content-type': 'text/plain' }), status: 415, field: 'content-type' },
      { response: await post(order({ item: 'x'.repeat(20_000) })), status: 413, field: 'body' },
      { response: await app.inject({ method: 'GET', url: '/orders/12345' }), status: 400, field: 'order_id' },
      { response: await app.inject({ method: 'GET', url: '/orders?cursor=bm90LWEtY3Vyc29y' }), status: 400, field: 'cursor' },
    ];
    for (const { response, status, field } of cases) {
      expect(response.statusCode, response.body).toBe(status);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    const unknown = await app.inject({ method: 'GET', url: `/orders/${randomUUID()}` });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().title).toMatch(/not found/i);
    const noRoute = await app.inject({ method: 'GET', url: '/no/such/route' });
    expect(noRoute.statusCode).toBe(404);
    expect(noRoute.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('refuses text a database cannot store (NUL, lone surrogates) with 400 naming the field, the same on each store', async () => {
    const { app, post, store } = await setup();
    const json = (body: string) => post(body, { 'content-type': 'application/json' });
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    // A cursor in the store's own format (base64url of [created_at, order_id]), but holding a NUL.
    const nulCursor = Buffer.from(JSON.stringify(['2025-03-10T12:00:00.000Z\u0000', randomUUID()])).toString('base64url');
    const cases = [
      { response: await json('{"user_id":"a\\u0000b","item":"widget","quantity":1}'), field: 'user_id' },
      { response: await json('{"user_id":"u","item":"widget\\u0000","quantity":1}'), field: 'item' },
      { response: await json('{"user_id":"\\ud800","item":"widget","quantity":1}'), field: 'user_id' },
      { response: await json('{"user_id":"u","item":"wid\\udc00get","quantity":1}'), field: 'item' },
      {
        response: await app.inject({ method: 'POST', url: '/admin/stock/a%00b/restock', headers: auth, payload: { quantity: 1 } }),
        field: 'item',
      },
      { response: await app.inject({ method: 'GET', url: '/admin/stock/a%00b', headers: auth }), field: 'item' },
      { response: await app.inject({ method: 'GET', url: '/orders?cursor=a%00b' }), field: 'cursor' },
      { response: await app.inject({ method: 'GET', url: `/orders?cursor=${nulCursor}` }), field: 'cursor' },
    ];
    for (const { response, field } of cases) {
      expect(response.statusCode, response.body).toBe(400);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    expect(await store.outbox.backlog()).toBe(0);
    expect((await app.inject({ method: 'GET', url: '/orders' })).json().orders).toEqual([]);

    // A character outside the BMP (a surrogate pair, well formed) is text like any other, stored as sent.
    const unicorn = await json(JSON.stringify(order({ user_id: 'u-🦄' })));
    expect(unicorn.statusCode, unicorn.body).toBe(202);
    expect((await app.inject({ method: 'GET', url: `/orders/${unicorn.json().order_id}` })).json().user_id).toBe('u-🦄');
  });

  it('answers a POST without Content-Type with 415 naming content-type, for orders and admin alike', async () => {
    const { app } = await setup();
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const requests = [
      { url: '/order', payload: JSON.stringify(order()), headers: {} },
      { url: '/order', headers: {} },
      { url: '/admin/stock/gadget/restock', payload: '{"quantity":1}', headers: auth },
      { url: '/admin/stock/gadget/restock', headers: auth },
    ];
    for (const request of requests) {
      const response = await app.inject({ method: 'POST', ...request });
      expect(response.statusCode, `${request.url}: ${response.body}`).toBe(415);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.json().errors).toEqual([{ field: 'content-type', message: 'must be application/json' }]);
    }
    expect((await app.inject({ method: 'GET', url: '/orders' })).json().orders).toEqual([]);
  });

  it('guards admin stock with the bearer token; restock then read', async () => {
    const { app } = await setup();
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    expect((await app.inject({ method: 'GET', url: '/admin/stock' })).statusCode).toBe(401);
    const wrong = await app.inject({ method: 'GET', url: '/admin/stock', headers: { authorization: 'Bearer not-the-admin-token' } });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(wrong.headers['www-authenticate']).toMatch(/^Bearer/);

    const restocked = await app.inject({ method: 'POST', url: '/admin/stock/gadget/restock', headers: auth, payload: { quantity: 4 } });
    expect(restocked.statusCode).toBe(200);
    await app.inject({ method: 'POST', url: '/admin/stock/gadget/restock', headers: auth, payload: { quantity: 6 } });
    const one = await app.inject({ method: 'GET', url: '/admin/stock/gadget', headers: auth });
    expect(one.json()).toMatchObject({ item: 'gadget', available: 10, reserved: 0 });
    const all = await app.inject({ method: 'GET', url: '/admin/stock', headers: auth });
    expect(all.json().items).toEqual([expect.objectContaining({ item: 'gadget', available: 10 })]);

    const badQuantity = await app.inject({ method: 'POST', url: '/admin/stock/gadget/restock', headers: auth, payload: { quantity: -1 } });
    expect(badQuantity.statusCode).toBe(400);
    expect(badQuantity.json().errors[0].field).toBe('quantity');
    expect((await app.inject({ method: 'GET', url: '/admin/stock/nothing-here', headers: auth })).statusCode).toBe(404);
  });

  it('reports health: 200 with both up, 503 naming the broker when it is unreachable', async () => {
    const up = await (await setup()).app.inject({ method: 'GET', url: '/health' });
    expect(up.statusCode).toBe(200);
    expect(up.json()).toEqual({ status: 'ok', checks: { broker: 'up', database: 'up' }, down: [] });
    const down = await (await setup({ brokerDown: true })).app.inject({ method: 'GET', url: '/health' });
    expect(down.statusCode).toBe(503);
    expect(down.json()).toEqual({ status: 'unavailable', checks: { broker: 'down', database: 'up' }, down: ['broker'] });
  });

  it('accepts orders while the broker is down; the relay publishes them once it is reachable', async () => {
    const { app, post, store } = await setup({ brokerDown: true });
    const accepted = await post(order(), { 'x-correlation-id': 'corr-broker-down' });
    expect(accepted.statusCode).toBe(202);
    const orderId = accepted.json().order_id;
    expect((await app.inject({ method: 'GET', url: `/orders/${orderId}` })).json().status).toBe('accepted');

    // Deferred, not failed: the row was never sent, so it stays as it was written for the relay.
    const [pending] = await store.outbox.pending();
    expect(pending).toMatchObject({ attempts: 0, last_error: null });
    await sleep(200);
    expect(eventsFor(orderId)).toHaveLength(0);

    // The broker is back (a publisher that reaches it): one relay round sends what waited.
    expect(await publishPending(store, publisher)).toMatchObject({ published: 1, failed: 0 });
    const [event] = await waitFor(() => (eventsFor(orderId).length ? eventsFor(orderId) : undefined), 'the relayed event');
    expect(event!.body).toMatchObject({ event_id: pending!.event_id, order_id: orderId });
    expect(event!.properties).toMatchObject({ messageId: pending!.event_id, correlationId: 'corr-broker-down', appId: 'order-intake' });
    expect(await store.outbox.backlog()).toBe(0);
    expect(await publishPending(store, publisher)).toMatchObject({ published: 0 });
  });

  it('answers at once while the broker is known down, even with a long publish wait: deferred, logged, and /health says so', async () => {
    // Keeps retrying in the background, slowly: after its first failed round the broker is known down.
    const downBroker = new Broker({ urls: [CLOSED_PORT_URL], initialBackoffMs: 60_000, connectionName: 'intake-app-test-known-down' });
    const attempts: unknown[] = [];
    downBroker.on('connectFailed', (attempt) => attempts.push(attempt));
    const logs = new LogCapture();
    const { app, post, store } = await setup({ downBroker, logs, env: { INTAKE_PUBLISH_WAIT_MS: '600000' } });

    // Were intake to wait for the broker, these would wait out the 10-minute publish wait (and the test's timeout).
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => post(order({ quantity: i + 1 }))));
    expect(answers.map((a) => a.statusCode)).toEqual(Array(20).fill(202));
    expect(downBroker.status.state).toBe('down');
    expect(attempts, 'one connection attempt for all of them').toHaveLength(1);
    const more = await Promise.all(Array.from({ length: 20 }, () => post(order())));
    expect(more.map((a) => a.statusCode)).toEqual(Array(20).fill(202));
    expect(attempts, 'none more once known down').toHaveLength(1);

    // Every row is left for the relay as written, and every order says why its publish was deferred.
    const pending = await store.outbox.pending(100);
    expect(pending).toHaveLength(40);
    expect(pending.every((row) => row.attempts === 0 && row.last_error === null)).toBe(true);
    const deferred = logs.lines.filter((line) => line.publish === 'deferred');
    expect(deferred).toHaveLength(40);
    expect(deferred[0]).toMatchObject({
      level: 'info',
      message: expect.stringMatching(/publish deferred \(broker down\)/),
      brokerDownSince: expect.any(String),
    });

    const health = await app.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(503);
    expect(health.json()).toMatchObject({ checks: { broker: 'down', database: 'up' } });
    expect(attempts, '/health makes no attempt of its own either').toHaveLength(1);

    // The broker is back (a publisher that reaches it): the relay sends every one of them, once.
    expect(await publishPending(store, publisher)).toMatchObject({ published: 40, failed: 0, deferred: 0 });
    expect(await store.outbox.backlog()).toBe(0);
  });

  it('sheds load with 503 + Retry-After once the unpublished backlog reaches OUTBOX_BACKLOG_LIMIT', async () => {
    const { app, post, store } = await setup({ brokerDown: true, env: { OUTBOX_BACKLOG_LIMIT: '2' } });
    const first = await post(order(), { 'idempotency-key': 'shed-1' });
    expect(first.statusCode).toBe(202);
    expect((await post(order())).statusCode).toBe(202);

    const shed = await post(order());
    expect(shed.statusCode).toBe(503);
    expect(Number(shed.headers['retry-after'])).toBeGreaterThan(0);
    expect(shed.headers['content-type']).toMatch(/^application\/problem\+json/);
    // A retry of an order already taken still gets its answer.
    expect((await post(order(), { 'idempotency-key': 'shed-1' })).body).toBe(first.body);
    expect((await app.inject({ method: 'GET', url: '/orders' })).json().orders).toHaveLength(2);

    await publishPending(store, publisher);
    expect((await post(order())).statusCode).toBe(202);
  });
});
