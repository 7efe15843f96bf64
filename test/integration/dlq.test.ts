/**
 * The DLQ reprocessor against the real broker. Each test uses its own work queue (declared through
 * declareTopology's extraQueues, so its DLQ exists); the shared parking lot is only touched for this test's
 * own message ids.
 */
import { randomUUID } from 'node:crypto';
import type { Channel, ConfirmChannel, Message, Options } from 'amqplib';
import { FAILURE_HEADERS } from 'middy-rabbitmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config';
import { DlqBusyError, DlqReprocessor, lockQueueName, NotADlqError, REDRIVE_HEADERS } from '../../shared/dlq';
import { createLogger } from '../../shared/logging';
import { Broker, declareTopology, dlqName, PARKING_LOT_QUEUE, Publisher, topologyOptions, type WorkQueue } from '../../shared/messaging';
import { AMQP_URL, openTestAmqp, queueDepth, type TestAmqp } from '../support/amqp';
import { brokerControl } from '../support/broker-control';
import { deleteQueues, uniqueQueue, waitFor } from '../support/runner';

const cfg = loadConfig({ AMQP_URL, DLQ_MAX_REDRIVES: '3', DLQ_REDRIVE_RATE: '200', DLQ_PREVIEW_CHARS: '200' });
const silent = createLogger({ level: 'silent' });

let amqp: TestAmqp;
let seeder: ConfirmChannel;
const created: string[] = [];
const brokers: Broker[] = [];

/** A broker that declares the contract topology plus `queues` on connect, as the runner's would. */
async function testBroker(queues: readonly string[], connectionName = 'dlq-test'): Promise<{ broker: Broker; publisher: Publisher }> {
  const extra: WorkQueue[] = queues.map((name) => ({ name, bindings: [] }));
  const broker = new Broker({ urls: [AMQP_URL], connectionName });
  await broker.onConnect((connection) => declareTopology(connection, topologyOptions(cfg, extra)).then(() => undefined));
  await broker.connect();
  brokers.push(broker);
  return { broker, publisher: new Publisher(broker) };
}

async function setup(options: { connectionName?: string; maxRedrives?: number } = {}) {
  const queue = uniqueQueue('dlq-test');
  created.push(queue);
  const { broker, publisher } = await testBroker([queue], options.connectionName);
  const config = options.maxRedrives ? { ...cfg, dlqMaxRedrives: options.maxRedrives } : cfg;
  const reprocessor = new DlqReprocessor({ broker, publisher, config, extraQueues: [dlqName(queue)], idleTimeoutMs: 500, logger: silent });
  return { queue, dlq: dlqName(queue), broker, publisher, reprocessor };
}

const body = (id: string) =>
  Buffer.from(
    JSON.stringify({
      event_id: id,
      event_type: 'OrderPlaced',
      order_id: randomUUID(),
      user_id: 'alice@example.com',
      item: 'widget',
      quantity: 1,
    }),
  );

interface Seed {
  errorClass?: 'permanent' | 'transient';
  errorName?: string;
  redriveCount?: number;
  originalQueue?: string;
  headers?: Record<string, unknown>;
}

/** Puts a message into `dlq` as the poison-message middleware would have (x-error-* headers). */
async function deadLetter(dlq: string, queue: string, id: string, seed: Seed = {}): Promise<void> {
  const headers: Record<string, unknown> = {
    [FAILURE_HEADERS.errorClass]: seed.errorClass ?? 'permanent',
    [FAILURE_HEADERS.errorName]: seed.errorName ?? (seed.errorClass === 'transient' ? 'TransientError' : 'SchemaViolationError'),
    [FAILURE_HEADERS.errorMessage]: `failure of ${id}`,
    [FAILURE_HEADERS.firstFailedAt]: '2025-03-10T12:00:00.000Z',
    [FAILURE_HEADERS.lastFailedAt]: '2025-03-10T12:00:05.000Z',
    [FAILURE_HEADERS.attempts]: seed.errorClass === 'transient' ? 4 : 1,
    [FAILURE_HEADERS.originalQueue]: seed.originalQueue ?? queue,
    'x-attempt': 4,
    ...(seed.redriveCount !== undefined ? { [REDRIVE_HEADERS.count]: seed.redriveCount } : {}),
    ...seed.headers,
  };
  const options: Options.Publish = {
    messageId: id,
    type: 'OrderPlaced',
    correlationId: `corr-${id}`,
    appId: 'order-intake',
    contentType: 'application/json',
    persistent: true,
    timestamp: 1_741_608_000,
    headers,
  };
  seeder.sendToQueue(dlq, body(id), options);
  await seeder.waitForConfirms();
}

async function seedMany(dlq: string, queue: string, ids: readonly string[], seed: (id: string, index: number) => Seed = () => ({})) {
  for (const [index, id] of ids.entries())
    seeder.sendToQueue(dlq, body(id), { messageId: id, persistent: true, headers: headersOf(queue, seed(id, index)) });
  await seeder.waitForConfirms();
}

const headersOf = (queue: string, seed: Seed) => ({
  [FAILURE_HEADERS.errorClass]: seed.errorClass ?? 'permanent',
  [FAILURE_HEADERS.errorName]: seed.errorName ?? 'SchemaViolationError',
  [FAILURE_HEADERS.lastFailedAt]: '2025-03-10T12:00:05.000Z',
  [FAILURE_HEADERS.originalQueue]: seed.originalQueue ?? queue,
  ...(seed.redriveCount !== undefined ? { [REDRIVE_HEADERS.count]: seed.redriveCount } : {}),
});

/** Publishes to the work queue and rejects it there, so the broker dead-letters it (x-death, no x-error-*). */
async function brokerDeadLetter(queue: string, id: string, channel: Channel): Promise<void> {
  seeder.sendToQueue(queue, body(id), { messageId: id, persistent: true });
  await seeder.waitForConfirms();
  const message = await getOne(channel, queue);
  channel.reject(message, false);
  await waitFor(async () => (await queueDepth(amqp.connection, dlqName(queue))) > 0, `${id} in ${dlqName(queue)}`);
}

async function getOne(channel: Channel, queue: string): Promise<Message> {
  let message: Message | false = false;
  await waitFor(async () => {
    message = await channel.get(queue, { noAck: false });
    return message !== false;
  }, `a message in ${queue}`);
  return message as unknown as Message;
}

/** Takes every message out of `queue`, in order. */
async function drain(queue: string): Promise<Message[]> {
  const channel = await amqp.connection.createChannel();
  const out: Message[] = [];
  try {
    for (;;) {
      const message = await channel.get(queue, { noAck: false });
      if (!message) break;
      out.push(message);
      channel.ack(message);
    }
  } finally {
    await channel.close();
  }
  return out;
}

const ids = (messages: readonly Message[]) => messages.map((message) => String(message.properties.messageId));

/** Takes this test's messages out of the shared parking lot; hands the others back untouched. */
async function takeFromParkingLot(wanted: ReadonlySet<string>): Promise<Message[]> {
  const channel = await amqp.connection.createChannel();
  const depth = (await channel.checkQueue(PARKING_LOT_QUEUE)).messageCount;
  const taken: Message[] = [];
  if (depth > 0) {
    await channel.prefetch(depth);
    let seen = 0;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1_500);
      void channel.consume(PARKING_LOT_QUEUE, (message) => {
        if (!message) return;
        seen++;
        if (wanted.has(String(message.properties.messageId))) {
          taken.push(message);
          channel.ack(message);
        }
        if (seen >= depth) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }
  await channel.close();
  return taken;
}

/** Forces this test's broker connection closed, as a broker restart or network cut would (rabbitmqctl or the management API). */
async function cutConnection(connectionName: string): Promise<void> {
  const closed = await (await brokerControl()).closeConnections({ clientName: connectionName }, 'dlq test: simulated broker cut');
  expect(closed, `connections named ${connectionName} closed`).toBeGreaterThan(0);
}

beforeAll(async () => {
  amqp = await openTestAmqp();
  seeder = await amqp.connection.createConfirmChannel();
  seeder.on('error', () => undefined);
});

afterEach(async () => {
  for (const broker of brokers.splice(0)) await broker.close();
});

afterAll(async () => {
  await deleteQueues(amqp, created);
  await amqp.close();
});

describe('DLQ inspection', () => {
  it('shows depth and the first messages with their error reasons, and leaves the DLQ as it was, in order', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const all = Array.from({ length: 60 }, (_, i) => `inspect-${i}-${randomUUID()}`);
    await deadLetter(dlq, queue, all[0]!, { errorClass: 'transient', errorName: 'StockServiceDown' });
    await seedMany(dlq, queue, all.slice(1));

    const listing = await reprocessor.list({ queues: [dlq], sampleSize: 40 });
    const shown = listing.dlqs[0]!;
    expect(shown).toMatchObject({ queue: dlq, source: queue, status: 'ok', depth: 60 });
    expect(shown.sample.map((s) => s.messageId)).toEqual(all.slice(0, 40));
    expect(shown.sample[0]).toMatchObject({
      position: 1,
      messageId: all[0],
      type: 'OrderPlaced',
      correlationId: `corr-${all[0]}`,
      appId: 'order-intake',
      timestamp: '2025-03-10T12:00:00.000Z',
      errorClass: 'transient',
      errorName: 'StockServiceDown',
      errorMessage: `failure of ${all[0]}`,
      attempts: 4,
      originalQueue: queue,
      firstFailedAt: '2025-03-10T12:00:00.000Z',
      redriveCount: 0,
      death: null,
      redriveTarget: queue,
      wouldPark: false,
    });
    // Personal fields are masked in the preview.
    expect(shown.sample[0]!.bodyPreview).toContain('"user_id":"[redacted]"');
    expect(shown.sample[0]!.bodyPreview).not.toContain('alice');
    expect(listing.parkingLot.queue).toBe(PARKING_LOT_QUEUE);

    // A second look shows the same first messages: nothing moved to the back.
    const again = await reprocessor.inspect(dlq, 3);
    expect(again.sample.map((s) => s.messageId)).toEqual(all.slice(0, 3));

    const left = await drain(dlq);
    expect(ids(left)).toEqual(all);
  });

  it('names a message the broker dead-lettered by its x-death', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const id = `broker-${randomUUID()}`;
    await brokerDeadLetter(queue, id, amqp.channel);
    const [summary] = (await reprocessor.inspect(dlq)).sample;
    expect(summary).toMatchObject({ messageId: id, errorClass: 'broker', errorName: null, redriveTarget: queue });
    expect(summary!.death).toMatchObject({ reason: 'rejected', queue, count: 1 });
    expect(summary!.death!.time).toMatch(/^\d{4}-\d\d-\d\dT/);
    await drain(dlq);
  });

  it('lists every work queue DLQ, shows a missing one as missing, and refuses a queue that is not a DLQ', async () => {
    const { dlq, reprocessor } = await setup();
    const listing = await reprocessor.list({ sampleSize: 0 });
    expect(listing.dlqs.map((d) => d.queue)).toEqual(['order-events-dlq', 'inventory-events-dlq', 'order-status-events-dlq', dlq]);
    const missing = await reprocessor.list({ queues: [`nope-${randomUUID()}-dlq`] });
    expect(missing.dlqs[0]).toMatchObject({ status: 'missing', depth: null });
    await expect(reprocessor.inspect('order-events')).rejects.toBeInstanceOf(NotADlqError);
    await expect(reprocessor.redrive({ queue: `nope-${randomUUID()}-dlq` })).rejects.toBeInstanceOf(NotADlqError);
  });
});

describe('DLQ redrive', () => {
  it('moves messages back to their original queue, confirmed, with the redrive count and fresh attempts', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const all = [1, 2, 3].map((i) => `move-${i}-${randomUUID()}`);
    for (const id of all)
      await deadLetter(dlq, queue, id, { errorClass: 'transient', errorName: 'TransientError', headers: { 'retry-delay-ms': 1000 } });

    const report = await reprocessor.redrive({ queue: dlq });
    expect(report).toMatchObject({
      dlq,
      dryRun: false,
      moved: all,
      parked: [],
      skipped: [],
      failed: [],
      examined: 3,
      depthBefore: 3,
      depthAfter: 0,
      stopped: 'done',
    });
    expect(report.targets).toEqual({ [queue]: 3 });

    const moved = await drain(queue);
    expect(ids(moved)).toEqual(all);
    const first = moved[0]!;
    expect(first.content.equals(body(all[0]!)) || JSON.parse(first.content.toString()).event_id === all[0]).toBe(true);
    expect(first.properties).toMatchObject({
      messageId: all[0],
      type: 'OrderPlaced',
      correlationId: `corr-${all[0]}`,
      appId: 'order-intake',
      contentType: 'application/json',
      deliveryMode: 2,
      timestamp: 1_741_608_000,
    });
    const headers = first.properties.headers!;
    expect(headers[REDRIVE_HEADERS.count]).toBe(1);
    expect(headers[REDRIVE_HEADERS.redrivenFrom]).toBe(dlq);
    expect(headers['x-attempt']).toBeUndefined();
    expect(headers['retry-delay-ms']).toBeUndefined();
    expect(headers[FAILURE_HEADERS.errorClass]).toBeUndefined();
    expect(headers[REDRIVE_HEADERS.lastErrorClass]).toBe('transient');
    expect(headers[REDRIVE_HEADERS.lastErrorName]).toBe('TransientError');
    expect(headers[FAILURE_HEADERS.firstFailedAt]).toBe('2025-03-10T12:00:00.000Z');
    expect(headers[FAILURE_HEADERS.originalQueue]).toBe(queue);
    expect(await queueDepth(amqp.connection, dlq)).toBe(0);
  });

  it('respects the limit and the error-class filter; skipped messages stay in the DLQ in their order', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const all = Array.from({ length: 10 }, (_, i) => `filter-${i}-${randomUUID()}`);
    // Even positions permanent, odd transient.
    await seedMany(dlq, queue, all, (_, i) => ({
      errorClass: i % 2 === 0 ? 'permanent' : 'transient',
      errorName: i % 2 === 0 ? 'SchemaViolationError' : 'TransientError',
    }));

    // An inspection first, so the redrive reads messages the broker has handed back once already.
    expect((await reprocessor.inspect(dlq, 2)).sample.map((s) => s.messageId)).toEqual(all.slice(0, 2));
    const report = await reprocessor.redrive({ queue: dlq, errorClasses: ['transient'], limit: 3 });
    expect(report.moved).toEqual([all[1], all[3], all[5]]);
    expect(report.skipped).toEqual([all[0], all[2], all[4]]);
    expect(report).toMatchObject({ parked: [], failed: [], examined: 6, stopped: 'limit', depthAfter: 7 });

    expect(ids(await drain(queue))).toEqual([all[1], all[3], all[5]]);
    expect(ids(await drain(dlq))).toEqual([all[0], all[2], all[4], all[6], all[7], all[8], all[9]]);
  });

  it('filters on the error name, and on broker dead-letters', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const byName = `name-${randomUUID()}`;
    const other = `other-${randomUUID()}`;
    const byBroker = `broker-${randomUUID()}`;
    await deadLetter(dlq, queue, byName, { errorName: 'UnknownEventTypeError' });
    await deadLetter(dlq, queue, other, { errorName: 'SchemaViolationError' });
    await brokerDeadLetter(queue, byBroker, amqp.channel);

    const named = await reprocessor.redrive({ queue: dlq, errorName: 'UnknownEventTypeError' });
    expect(named).toMatchObject({ moved: [byName], skipped: [other, byBroker] });
    const broker = await reprocessor.redrive({ queue: dlq, errorClasses: ['broker'] });
    expect(broker).toMatchObject({ moved: [byBroker], skipped: [other] });
    expect(ids(await drain(queue))).toEqual([byName, byBroker]);
    expect(ids(await drain(dlq))).toEqual([other]);
  });

  it('changes nothing on a dry run, and reports what it would move, park and skip', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const all = Array.from({ length: 6 }, (_, i) => `dry-${i}-${randomUUID()}`);
    await seedMany(dlq, queue, all, (_, i) => (i === 2 ? { redriveCount: 3 } : i === 4 ? { errorClass: 'transient' } : {}));

    const report = await reprocessor.redrive({ queue: dlq, errorClasses: ['permanent'], dryRun: true });
    expect(report).toMatchObject({
      dryRun: true,
      moved: [all[0], all[1], all[3], all[5]],
      parked: [all[2]],
      skipped: [all[4]],
      failed: [],
      depthBefore: 6,
      depthAfter: 6,
      stopped: 'done',
    });
    expect(await queueDepth(amqp.connection, queue)).toBe(0);
    expect(await takeFromParkingLot(new Set(all))).toEqual([]);
    const left = await drain(dlq);
    expect(ids(left)).toEqual(all);
    // The DLQ copy is the original: no redrive header was added.
    expect(left.every((message) => message.properties.headers?.[REDRIVE_HEADERS.count] === (message === left[2] ? 3 : undefined))).toBe(
      true,
    );
  });

  it('parks a message redriven too often in the parking lot instead of looping', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const id = `loop-${randomUUID()}`;
    await brokerDeadLetter(queue, id, amqp.channel);

    // Three real round trips: redrive, fail again (rejected by the "function"), back in the DLQ.
    for (let round = 1; round <= 3; round++) {
      const report = await reprocessor.redrive({ queue: dlq });
      expect(report.moved).toEqual([id]);
      const message = await getOne(amqp.channel, queue);
      expect(message.properties.headers?.[REDRIVE_HEADERS.count]).toBe(round);
      amqp.channel.reject(message, false);
      await waitFor(async () => (await queueDepth(amqp.connection, dlq)) === 1, 'the message back in the DLQ');
    }
    const summary = (await reprocessor.inspect(dlq)).sample[0]!;
    expect(summary).toMatchObject({ redriveCount: 3, wouldPark: true, errorClass: 'broker' });

    const report = await reprocessor.redrive({ queue: dlq });
    expect(report).toMatchObject({ moved: [], parked: [id], depthAfter: 0 });
    expect(await queueDepth(amqp.connection, queue)).toBe(0);
    const [parked] = await takeFromParkingLot(new Set([id]));
    expect(parked?.properties.messageId).toBe(id);
    expect(parked!.properties.headers).toMatchObject({
      [REDRIVE_HEADERS.count]: 3,
      [REDRIVE_HEADERS.parkedFrom]: dlq,
      [REDRIVE_HEADERS.parkedReason]: 'redriven 3 times (DLQ_MAX_REDRIVES is 3)',
    });
  });

  it('sends every message back to the DLQ\u2019s own work queue, whatever x-original-queue a producer put on it', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const other = await setup();
    const all = [0, 1, 2].map((i) => `forged-${i}-${randomUUID()}`);
    await seedMany(dlq, queue, all, (_, i) => (i === 1 ? { originalQueue: other.queue } : {}));
    const report = await reprocessor.redrive({ queue: dlq });
    expect(report.moved).toEqual(all);
    expect(report.targets).toEqual({ [queue]: 3 });
    expect(ids(await drain(queue))).toEqual(all);
    expect(await queueDepth(amqp.connection, other.queue)).toBe(0);
  });

  it('keeps the messages in the DLQ, in their place, when its work queue is gone', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const all = [0, 1, 2].map((i) => `gone-${i}-${randomUUID()}`);
    await seedMany(dlq, queue, all);
    await amqp.channel.deleteQueue(queue);
    const report = await reprocessor.redrive({ queue: dlq });
    expect(report.moved).toEqual([]);
    expect(report.failed.map((failure) => failure.id)).toEqual(all);
    for (const failure of report.failed)
      expect(failure).toMatchObject({ error: expect.stringMatching(/UnroutableError/), published: false });
    expect(report.stopped).toBe('done');
    expect(ids(await drain(dlq))).toEqual(all);
  });

  it('paces publishes at the requested rate', async () => {
    const { queue, dlq, reprocessor } = await setup();
    const all = Array.from({ length: 6 }, (_, i) => `rate-${i}-${randomUUID()}`);
    await seedMany(dlq, queue, all);
    const started = Date.now();
    const report = await reprocessor.redrive({ queue: dlq, rate: 10 });
    expect(report.moved).toHaveLength(6);
    // Six messages at 10/s: the sixth goes out 0.5 s after the first.
    expect(Date.now() - started).toBeGreaterThanOrEqual(480);
    await drain(queue);
  });

  it('lets one reader at a time hold a DLQ, across connections', async () => {
    const { queue, dlq, reprocessor } = await setup();
    await seedMany(
      dlq,
      queue,
      Array.from({ length: 5 }, (_, i) => `busy-${i}-${randomUUID()}`),
    );
    const slow = reprocessor.redrive({ queue: dlq, rate: 5 });
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) > 0, 'the redrive to start');
    await expect(reprocessor.redrive({ queue: dlq })).rejects.toBeInstanceOf(DlqBusyError);
    // Another process (connection) is refused by the broker-side lock.
    const other = await amqp.connection.createChannel();
    other.on('error', () => undefined);
    await expect(other.assertQueue(lockQueueName(dlq), { exclusive: true, durable: false })).rejects.toThrow(/RESOURCE_LOCKED/);
    const listing = await reprocessor.list({ queues: [dlq] });
    // Not 'depth 0': the redrive holds the messages unacknowledged, so the ready count says nothing.
    expect(listing.dlqs[0]).toMatchObject({ status: 'busy', depth: null });
    expect((await slow).moved).toHaveLength(5);
    // Released afterwards.
    expect((await reprocessor.redrive({ queue: dlq })).stopped).toBe('empty');
    await drain(queue);
  });

  it('DLQ redrive interrupted by a broker cut: every message ends in exactly one of source queue, DLQ or parking lot', async () => {
    const connectionName = `dlq-test-cut-${randomUUID().slice(0, 8)}`;
    const { queue, dlq, reprocessor } = await setup({ connectionName });
    const N = 40;
    const all = Array.from({ length: N }, (_, i) => `cut-${String(i).padStart(2, '0')}-${randomUUID()}`);
    // Every fifth message has been redriven too often already and is parked rather than moved.
    await seedMany(dlq, queue, all, (_, i) => (i % 5 === 4 ? { redriveCount: 3 } : {}));

    // The management API lists a connection only after its first statistics (up to 5 s): known before the redrive
    // starts, the cut comes when meant to.
    const control = await brokerControl();
    await waitFor(
      async () => (await control.listConnections()).some((c) => c.clientName === connectionName),
      'the broker to list the connection',
      15_000,
    );
    // 10 a second: the cut comes after 8 moves, with some 3 s of redrive left, so a busy machine's slow polling
    // cannot let the redrive finish first (at 20 a second a loaded run once saw it done before the cut).
    const redrive = reprocessor.redrive({ queue: dlq, rate: 10 });
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) >= 8, 'part of the redrive to happen');
    await cutConnection(connectionName);
    const report = await redrive;
    expect(report.stopped).toBe('interrupted');
    expect(report.error).toBeTruthy();

    const inSource = ids(await drain(queue));
    const inDlq = ids(await drain(dlq));
    const inParking = ids(await takeFromParkingLot(new Set(all)));
    const everywhere = [...inSource, ...inDlq, ...inParking];

    // Nothing lost: every message is somewhere.
    expect(new Set(everywhere)).toEqual(new Set(all));
    expect(inSource.length).toBeGreaterThan(0);
    expect(inDlq.length).toBeGreaterThan(0);
    // At most one message, the one in flight when the cut came (copy sent, original not yet acked), is in two
    // places (its work queue or the parking lot, and the DLQ); the functions' inbox drops the second copy by
    // messageId. Designed to be rare: no copy is sent once the DLQ channel is gone.
    const duplicates = everywhere.filter((id, index) => everywhere.indexOf(id) !== index);
    if (process.env.DLQ_TEST_VERBOSE)
      console.log({
        moved: report.moved.length,
        parked: report.parked.length,
        failed: report.failed,
        inSource: inSource.length,
        inDlq: inDlq.length,
        inParking: inParking.length,
        duplicates,
      });
    expect(duplicates.length).toBeLessThanOrEqual(1);
    for (const id of duplicates) {
      expect(inSource.includes(id) || inParking.includes(id)).toBe(true);
      expect(inDlq).toContain(id);
    }
    expect(new Set(inSource).size).toBe(inSource.length);
    expect(new Set(inParking).size).toBe(inParking.length);
    // What the report calls moved or parked is where it says.
    for (const id of report.moved) expect(inSource).toContain(id);
    for (const id of report.parked) expect(inParking).toContain(id);
    // The DLQ keeps what is left in the original order, and none of it is a message the report moved.
    expect(inDlq).toEqual(all.filter((id) => inDlq.includes(id)));
    expect(inDlq.filter((id) => report.moved.includes(id) || report.parked.includes(id))).toEqual([]);
  });
});
