import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config';
import {
  Broker,
  declareTopology,
  dlqName,
  EXCHANGES,
  Publisher,
  RETRY_DELAY_HEADER,
  retryQueueName,
  TopologyMismatchError,
  topology,
  UnroutableError,
} from '../../shared/messaging';
import { AMQP_URL, getMessage, openTestAmqp, purgeQueues, type TestAmqp } from '../support/amqp';

const options = { deliveryLimit: 10, retryDelaysMs: [300] };
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('topology on the real broker', () => {
  let broker: Broker;
  let publisher: Publisher;
  let amqp: TestAmqp;

  beforeAll(async () => {
    broker = new Broker({ urls: [AMQP_URL], connectionName: 'topology-test' });
    await broker.onConnect((connection) => declareTopology(connection, options).then(() => undefined));
    publisher = new Publisher(broker);
    amqp = await openTestAmqp();
  });

  afterAll(async () => {
    await publisher.close();
    await broker.close();
    await amqp.close();
  });

  it('declares twice, from two connections, without error', async () => {
    const connection = await broker.connect();
    await declareTopology(connection, options);
    await declareTopology(amqp.connection, options);
    for (const queue of topology(options).queues) {
      const ok = await amqp.channel.checkQueue(queue.name);
      expect(ok.queue).toBe(queue.name);
    }
  });

  it('routes orders/order.placed into order-events, and a rejected message into order-events-dlq', async () => {
    await purgeQueues(amqp.connection, ['order-events', dlqName('order-events')]);
    const messageId = randomUUID();
    await publisher.publish({
      exchange: EXCHANGES.orders,
      routingKey: 'order.placed',
      body: json({ hello: messageId }),
      options: { messageId, contentType: 'application/json', persistent: true },
    });
    const delivered = await getMessage(amqp.channel, 'order-events');
    expect(delivered.properties.messageId).toBe(messageId);

    amqp.channel.reject(delivered, false);
    const deadLettered = await getMessage(amqp.channel, dlqName('order-events'));
    expect(deadLettered.properties.messageId).toBe(messageId);
    expect(JSON.parse(deadLettered.content.toString())).toEqual({ hello: messageId });
    const death = deadLettered.properties.headers?.['x-death']?.[0];
    expect(death?.queue).toBe('order-events');
    expect(death?.reason).toBe('rejected');
    amqp.channel.ack(deadLettered);
  });

  it('fans inventory events out to both inventory-events and order-status-events', async () => {
    await purgeQueues(amqp.connection, ['inventory-events', 'order-status-events']);
    const messageId = randomUUID();
    await publisher.publish({
      exchange: EXCHANGES.inventory,
      routingKey: 'inventory.failed',
      body: json({ messageId }),
      options: { messageId, persistent: true },
    });
    for (const queue of ['inventory-events', 'order-status-events']) {
      const message = await getMessage(amqp.channel, queue);
      expect(message.properties.messageId).toBe(messageId);
      amqp.channel.ack(message);
    }
  });

  it('brings a message published to the retry exchange back to its queue after the delay', async () => {
    await purgeQueues(amqp.connection, ['order-events', retryQueueName(300)]);
    const messageId = randomUUID();
    const sentAt = Date.now();
    await publisher.publish({
      exchange: EXCHANGES.retry,
      routingKey: 'order-events',
      body: json({ retry: messageId }),
      options: { messageId, persistent: true, headers: { [RETRY_DELAY_HEADER]: 300 } },
    });
    const message = await getMessage(amqp.channel, 'order-events', 10_000);
    expect(message.properties.messageId).toBe(messageId);
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(250);
    amqp.channel.ack(message);
  });

  it('makes an unroutable publish an error the caller sees', async () => {
    await expect(
      publisher.publish({
        exchange: EXCHANGES.orders,
        routingKey: `nobody.listens.${randomUUID()}`,
        body: json({}),
        options: { messageId: randomUUID() },
      }),
    ).rejects.toBeInstanceOf(UnroutableError);
    // The channel stays usable afterwards.
    await publisher.publish({
      exchange: EXCHANGES.orders,
      routingKey: 'order.placed',
      body: json({}),
      options: { messageId: randomUUID() },
    });
    await purgeQueues(amqp.connection, ['order-events']);
  });

  it('names the queue when the broker already has it with other arguments', async () => {
    await expect(declareTopology(amqp.connection, { ...options, deliveryLimit: 11 })).rejects.toThrow(TopologyMismatchError);
    await expect(declareTopology(amqp.connection, { ...options, deliveryLimit: 11 })).rejects.toThrow(/queue 'order-events'/);
  });
});

describe('configuration', () => {
  it('names the bad setting', () => {
    expect(() => loadConfig({ AMQP_URL: 'http://nope' })).toThrow(/AMQP_URL must be an amqp:\/\/ or amqps:\/\/ URL/);
    expect(() => loadConfig({ DELIVERY_LIMIT: 'many' })).toThrow(/DELIVERY_LIMIT/);
    expect(() => loadConfig({ RETRY_DELAYS_MS: '1000,soon' })).toThrow(/RETRY_DELAYS_MS/);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL must be a postgres:\/\/ URL/);
  });

  it('prefers the AMQP_URLS list and defaults to the local broker', () => {
    expect(loadConfig({}).amqpUrls).toEqual(['amqp://guest:guest@127.0.0.1:5672']);
    expect(loadConfig({ AMQP_URLS: 'amqp://a:5672, amqp://b:5672' }).amqpUrls).toEqual(['amqp://a:5672', 'amqp://b:5672']);
  });

  it('reports an unreachable broker with every address tried, password hidden', async () => {
    const broker = new Broker({
      urls: ['amqp://guest:secret@127.0.0.1:1', 'amqp://guest:secret@127.0.0.1:2'],
      maxAttempts: 2,
    });
    const error = await broker.connect().then(
      () => new Error('connected unexpectedly'),
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('BrokerUnavailableError');
    expect(error.message).toMatch(/127\.0\.0\.1:1.*127\.0\.0\.1:2/);
    expect(error.message).not.toMatch(/secret/);
  });
});
