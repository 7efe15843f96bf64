/**
 * The outbox relay against the real broker, on SQLite and on PostgreSQL: rows go out oldest first with
 * their stored body and properties, are marked only after the confirm, failures are recorded and retried,
 * one bad row does not hold back the others, and the loop starts and stops cleanly.
 * Rows target an exchange of this test's own, read back through an exclusive queue.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessageProperties } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/logging';
import { Broker, ExchangeNotFoundError, Publisher } from '../../shared/messaging';
import { publishCommitted, publishPending, startOutboxRelay } from '../../shared/outbox';
import { type NewOutboxMessage, type OutboxMessage, openStore, type Store } from '../../shared/store';
import { AMQP_URL, openTestAmqp, type TestAmqp } from '../support/amqp';
import { backends, postgresBackend } from '../support/databases';

interface Received {
  body: string;
  routingKey: string;
  properties: MessageProperties;
}

describe.each(backends())('outbox relay on $name', (backend) => {
  const exchange = `outbox-test-${randomBytes(4).toString('hex')}`;
  /** Declared, but nothing bound: the broker returns what is published to it. */
  const unboundExchange = `${exchange}-unbound`;
  let amqp: TestAmqp;
  let broker: Broker;
  let publisher: Publisher;
  let received: Received[] = [];
  const stores: Store[] = [];
  const logger = createLogger({ level: 'silent' });

  beforeAll(async () => {
    await backend.setup();
    amqp = await openTestAmqp();
    await amqp.channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: true });
    await amqp.channel.assertExchange(unboundExchange, 'topic', { durable: false, autoDelete: true });
    const { queue } = await amqp.channel.assertQueue('', { exclusive: true, autoDelete: true });
    await amqp.channel.bindQueue(queue, exchange, '#');
    await amqp.channel.consume(queue, (message) => {
      if (!message) return;
      received.push({ body: message.content.toString(), routingKey: message.fields.routingKey, properties: message.properties });
      amqp.channel.ack(message);
    });
    broker = new Broker({ urls: [AMQP_URL], connectionName: 'outbox-relay-test' });
    publisher = new Publisher(broker);
  });

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    received = [];
  });

  afterAll(async () => {
    await publisher.close();
    await broker.close();
    await amqp.channel.deleteExchange(unboundExchange).catch(() => undefined);
    await amqp.close();
    await backend.teardown();
  });

  async function fresh(): Promise<Store> {
    const store = await openStore(await backend.fresh());
    stores.push(store);
    return store;
  }

  const message = (n: number, overrides: Partial<NewOutboxMessage> = {}): NewOutboxMessage => {
    const eventId = randomUUID();
    return {
      event_id: eventId,
      exchange,
      routing_key: `row.${n}`,
      body: { n, event_id: eventId, note: 'ünïcode ✓' },
      properties: {
        contentType: 'application/json',
        deliveryMode: 2,
        persistent: true,
        messageId: eventId,
        type: 'TestEvent',
        timestamp: 1_700_000_000 + n,
        appId: 'outbox-test',
        correlationId: `corr-${n}`,
        headers: { 'x-n': n },
      },
      ...overrides,
    };
  };

  async function waitForReceived(count: number, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (received.length < count) {
      if (Date.now() > deadline) throw new Error(`Only ${received.length} of ${count} messages arrived`);
      await sleep(20);
    }
  }

  it('publishes pending rows oldest first, byte for byte, and marks them only once confirmed', async () => {
    const store = await fresh();
    const rows = [message(1), message(2), message(3)];
    for (const row of rows) await store.outbox.add([row]);
    const stored = await store.outbox.pending();

    expect(await publishPending(store, publisher, { limit: 10 })).toEqual({ published: 3, failed: 0, deferred: 0, skipped: 0 });
    await waitForReceived(3);
    expect(received.map((r) => r.routingKey)).toEqual(['row.1', 'row.2', 'row.3']);
    expect(received.map((r) => r.body)).toEqual(stored.map((row) => row.body));
    expect(received[0]!.properties).toMatchObject({
      contentType: 'application/json',
      deliveryMode: 2,
      messageId: rows[0]!.event_id,
      type: 'TestEvent',
      timestamp: 1_700_000_001,
      appId: 'outbox-test',
      correlationId: 'corr-1',
      headers: { 'x-n': 1 },
    });
    expect(await store.outbox.backlog()).toBe(0);
    expect(await publishPending(store, publisher)).toEqual({ published: 0, failed: 0, deferred: 0, skipped: 0 });
    await sleep(100);
    expect(received).toHaveLength(3);
  });

  it('sends at most `limit` rows per round, the oldest', async () => {
    const store = await fresh();
    for (let n = 1; n <= 5; n++) await store.outbox.add([message(n)]);
    expect((await publishPending(store, publisher, { limit: 2 })).published).toBe(2);
    await waitForReceived(2);
    expect(received.map((r) => r.routingKey)).toEqual(['row.1', 'row.2']);
    expect(await store.outbox.backlog()).toBe(3);
  });

  it('a publish to a missing exchange costs only itself: the publishes around it are each confirmed and sent once', async () => {
    // Sent in one tick, so all are on the channel together: a missing exchange used to make the broker close the
    // publishing channel, failing the publishes still awaiting their confirm (the relay sent them again).
    const outgoing = (n: number, target = exchange) => ({
      exchange: target,
      routingKey: `burst.${n}`,
      body: Buffer.from(String(n)),
      options: { messageId: `burst-${n}`, contentType: 'text/plain' },
    });
    const publishes = [
      ...Array.from({ length: 10 }, (_, n) => publisher.publish(outgoing(n))),
      publisher.publish(outgoing(10, `${exchange}-missing`)),
      ...Array.from({ length: 10 }, (_, n) => publisher.publish(outgoing(11 + n))),
    ];
    const results = await Promise.allSettled(publishes);
    expect(results.map((r) => r.status)).toEqual([...Array(10).fill('fulfilled'), 'rejected', ...Array(10).fill('fulfilled')]);
    expect((results[10] as PromiseRejectedResult).reason).toBeInstanceOf(ExchangeNotFoundError);
    await waitForReceived(20);
    await sleep(100);
    const expected = [...Array.from({ length: 10 }, (_, n) => n), ...Array.from({ length: 10 }, (_, n) => 11 + n)];
    expect(received.map((r) => Number(r.body)).sort((x, y) => x - y)).toEqual(expected);
  });

  it('records a failure on a row the broker will not take, and still sends the rows around it', async () => {
    const store = await fresh();
    await store.outbox.add([message(1)]);
    await store.outbox.add([message(2, { exchange: unboundExchange })]);
    await store.outbox.add([message(3, { exchange: `${exchange}-missing` })]);
    await store.outbox.add([message(4)]);

    expect(await publishPending(store, publisher)).toMatchObject({ published: 2, failed: 2 });
    await waitForReceived(2);
    expect(received.map((r) => r.routingKey).sort()).toEqual(['row.1', 'row.4']);
    const pending = await store.outbox.pending();
    expect(pending.map((row) => row.routing_key)).toEqual(['row.2', 'row.3']);
    expect(pending[0]).toMatchObject({ attempts: 1, last_error: expect.stringMatching(/UnroutableError/) });
    expect(pending[1]).toMatchObject({ attempts: 1, last_error: expect.stringMatching(/ExchangeNotFoundError/) });

    // Still refused next round: attempts keep counting, nothing else is sent again.
    await publishPending(store, publisher);
    expect((await store.outbox.pending()).map((row) => row.attempts)).toEqual([2, 2]);
    await sleep(100);
    expect(received).toHaveLength(2);
  });

  it('keeps rows pending, untouched, while the broker is unreachable and sends them once it is back', async () => {
    const store = await fresh();
    await store.outbox.add([message(1), message(2)]);
    const downBroker = new Broker({ urls: ['amqp://guest:guest@127.0.0.1:1'], maxAttempts: 1 });
    const downPublisher = new Publisher(downBroker);
    try {
      expect(await publishPending(store, downPublisher)).toEqual({ published: 0, failed: 0, deferred: 2, skipped: 0 });
      expect(downBroker.status.state).toBe('down');
      // Known down now: the next round defers again, at once.
      expect(await publishPending(store, downPublisher)).toMatchObject({ published: 0, failed: 0, deferred: 2 });
    } finally {
      await downBroker.close();
    }
    // Never sent, so no attempt is counted and no error is written per row: the outage is the Broker's to report.
    const pending = await store.outbox.pending();
    expect(pending.map((row) => [row.attempts, row.last_error])).toEqual([
      [0, null],
      [0, null],
    ]);

    expect(await publishPending(store, publisher)).toMatchObject({ published: 2, failed: 0 });
    await waitForReceived(2);
    expect(received.map((r) => r.properties.messageId)).toEqual(pending.map((row) => row.event_id));
  });

  it('publishes events just committed from memory, byte for byte as stored, and marks them in one go', async () => {
    const store = await fresh();
    const rows = [message(1), message(2)];
    await store.outbox.add([message(0), ...rows]);
    expect(await publishCommitted(store, publisher, rows)).toEqual(['published', 'published']);
    await waitForReceived(2);
    expect(received.map((r) => r.routingKey).sort()).toEqual(['row.1', 'row.2']);
    expect((await store.outbox.pending()).map((pending: OutboxMessage) => pending.routing_key)).toEqual(['row.0']);
    // The body the relay would have sent for the same row: the text the outbox stored.
    expect(received.find((r) => r.routingKey === 'row.1')!.body).toBe(JSON.stringify(rows[0]!.body));
  });

  it('leaves a row its producer leased to the producer, and sends it once the lease has ended', async () => {
    const store = await fresh();
    await store.outbox.add([message(1)], { leaseMs: 300 });
    expect(await publishPending(store, publisher)).toEqual({ published: 0, failed: 0, deferred: 0, skipped: 0 });
    expect(await store.outbox.backlog()).toBe(1);
    await sleep(350);
    expect(await publishPending(store, publisher)).toMatchObject({ published: 1 });
    await waitForReceived(1);
  });

  it('runs as a loop that drains rows added later and stops cleanly', async () => {
    const store = await fresh();
    const stop = startOutboxRelay({ store, publisher, intervalMs: 50, limit: 2, logger });
    try {
      await store.outbox.add([message(1), message(2), message(3)]);
      await waitForReceived(3);
      await store.outbox.add([message(4)]);
      await waitForReceived(4);
      expect(received.map((r) => r.routingKey)).toEqual(['row.1', 'row.2', 'row.3', 'row.4']);
    } finally {
      await stop();
    }
    await store.outbox.add([message(5)]);
    await sleep(200);
    expect(received).toHaveLength(4);
    expect(await store.outbox.backlog()).toBe(1);
  });
});

/** Several relays share a database in a deployment, which is PostgreSQL (SQLite is one machine's file). */
describe('two outbox relays on one PostgreSQL', () => {
  it('send every row of a backlog once: rows are claimed (FOR UPDATE SKIP LOCKED), not shared through memory', async () => {
    const backend = postgresBackend();
    await backend.setup();
    const amqp = await openTestAmqp();
    const exchange = `outbox-relays-${randomBytes(4).toString('hex')}`;
    await amqp.channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: true });
    const { queue } = await amqp.channel.assertQueue('', { exclusive: true, autoDelete: true });
    await amqp.channel.bindQueue(queue, exchange, '#');
    const ids: string[] = [];
    await amqp.channel.consume(
      queue,
      (message) => {
        if (message) ids.push(String(message.properties.messageId));
      },
      { noAck: true },
    );
    const options = await backend.fresh();
    const stores = [await openStore(options), await openStore(options)];
    const brokers = [0, 1].map((i) => new Broker({ urls: [AMQP_URL], connectionName: `outbox-relays-test-${i}` }));
    const publishers = brokers.map((broker) => new Publisher(broker));
    const logger = createLogger({ level: 'silent' });
    try {
      await stores[0]!.outbox.add(
        Array.from({ length: 150 }, (_, n) => ({ event_id: randomUUID(), exchange, routing_key: `row.${n}`, body: { n }, properties: {} })),
      );
      // Two relay loops with small rounds, side by side until the backlog is empty: each claims rows the other cannot.
      const stops = stores.map((store, i) => startOutboxRelay({ store, publisher: publishers[i]!, intervalMs: 20, limit: 7, logger }));
      const deadline = Date.now() + 20_000;
      while (ids.length < 150 && Date.now() < deadline) await sleep(20);
      await sleep(300);
      await Promise.all(stops.map((stop) => stop()));
      expect(ids).toHaveLength(150);
      expect(new Set(ids).size).toBe(150);
      expect(await stores[0]!.outbox.backlog()).toBe(0);
    } finally {
      for (const publisher of publishers) await publisher.close();
      for (const broker of brokers) await broker.close();
      for (const store of stores) await store.close();
      await amqp.close();
      await backend.teardown();
    }
  });
});
