/**
 * The DLQ reprocessor's admin HTTP API: the fastify app with app.inject(), and the Lambda handler with the
 * fixtures. The fixtures carry `Authorization: Bearer replace-with-your-admin-token`; that must equal
 * ADMIN_TOKEN (set below before the handler module loads), as fixtures/dlq-reprocessor/README.md says.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config';
import { REDRIVE_HEADERS } from '../../shared/dlq';
import { createLogger } from '../../shared/logging';
import { Broker, closeMessaging, declareTopology, dlqName, Publisher, topologyOptions } from '../../shared/messaging';
import { FAILURE_HEADERS } from '../../shared/middleware/poison-messages';
import { createLambdaContext } from '../../shared/runner/context';
import { AMQP_URL, openTestAmqp, queueDepth, type TestAmqp } from '../support/amqp';
import { deleteQueues, uniqueQueue, waitFor } from '../support/runner';

const FIXTURE_TOKEN = 'replace-with-your-admin-token';
const TOKEN = `test-admin-token-${randomUUID()}`;
process.env.ADMIN_TOKEN = FIXTURE_TOKEN;
process.env.LOG_LEVEL = 'silent';

const { buildDlqApp } = await import('../../shared/http/dlq-app');

const queue = uniqueQueue('dlq-http');
const dlq = dlqName(queue);
const cfg = loadConfig({ AMQP_URL, ADMIN_TOKEN: TOKEN, DLQ_REDRIVE_RATE: '100' });
const silent = createLogger({ level: 'silent' });
const auth = { authorization: `Bearer ${TOKEN}` };

let amqp: TestAmqp;
let broker: Broker;
let publisher: Publisher;
let app: FastifyInstance;

async function seed(ids: readonly string[], errorClass: 'permanent' | 'transient' = 'permanent'): Promise<void> {
  const channel = await amqp.connection.createConfirmChannel();
  for (const id of ids) {
    channel.sendToQueue(dlq, Buffer.from(JSON.stringify({ event_id: id, user_id: 'bob' })), {
      messageId: id,
      persistent: true,
      contentType: 'application/json',
      headers: {
        [FAILURE_HEADERS.errorClass]: errorClass,
        [FAILURE_HEADERS.errorName]: 'SchemaViolationError',
        [FAILURE_HEADERS.originalQueue]: queue,
      },
    });
  }
  await channel.waitForConfirms();
  await channel.close();
}

beforeAll(async () => {
  amqp = await openTestAmqp();
  broker = new Broker({ urls: [AMQP_URL], connectionName: 'dlq-http-test' });
  await broker.onConnect((connection) =>
    declareTopology(connection, topologyOptions(cfg, [{ name: queue, bindings: [] }])).then(() => undefined),
  );
  await broker.connect();
  publisher = new Publisher(broker);
  app = buildDlqApp({ broker, publisher, config: cfg, logger: silent, extraQueues: [dlq], idleTimeoutMs: 500 });
  await app.ready();
});

afterAll(async () => {
  await app.close();
  await publisher.close();
  await broker.close();
  await deleteQueues(amqp, [queue]);
  await amqp.close();
});

describe('admin token', () => {
  it('answers 401 problem+json without a token, with a wrong one, and when ADMIN_TOKEN is unset', async () => {
    for (const headers of [{}, { authorization: 'Bearer not-the-token-at-all' }, { authorization: TOKEN }]) {
      const response = await app.inject({ method: 'GET', url: '/dlq', headers });
      expect(response.statusCode).toBe(401);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(response.json()).toMatchObject({ status: 401, title: 'Unauthorized' });
    }
    const post = await app.inject({ method: 'POST', url: '/dlq/redrive', payload: { queue: dlq, dry_run: true } });
    expect(post.statusCode).toBe(401);

    const disabled = buildDlqApp({ broker, publisher, config: loadConfig({ AMQP_URL }), logger: silent });
    const response = await disabled.inject({ method: 'GET', url: '/dlq', headers: auth });
    expect(response.statusCode).toBe(401);
    expect(response.json().detail).toMatch(/ADMIN_TOKEN is not set/);
    await disabled.close();
  });
});

describe('GET /dlq', () => {
  it('lists every DLQ with its depth and a sample, and the parking lot', async () => {
    const ids = [1, 2, 3].map((i) => `http-list-${i}-${randomUUID()}`);
    await seed(ids);
    const response = await app.inject({ method: 'GET', url: `/dlq?sample=2`, headers: auth });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body.dlqs.map((d: { queue: string }) => d.queue)).toEqual([
      'order-events-dlq',
      'inventory-events-dlq',
      'order-status-events-dlq',
      dlq,
    ]);
    const mine = body.dlqs.find((d: { queue: string }) => d.queue === dlq);
    expect(mine).toMatchObject({ status: 'ok', depth: 3, source: queue });
    expect(mine.sample.map((s: { messageId: string }) => s.messageId)).toEqual(ids.slice(0, 2));
    expect(mine.sample[0]).toMatchObject({ errorClass: 'permanent', errorName: 'SchemaViolationError', originalQueue: queue });
    expect(mine.sample[0].bodyPreview).not.toContain('bob');
    expect(body.parkingLot).toMatchObject({ queue: 'parking-lot' });

    const one = await app.inject({ method: 'GET', url: `/dlq?queue=${dlq}&sample=0`, headers: auth });
    expect(one.json().dlqs).toEqual([expect.objectContaining({ queue: dlq, depth: 3, sample: [] })]);
  });

  it('answers 400 naming the query parameter', async () => {
    const response = await app.inject({ method: 'GET', url: '/dlq?sample=lots', headers: auth });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json().errors).toEqual([expect.objectContaining({ field: 'sample' })]);
    const queueParam = await app.inject({ method: 'GET', url: '/dlq?queue=order-events', headers: auth });
    expect(queueParam.json().errors).toEqual([expect.objectContaining({ field: 'queue' })]);
  });
});

describe('POST /dlq/redrive', () => {
  it('answers 400 problem+json naming each bad field', async () => {
    const cases: Array<[unknown, string[]]> = [
      [{}, ['queue']],
      [{ queue: 'order-events' }, ['queue']],
      [{ queue: dlq, limit: 0, rate: -1 }, ['limit', 'rate']],
      [{ queue: dlq, error_class: 'flaky' }, ['error_class']],
      [{ queue: dlq, dry_run: 'yes' }, ['dry_run']],
      [{ queue: dlq, colour: 'blue' }, ['colour']],
      [{ queue: `missing-${randomUUID()}-dlq` }, ['queue']],
    ];
    for (const [payload, fields] of cases) {
      const response = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: payload as object });
      expect(response.statusCode, JSON.stringify(payload)).toBe(400);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.json().errors.map((e: { field: string }) => e.field)).toEqual(fields);
    }
    const notJson = await app.inject({
      method: 'POST',
      url: '/dlq/redrive',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"queue":',
    });
    expect(notJson.statusCode).toBe(400);
  });

  it('reports a dry run without changing anything, then redrives for real', async () => {
    await waitFor(async () => (await queueDepth(amqp.connection, dlq)) === 3, 'the listed messages back in the DLQ');
    const dry = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq, dry_run: true, limit: 2 } });
    expect(dry.statusCode).toBe(200);
    expect(dry.json()).toMatchObject({ dlq, dryRun: true, parked: [], skipped: [], failed: [], stopped: 'limit', depthAfter: 3 });
    expect(dry.json().moved).toHaveLength(2);
    expect(await queueDepth(amqp.connection, queue)).toBe(0);

    const real = await app.inject({
      method: 'POST',
      url: '/dlq/redrive',
      headers: auth,
      payload: { queue: dlq, error_class: ['permanent'], rate: 50 },
    });
    expect(real.statusCode).toBe(200);
    expect(real.json()).toMatchObject({ dryRun: false, stopped: 'done', depthAfter: 0, targets: { [queue]: 3 } });
    const moved = await amqp.channel.get(queue, { noAck: true });
    if (moved === false) throw new Error(`no redriven message in ${queue}`);
    expect(moved.properties.headers?.[REDRIVE_HEADERS.count]).toBe(1);
    await amqp.channel.purgeQueue(queue);
  });

  it('answers 409 while another redrive holds the DLQ', async () => {
    await seed([1, 2, 3, 4].map((i) => `http-busy-${i}-${randomUUID()}`));
    const slow = app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq, rate: 4 } });
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) > 0, 'the first redrive to start');
    const busy = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq } });
    expect(busy.statusCode).toBe(409);
    expect(busy.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(busy.json().detail).toMatch(/Another inspection or redrive/);
    expect((await slow).json().moved).toHaveLength(4);
    await amqp.channel.purgeQueue(queue);
  });
});

describe('the Lambda handler with the fixtures', () => {
  const fixture = (name: string) => JSON.parse(readFileSync(`fixtures/dlq-reprocessor/${name}`, 'utf8')) as APIGatewayProxyEventV2;
  const context = createLambdaContext({ functionName: 'rabbit-functions-local-dlqReprocessor', timeoutSeconds: 60, memorySize: 512 });

  afterAll(async () => {
    const module = await import('../../handlers/dlq-reprocessor');
    await module.app.close();
    await closeMessaging();
  });

  it('answers list.json and redrive-dry-run.json with 200, and 401 once the token is wrong', async () => {
    const { handler } = await import('../../handlers/dlq-reprocessor');
    const invoke = (event: APIGatewayProxyEventV2) => handler(event, context) as Promise<APIGatewayProxyStructuredResultV2>;

    const list = await invoke(fixture('list.json'));
    expect(list.statusCode).toBe(200);
    expect(JSON.parse(list.body!).dlqs.map((d: { queue: string }) => d.queue)).toContain('order-events-dlq');

    const before = await queueDepth(amqp.connection, 'order-events-dlq');
    const dry = await invoke(fixture('redrive-dry-run.json'));
    expect(dry.statusCode).toBe(200);
    expect(JSON.parse(dry.body!)).toMatchObject({ dlq: 'order-events-dlq', dryRun: true });
    expect(await queueDepth(amqp.connection, 'order-events-dlq')).toBe(before);

    const wrong = fixture('list.json');
    wrong.headers.authorization = `Bearer ${FIXTURE_TOKEN}-but-wrong`;
    expect((await invoke(wrong)).statusCode).toBe(401);
  });
});
