/**
 * The queue-function middleware, fed by the real runner from the real broker, writing to real databases.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { GetMessage } from 'amqplib';
import { FAILURE_HEADERS } from 'middy-rabbitmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/logging';
import { declareTopology, dlqName } from '../../shared/messaging';
import { type OpenStoreOptions, openStore, type Store } from '../../shared/store';
import { getMessage, openTestAmqp, purgeQueues, queueDepth, type TestAmqp } from '../support/amqp';
import { type Backend, backends } from '../support/databases';
import { reservationFunction } from '../support/reservation-function';
import { deleteQueues, LogCapture, testRunner, trigger, uniqueQueue, waitFor } from '../support/runner';

const ROOT = resolve(import.meta.dirname, '../..');
const RETRY_ENV = { RETRY_DELAYS_MS: '200,400' };

function orderPlaced(overrides: Record<string, unknown> = {}) {
  return {
    event_id: randomUUID(),
    event_type: 'OrderPlaced',
    order_id: randomUUID(),
    timestamp: new Date().toISOString(),
    user_id: 'alice@example.com',
    item: 'widget',
    quantity: 2,
    ...overrides,
  };
}

describe.each(backends())('queue-function middleware on $name', (backend: Backend) => {
  let amqp: TestAmqp;
  let dbOptions: OpenStoreOptions;
  let store: Store;
  const queues: string[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  const publish = (queue: string, body: unknown, options: Record<string, unknown> = {}) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    // As the contract has it: messageId = event_id, type = event_type.
    const { event_id: messageId, event_type: type } = (typeof body === 'object' && body ? body : {}) as {
      event_id?: string;
      event_type?: string;
    };
    amqp.channel.sendToQueue(queue, Buffer.from(text), { persistent: true, contentType: 'application/json', messageId, type, ...options });
  };
  /** Starts a runner (a "worker") feeding the reservation function on `queue`, with its own store connection. */
  const startWorker = async (queue: string, logs = new LogCapture(), ownStore?: Store) => {
    const workerStore = ownStore ?? store;
    const handler = reservationFunction({ store: workerStore, logger: createLogger({ level: 'debug', destination: logs }) });
    const { runner } = testRunner(
      [trigger(queue, { functionKey: 'reserve', batchSize: 10, maximumBatchingWindow: 0.1 })],
      { reserve: handler },
      { env: RETRY_ENV, logs },
    );
    cleanups.push(() => runner.stop());
    await runner.start();
    return { runner, logs };
  };
  /** A work queue of the test's own, declared as the runner would, so messages can wait in it before a worker starts. */
  const newQueue = async () => {
    const queue = uniqueQueue('mw');
    queues.push(queue);
    await declareTopology(amqp.connection, { deliveryLimit: 10, retryDelaysMs: [200, 400], extraQueues: [{ name: queue, bindings: [] }] });
    return queue;
  };
  const records = (logs: LogCapture) => logs.lines.filter((line) => line.message === 'record handled');
  const drain = async (queue: string): Promise<GetMessage[]> => {
    const messages: GetMessage[] = [];
    for (;;) {
      const message = await amqp.channel.get(queue, { noAck: true });
      if (!message) return messages;
      messages.push(message);
    }
  };

  beforeAll(async () => {
    await backend.setup();
    dbOptions = await backend.fresh();
    store = await openStore(dbOptions);
    amqp = await openTestAmqp();
    await purgeQueues(amqp.connection, ['inventory-events', 'order-status-events']);
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await deleteQueues(amqp, queues.splice(0));
    await purgeQueues(amqp.connection, ['inventory-events', 'order-status-events']);
  });
  afterAll(async () => {
    await store.close();
    await amqp.close();
    await backend.teardown();
  });

  it('one effect per event: copies under other messageIds, or with another type, are contract violations', async () => {
    const queue = await newQueue();
    const event = orderPlaced({ item: 'gizmo', quantity: 1 });
    await store.stock.upsert({ gizmo: 100 });
    // The attack: five copies of one event under five messageIds reserved stock five times.
    publish(queue, event);
    for (let i = 0; i < 4; i++) publish(queue, event, { messageId: randomUUID() });
    publish(queue, event, { type: 'InventoryReserved' });
    publish(queue, event, { type: undefined });
    const { logs } = await startWorker(queue);
    await waitFor(() => records(logs).length === 7, 'seven records handled');
    expect((await store.stock.get('gizmo'))?.available).toBe(99);
    const outcomes = records(logs).map((line) => [line.outcome, line.error ?? null]);
    expect(outcomes.filter(([outcome]) => outcome === 'processed')).toHaveLength(1);
    const violations = outcomes.filter(([outcome]) => outcome === 'dead-lettered');
    expect(violations).toHaveLength(6);
    for (const [, error] of violations)
      expect(String(error)).toMatch(/^ContractViolationError: (messageId .* is not the body's id|type property .* is not the body's type)/);
    const dead = await drain(dlqName(queue));
    expect(dead.map((m) => m.properties.headers![FAILURE_HEADERS.errorName])).toEqual(Array(6).fill('ContractViolationError'));
  });

  it('processes the good records of a batch and dead-letters the bad ones with their reasons', async () => {
    await store.stock.upsert({ widget: 100 });
    const queue = await newQueue();
    const good = [orderPlaced(), orderPlaced({ quantity: 3 })];
    const noQuantity = orderPlaced({ quantity: undefined });
    const unknownType = orderPlaced({ event_type: 'OrderShipped' });
    const noId = orderPlaced();
    // Published before the worker starts, so they arrive as one batch.
    publish(queue, good[0]);
    publish(queue, '{"event_id": "oops", not json', { messageId: 'malformed-1' });
    publish(queue, noQuantity);
    publish(queue, unknownType);
    publish(queue, noId, { messageId: undefined });
    const forbidden = orderPlaced({ item: 'forbidden' });
    publish(queue, forbidden);
    publish(queue, good[1]);
    const { logs } = await startWorker(queue);
    await waitFor(() => logs.lines.some((l) => l.message === 'invocation finished'), 'the invocation to finish');

    expect((await store.stock.get('widget'))?.available).toBe(95);
    const invocations = logs.lines.filter((l) => l.message === 'invocation finished');
    expect(invocations).toHaveLength(1);
    expect(invocations[0]!.report).toEqual({ records: 7, processed: 2, duplicates: 0, retried: 0, deadLettered: 5 });

    const dead = await drain(dlqName(queue));
    const byName = Object.fromEntries(dead.map((m) => [String(m.properties.headers?.[FAILURE_HEADERS.errorName]), m]));
    expect(Object.keys(byName).sort()).toEqual(
      ['ForbiddenItemError', 'MalformedMessageError', 'MissingMessageIdError', 'SchemaViolationError', 'UnknownEventTypeError'].sort(),
    );
    expect(String(byName.SchemaViolationError!.properties.headers?.[FAILURE_HEADERS.errorMessage])).toMatch(/quantity/);
    expect(String(byName.UnknownEventTypeError!.properties.headers?.[FAILURE_HEADERS.errorMessage])).toMatch(/OrderShipped/);
    for (const message of dead) {
      const headers = message.properties.headers!;
      expect(headers[FAILURE_HEADERS.errorClass]).toBe('permanent');
      expect(headers[FAILURE_HEADERS.originalQueue]).toBe(queue);
      expect(headers[FAILURE_HEADERS.attempts]).toBe(1);
      expect(Date.parse(String(headers[FAILURE_HEADERS.firstFailedAt]))).not.toBeNaN();
      expect(message.properties.contentType).toBe('application/json');
    }
    // Body and properties are kept as published.
    expect(byName.MalformedMessageError!.content.toString()).toBe('{"event_id": "oops", not json');
    expect(byName.MalformedMessageError!.properties.messageId).toBe('malformed-1');
    expect(JSON.parse(byName.SchemaViolationError!.content.toString())).toEqual(noQuantity);
    // The batch's ids are claimed in one statement before its first record runs; the dead-lettered records'
    // claims were given back (a redrive of them is processed, not dropped as a duplicate); the good ones kept.
    const claimFree = (id: string) => store.inbox.claim('test-reservation', id);
    for (const id of ['malformed-1', noQuantity.event_id, unknownType.event_id, forbidden.event_id]) expect(await claimFree(id)).toBe(true);
    for (const order of good) expect(await claimFree(order.event_id)).toBe(false);
  });

  it('costs a message id the database refuses its own record only, not the batch claimed together with it', async () => {
    await store.stock.upsert({ sprocket: 10 });
    const queue = await newQueue();
    const good = [orderPlaced({ item: 'sprocket', quantity: 1 }), orderPlaced({ item: 'sprocket', quantity: 2 })] as const;
    // PostgreSQL's text cannot hold a NUL character: claiming this id fails, alone or with the batch's others.
    publish(queue, good[0]);
    publish(queue, orderPlaced({ item: 'sprocket' }), { messageId: 'nul\u0000id' });
    publish(queue, good[1]);
    const { logs } = await startWorker(queue);
    await waitFor(
      () => records(logs).filter((r) => r.outcome === 'processed').length === 2,
      `both good records: ${JSON.stringify(records(logs))}`,
    );
    expect((await store.stock.get('sprocket'))?.available).toBe(10 - good[0].quantity - good[1].quantity);
    expect(records(logs).filter((r) => r.outcome !== 'processed')).toHaveLength(1);
  });

  it('retries a transient failure with delay until it succeeds', async () => {
    await store.stock.upsert({ flaky: 10 });
    const queue = await newQueue();
    const { logs } = await startWorker(queue);
    const order = orderPlaced({ item: 'flaky', quantity: 4 });
    publish(queue, order);
    await waitFor(() => records(logs).some((r) => r.outcome === 'processed'), 'the retried record to succeed');
    const outcomes = records(logs).map((r) => [r.outcome, r.attempt]);
    expect(outcomes).toEqual([
      ['retried', 1],
      ['processed', 2],
    ]);
    expect(records(logs)[0]).toMatchObject({ delayMs: 200 });
    expect((await store.stock.get('flaky'))?.available).toBe(6);
    expect(await queueDepth(amqp.connection, dlqName(queue))).toBe(0);
  });

  it('dead-letters a record that keeps failing after the configured attempts, with the attempt count', async () => {
    const queue = await newQueue();
    const { logs } = await startWorker(queue);
    const order = orderPlaced({ item: 'always-broken' });
    publish(queue, order, { correlationId: 'corr-broken' });
    await waitFor(() => records(logs).some((r) => r.outcome === 'dead-lettered'), 'the record to be dead-lettered');
    expect(records(logs).map((r) => [r.outcome, r.attempt])).toEqual([
      ['retried', 1],
      ['retried', 2],
      ['dead-lettered', 3],
    ]);
    const dead = await getMessage(amqp.channel, dlqName(queue));
    const headers = dead.properties.headers!;
    expect(headers[FAILURE_HEADERS.attempts]).toBe(3);
    expect(headers[FAILURE_HEADERS.errorClass]).toBe('transient');
    expect(headers[FAILURE_HEADERS.errorMessage]).toBe('stock service down');
    expect(headers[FAILURE_HEADERS.originalQueue]).toBe(queue);
    expect(dead.properties.messageId).toBe(order.event_id);
    expect(dead.properties.correlationId).toBe('corr-broken');
    expect(JSON.parse(dead.content.toString())).toEqual(order);
  });

  it('changes stock once for a message delivered three times, also to two workers at once', async () => {
    await store.stock.upsert({ gadget: 50 });
    const queue = await newQueue();
    const order = orderPlaced({ item: 'gadget', quantity: 5 });
    for (let i = 0; i < 3; i++) publish(queue, order);
    const otherStore = await openStore(dbOptions); // the second worker has its own connection
    cleanups.push(() => otherStore.close());
    const [a, b] = await Promise.all([startWorker(queue), startWorker(queue, new LogCapture(), otherStore)]);
    await waitFor(() => records(a.logs).length + records(b.logs).length === 3, 'three deliveries handled');
    // A record's line is written inside its batch's transaction, before the commit (CI once read the stock at 50
    // here): stopping both workers waits for every batch to commit and publish what it committed.
    await Promise.all([a.runner.stop(), b.runner.stop()]);
    const outcomes = [...records(a.logs), ...records(b.logs)].map((r) => r.outcome).sort();
    expect(outcomes).toEqual(['duplicate', 'duplicate', 'processed']);
    expect((await store.stock.get('gadget'))?.available).toBe(45);
    // Exactly one InventoryReserved went out.
    const ours = (messages: GetMessage[]) => messages.filter((m) => JSON.parse(m.content.toString()).order_id === order.order_id);
    const emitted = ours([await getMessage(amqp.channel, 'inventory-events')]);
    emitted.push(...ours(await drain('inventory-events')));
    expect(emitted).toHaveLength(1);
  });

  it('leaves exactly one effect when the worker is killed between commit and ack', async () => {
    await store.stock.upsert({ crashable: 20 });
    const queue = await newQueue();
    const order = orderPlaced({ item: 'crashable', quantity: 7 });
    // One process (node --import tsx), so the SIGKILL the worker sends itself is what the test sees.
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/support/crash-worker.ts')], {
      cwd: ROOT,
      env: { ...process.env, ...backend.env(dbOptions), QUEUE: queue, LOG_LEVEL: 'warn', ...RETRY_ENV },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const died = new Promise<string | null>((done) => child.once('exit', (_code, signal) => done(signal)));
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await waitFor(() => out.includes('ready'), 'the crash worker to start', 30_000);
    publish(queue, order);
    expect(await died).toBe('SIGKILL');
    expect((await store.stock.get('crashable'))?.available).toBe(13); // committed before the crash
    const { logs } = await startWorker(queue); // the unacked message comes back to the next worker
    await waitFor(() => records(logs).length === 1, 'the redelivered message');
    expect(records(logs)[0]!.outcome).toBe('duplicate');
    expect((await store.stock.get('crashable'))?.available).toBe(13);
    expect(await queueDepth(amqp.connection, queue)).toBe(0);
  });

  it('writes JSON log lines that carry the correlation id end to end and no secret or personal data', async () => {
    await store.stock.upsert({ widget: 100 });
    const queue = await newQueue();
    const { logs } = await startWorker(queue);
    const order = orderPlaced();
    publish(queue, order, { correlationId: 'corr-e2e-42' });
    await waitFor(() => records(logs).length === 1, 'the record');
    const recordLines = logs.lines.filter((l) => l.messageId === order.event_id);
    expect(recordLines.length).toBeGreaterThanOrEqual(2); // the handler's own line and the outcome line
    for (const line of recordLines) {
      expect(line).toMatchObject({ correlationId: 'corr-e2e-42', queue, attempt: 1, function: 'test-reservation' });
      expect(typeof line.requestId).toBe('string');
      expect(typeof line.time).toBe('string');
    }
    expect(records(logs)[0]).toMatchObject({ outcome: 'processed', durationMs: expect.any(Number) });
    // The emitted event carries the same correlation id to the next hop.
    const next = await getMessage(amqp.channel, 'inventory-events');
    expect(next.properties.correlationId).toBe('corr-e2e-42');
    expect(next.properties.type).toBe('InventoryReserved');
    expect(next.properties.appId).toBe('test-reservation');
    const text = logs.lines.map((l) => JSON.stringify(l)).join('\n');
    expect(text).not.toContain('alice@example.com');
    expect(text).not.toMatch(/:guest@/);
    expect(logs.lines.find((l) => l.message === 'reserving')).toMatchObject({ user_id: '[redacted]', item: 'widget' });
  });
});
