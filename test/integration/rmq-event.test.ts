import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { buildRabbitMQEvent, decodeRabbitMQEvent, localEventSourceArn, type RabbitMQEvent, type RabbitMQMessage } from 'middy-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
/** The broker refuses a userId other than the connection's user. */
const USER = decodeURIComponent(new URL(AMQP_URL).username) || 'guest';

const samples = ['rabbitmq-event-aws-sample.json', 'rabbitmq-event-captured.json'].map(
  (name) => JSON.parse(readFileSync(new URL(`../fixtures/aws-samples/${name}`, import.meta.url), 'utf8')) as RabbitMQEvent,
);
const AWS_SAMPLE = samples[0]!;
const sampleMessage = AWS_SAMPLE.rmqMessagesByQueue['test::/']![0]!;

/** What kind of value each property is when present (the samples show the non-null ones). */
const KINDS: Record<string, string> = {
  contentType: 'string',
  contentEncoding: 'string',
  headers: 'object',
  deliveryMode: 'number',
  priority: 'number',
  correlationId: 'string',
  replyTo: 'string',
  expiration: 'string',
  messageId: 'string',
  timestamp: 'string',
  type: 'string',
  userId: 'string',
  appId: 'string',
  clusterId: 'string',
  bodySize: 'number',
};
const kind = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value);

/** Checks `message` against the AWS samples: same keys in the same order, values of the same kinds. */
function expectAwsShape(message: RabbitMQMessage) {
  expect(Object.keys(message)).toEqual(Object.keys(sampleMessage));
  expect(Object.keys(message.basicProperties)).toEqual(Object.keys(sampleMessage.basicProperties));
  expect(kind(message.redelivered)).toBe('boolean');
  expect(kind(message.data)).toBe('string');
  for (const [key, value] of Object.entries(message.basicProperties)) {
    expect([KINDS[key], 'null'], key).toContain(kind(value));
  }
}

describe('aws:rmq events from a real RabbitMQ', () => {
  let connection: ChannelModel;
  let channel: ConfirmChannel;
  let raw: Channel;

  beforeAll(async () => {
    connection = await amqp.connect(AMQP_URL, { clientProperties: { connection_name: 'rmq-event-test' } });
    channel = await connection.createConfirmChannel();
    raw = await connection.createChannel();
    await channel.prefetch(20);
  });

  afterAll(async () => {
    await connection?.close();
  });

  /** Exclusive: gone with the connection. Not auto-delete, which would drop it when a test cancels its consumer. */
  const tempQueue = async () => (await channel.assertQueue(`rmq-event-test-${randomUUID()}`, { exclusive: true })).queue;

  /** Consumes `count` messages with manual acks, then cancels the consumer; the messages stay unacked. */
  const consume = (queue: string, count: number) =>
    new Promise<ConsumeMessage[]>((resolve, reject) => {
      const consumerTag = `rmq-event-test-${randomUUID()}`;
      const got: ConsumeMessage[] = [];
      const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${count} messages from ${queue}`)), 5_000);
      channel
        .consume(
          queue,
          (message) => {
            if (!message || got.push(message) !== count) return;
            clearTimeout(timer);
            channel.cancel(consumerTag).then(() => resolve(got), reject);
          },
          { noAck: false, consumerTag },
        )
        .catch(reject);
    });

  const eventFor = (queue: string, messages: ConsumeMessage[]) =>
    buildRabbitMQEvent({
      eventSourceArn: localEventSourceArn(),
      vhost: '/',
      messages: messages.map((message) => ({ queue, message })),
    });

  it('turns messages with every property and with none into AWS-shaped events that decode intact', async () => {
    const queue = await tempQueue();
    const published = {
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      headers: {
        str: 'value1',
        unicode: 'héllo ✓',
        int: 10,
        negative: -40_000,
        big: 2 ** 40,
        float: 2.5,
        yes: true,
        no: false,
        nothing: null,
        nested: { inner: 'x', deeper: { n: 1, list: ['y'] } },
        list: ['a', 1, true, { k: 'v' }],
        when: { '!': 'timestamp', value: 1_700_000_000 },
      },
      deliveryMode: 2,
      priority: 7,
      correlationId: randomUUID(),
      replyTo: 'reply-queue',
      expiration: '60000',
      messageId: randomUUID(),
      timestamp: 1_700_000_000,
      type: 'OrderPlaced',
      userId: USER,
      appId: 'rmq-event-test',
    };
    const bodies = [Buffer.from(JSON.stringify({ hello: 'wörld' })), Buffer.from('no properties at all')];
    channel.sendToQueue(queue, bodies[0]!, published);
    channel.sendToQueue(queue, bodies[1]!);
    await channel.waitForConfirms();
    const consumed = await consume(queue, 2);

    const event = eventFor(queue, consumed);
    expect(Object.keys(event)).toEqual(Object.keys(AWS_SAMPLE));
    expect(event.eventSource).toBe('aws:rmq');
    expect(Object.keys(event.rmqMessagesByQueue)).toEqual([`${queue}::/`]);
    const [full, bare] = event.rmqMessagesByQueue[`${queue}::/`]!;
    expectAwsShape(full!);
    expectAwsShape(bare!);

    const p = full!.basicProperties;
    expect(Object.entries(p).filter(([, value]) => value === null)).toEqual([['clusterId', null]]);
    expect(p.headers!.str).toEqual(sampleMessage.basicProperties.headers!.header1);
    expect(p.headers!.int).toBe(10);
    expect(p.timestamp).toBe('Nov 14, 2023, 10:13:20 PM');
    expect(p.bodySize).toBe(bodies[0]!.length);
    expect(full!.data).toBe(bodies[0]!.toString('base64'));
    expect(full!.redelivered).toBe(false);
    // amqplib always publishes a headers table, empty here; everything else is absent.
    const allNull = Object.fromEntries(Object.keys(KINDS).map((key) => [key, null]));
    expect(bare!.basicProperties).toEqual({ ...allNull, headers: {}, bodySize: 20 });

    const records = decodeRabbitMQEvent(JSON.parse(JSON.stringify(event)));
    expect(records.map((r) => [r.queue, r.vhost, r.redelivered])).toEqual([
      [queue, '/', false],
      [queue, '/', false],
    ]);
    expect(records[0]!.properties).toEqual({ ...published, clusterId: undefined });
    expect(records[0]!.properties).toEqual(consumed[0]!.properties);
    expect(records[1]!.properties).toEqual(consumed[1]!.properties);
    expect(records[1]!.properties).toEqual({ headers: {} });
    for (const [i, record] of records.entries()) expect(record.body.equals(bodies[i]!)).toBe(true);
    for (const message of consumed) channel.ack(message);
  });

  it('keeps headers null for a client that sends no headers table, and passes clusterId through', async () => {
    const queue = await tempQueue();
    // amqplib's publish always sends a headers table and never a clusterId, so send the frame fields directly,
    // as another client would: no headers, cluster-id set (deprecated in 0-9-1, but RabbitMQ keeps it).
    const none = Object.fromEntries(
      Object.keys(KINDS)
        .filter((k) => k !== 'bodySize')
        .map((k) => [k, undefined]),
    );
    const fields = { ...none, exchange: '', routingKey: queue, mandatory: false, immediate: false };
    const frame = { ...fields, clusterId: 'cluster-a' };
    const lowLevel = raw as unknown as { sendMessage(fields: object, properties: object, content: Buffer): boolean };
    lowLevel.sendMessage(frame, frame, Buffer.from('Hello World 1'));
    const [consumed] = await consume(queue, 1);
    expect(consumed!.properties.headers).toBeUndefined();
    expect(consumed!.properties.clusterId).toBe('cluster-a');

    const event = eventFor(queue, [consumed!]);
    const [message] = event.rmqMessagesByQueue[`${queue}::/`]!;
    expectAwsShape(message!);
    expect(message!.basicProperties).toMatchObject({
      headers: null,
      deliveryMode: null,
      clusterId: 'cluster-a',
      bodySize: 13,
    });
    const [record] = decodeRabbitMQEvent(event);
    expect(record!.properties).toEqual(consumed!.properties);
    channel.ack(consumed!);
  });

  it('marks a message the broker delivers again as redelivered', async () => {
    const queue = await tempQueue();
    channel.sendToQueue(queue, Buffer.from('again'), { messageId: 'm-1', persistent: true });
    await channel.waitForConfirms();
    const [first] = await consume(queue, 1);
    expect(eventFor(queue, [first!]).rmqMessagesByQueue[`${queue}::/`]![0]!.redelivered).toBe(false);
    channel.nack(first!, false, true);

    const [second] = await consume(queue, 1);
    const event = eventFor(queue, [second!]);
    const [message] = event.rmqMessagesByQueue[`${queue}::/`]!;
    expect(message!.redelivered).toBe(true);
    expectAwsShape(message!);
    const [record] = decodeRabbitMQEvent(event);
    expect(record).toMatchObject({ redelivered: true, properties: { messageId: 'm-1', deliveryMode: 2 } });
    expect(record!.body.toString()).toBe('again');
    channel.ack(second!);
  });
});
