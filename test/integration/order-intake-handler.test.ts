/**
 * The order-intake Lambda handler, invoked as Lambda would with the API Gateway HTTP API v2 fixtures and a
 * Lambda context; real SQLite file (from SQLITE_PATH, as deployed config would give it) and real RabbitMQ.
 * The OrderPlaced message is read back from `order-events` with a plain amqplib channel.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { createLambdaContext } from 'serverless-offline-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config';
import { OrderPlaced } from '../../shared/events';
import { closeMessaging, declareTopology, topologyOptions } from '../../shared/messaging';
import { getMessage, openTestAmqp, purgeQueues, type TestAmqp } from '../support/amqp';

const FIXTURES = resolve(import.meta.dirname, '../../fixtures/order-intake');
const ADMIN_TOKEN = 'intake-handler-test-admin-token';

const fixture = (name: string): APIGatewayProxyEventV2 => JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8'));

/** A fixture event for another method and path, as API Gateway would send it. */
function variant(
  name: string,
  changes: { method?: string; path?: string; headers?: Record<string, string>; body?: string },
): APIGatewayProxyEventV2 {
  const event = fixture(name);
  const method = changes.method ?? event.requestContext.http.method;
  const path = changes.path ?? event.rawPath;
  event.rawPath = path;
  event.requestContext.http = { ...event.requestContext.http, method, path };
  event.headers = { ...event.headers, ...changes.headers };
  if (changes.body !== undefined) {
    event.body = changes.body;
    event.headers['content-length'] = String(Buffer.byteLength(changes.body));
  }
  return event;
}

/** The event as API Gateway sends a request that did not have these headers. */
function without(event: APIGatewayProxyEventV2, ...names: string[]): APIGatewayProxyEventV2 {
  const headers = Object.fromEntries(Object.entries(event.headers).filter(([name]) => !names.includes(name)));
  return { ...event, headers };
}

interface LambdaResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** The fields of response bodies (an order, a page of orders, a problem) these tests read; assertions check the rest. */
interface ResponseBody {
  order_id: string;
  timestamp: string;
  orders: Array<{ order_id: string }>;
  next_cursor: string | null;
  errors: Array<{ field: string; message: string }>;
}

describe('order-intake handler with API Gateway v2 fixtures', () => {
  let dir: string;
  let amqp: TestAmqp;
  let invoke: (event: APIGatewayProxyEventV2) => Promise<LambdaResult & { json: ResponseBody }>;
  let closeApp: () => Promise<void>;
  const savedEnv = { ...process.env };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'intake-handler-'));
    Object.assign(process.env, { SQLITE_PATH: join(dir, 'app.sqlite'), ADMIN_TOKEN, LOG_LEVEL: 'silent' });
    delete process.env.DATABASE_URL;
    amqp = await openTestAmqp();
    await declareTopology(amqp.connection, topologyOptions(loadConfig()));
    await purgeQueues(amqp.connection, ['order-events']);

    const { handler, app } = await import('../../handlers/order-intake');
    closeApp = () => app.close();
    invoke = async (event) => {
      const context: Context = createLambdaContext({ functionName: 'order-intake', timeoutSeconds: 30, memorySize: 512 });
      const result = (await handler(event, context)) as LambdaResult;
      return { ...result, json: result.body ? JSON.parse(result.body) : undefined };
    };
  });

  afterAll(async () => {
    await closeApp?.();
    await closeMessaging();
    await amqp?.close();
    process.env = savedEnv;
    await rm(dir, { recursive: true, force: true });
  });

  let orderId: string;

  it('accepts post-order.json with 202, correlation id from API Gateway, and shows the order on GET', async () => {
    const accepted = await invoke(fixture('post-order'));
    expect(accepted.statusCode).toBe(202);
    expect(accepted.headers['x-correlation-id']).toBe('JKJaXmPLvHcESHA=');
    expect(accepted.json).toEqual({
      order_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      status: 'accepted',
      message: expect.any(String),
      timestamp: expect.any(String),
    });
    expect(Date.parse(accepted.json.timestamp)).not.toBeNaN();
    orderId = accepted.json.order_id;

    const got = await invoke(variant('get-order', { path: `/orders/${orderId}` }));
    expect(got.statusCode).toBe(200);
    expect(got.json).toMatchObject({
      order_id: orderId,
      user_id: 'user123',
      item: 'Burger',
      quantity: 2,
      status: 'accepted',
      reason: null,
      notified_at: null,
    });
  });

  it('publishes OrderPlaced to order-events with every property of the contract', async () => {
    const message = await getMessage(amqp.channel, 'order-events');
    amqp.channel.ack(message);
    const event = OrderPlaced.parse(JSON.parse(message.content.toString()));
    expect(event).toMatchObject({ event_type: 'OrderPlaced', order_id: orderId, user_id: 'user123', item: 'Burger', quantity: 2 });
    expect(message.fields).toMatchObject({ exchange: 'orders', routingKey: 'order.placed' });
    expect(message.properties).toMatchObject({
      contentType: 'application/json',
      deliveryMode: 2,
      messageId: event.event_id,
      type: 'OrderPlaced',
      timestamp: Math.floor(Date.parse(event.timestamp) / 1000),
      appId: 'order-intake',
      correlationId: 'JKJaXmPLvHcESHA=',
    });
  });

  it('carries the client X-Correlation-Id into the response and the message', async () => {
    const accepted = await invoke(variant('post-order', { headers: { 'x-correlation-id': 'checkout-7f3a' } }));
    expect(accepted.statusCode).toBe(202);
    expect(accepted.headers['x-correlation-id']).toBe('checkout-7f3a');
    const message = await getMessage(amqp.channel, 'order-events');
    amqp.channel.ack(message);
    expect(message.properties.correlationId).toBe('checkout-7f3a');
    expect(JSON.parse(message.content.toString()).order_id).toBe(accepted.json.order_id);
  });

  it('refuses post-order-invalid.json with 400 problem+json naming quantity', async () => {
    const refused = await invoke(fixture('post-order-invalid'));
    expect(refused.statusCode).toBe(400);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.json).toMatchObject({ status: 400, title: expect.any(String), detail: expect.stringMatching(/quantity/) });
    expect(refused.json.errors).toEqual([{ field: 'quantity', message: expect.any(String) }]);
  });

  it('lists orders newest first with list-orders.json', async () => {
    const listed = await invoke(fixture('list-orders'));
    expect(listed.statusCode).toBe(200);
    expect(listed.json.orders).toHaveLength(2);
    expect(listed.json.orders[1]?.order_id).toBe(orderId);
    expect(listed.json.next_cursor).toBeNull();
  });

  it('answers get-order.json (an id nobody ordered) with 404 problem+json', async () => {
    const missing = await invoke(fixture('get-order'));
    expect(missing.statusCode).toBe(404);
    expect(missing.json).toMatchObject({ status: 404, instance: '/orders/7b0a3c5e-2f4d-4c8a-9b61-3d2e8f1a6c90' });
  });

  it('answers health.json with 200 when broker and database are up', async () => {
    const health = await invoke(fixture('health'));
    expect(health.statusCode).toBe(200);
    expect(health.json).toEqual({ status: 'ok', checks: { broker: 'up', database: 'up' }, down: [] });
  });

  it('answers a body that is JSON but not an object with 400: the body must be a JSON object', async () => {
    const events = [
      variant('post-order', { body: 'null' }),
      variant('post-order', { body: '"hi"' }),
      // As serverless-offline passes a `null` body on: JSON-parsed to nothing, the client's Content-Length kept.
      { ...variant('post-order', { headers: { 'content-length': '4' } }), body: null } as unknown as APIGatewayProxyEventV2,
    ];
    for (const event of events) {
      const refused = await invoke(event);
      expect(refused.statusCode, refused.body).toBe(400);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.json.errors).toEqual([{ field: 'body', message: 'must be a JSON object' }]);
    }
  });

  it('answers an event without content-type with 415, as app.inject does', async () => {
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const events = [
      without(fixture('post-order'), 'content-type'),
      without({ ...fixture('post-order'), body: undefined }, 'content-type', 'content-length'),
      without(variant('post-order', { path: '/admin/stock/widget/restock', headers: auth, body: '{"quantity":1}' }), 'content-type'),
      without(
        { ...variant('post-order', { path: '/admin/stock/widget/restock', headers: auth }), body: undefined },
        'content-type',
        'content-length',
      ),
    ];
    for (const event of events) {
      const refused = await invoke(event);
      expect(refused.statusCode, refused.body).toBe(415);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.json.errors).toEqual([{ field: 'content-type', message: 'must be application/json' }]);
    }
  });

  it('answers a GET event with a body with 400, and JSON in another charset than UTF-8 with 415', async () => {
    const get = await invoke(variant('list-orders', { body: '{"limit":1}', headers: { 'content-type': 'application/json' } }));
    expect(get.statusCode, get.body).toBe(400);
    expect(get.json.errors).toEqual([{ field: 'body', message: 'must be empty for GET' }]);
    const utf16 = await invoke(variant('post-order', { headers: { 'content-type': 'application/json; charset=utf-16' } }));
    expect(utf16.statusCode, utf16.body).toBe(415);
    expect(utf16.json.errors).toEqual([{ field: 'content-type', message: 'charset must be utf-8' }]);
  });

  it('serves admin stock with the bearer token from ADMIN_TOKEN only', async () => {
    const denied = await invoke(variant('health', { path: '/admin/stock' }));
    expect(denied.statusCode).toBe(401);
    const restock = variant('post-order', {
      path: '/admin/stock/widget/restock',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ quantity: 7 }),
    });
    expect((await invoke(restock)).json).toMatchObject({ item: 'widget', available: 7 });
    const read = await invoke(variant('health', { path: '/admin/stock/widget', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }));
    expect(read.statusCode).toBe(200);
    expect(read.json).toMatchObject({ item: 'widget', available: 7, reserved: 0 });
  });
});
