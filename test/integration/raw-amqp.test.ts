/**
 * The test-only raw AMQP publisher (test/support/raw-amqp.ts) against the real broker: what it sends, amqplib
 * decodes exactly; and the broker's refusals reach the caller with the broker's own reply.
 */
import { randomBytes } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AMQP_URL, openTestAmqp, type TestAmqp } from '../support/amqp';
import { BrokerCloseError, encodeTable, type FieldTable, nested, openRawPublisher, type RawProperties } from '../support/raw-amqp';

let amqp: TestAmqp;
let queue: string;
const received: ConsumeMessage[] = [];
const waiting: Array<(message: ConsumeMessage) => void> = [];

/** The next message the private queue's consumer receives (acked as it arrives). */
function nextMessage(timeoutMs = 5_000): Promise<ConsumeMessage> {
  const ready = received.shift();
  if (ready) return Promise.resolve(ready);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message within ${timeoutMs} ms`)), timeoutMs);
    waiting.push((message) => {
      clearTimeout(timer);
      resolve(message);
    });
  });
}

beforeAll(async () => {
  amqp = await openTestAmqp();
  queue = (await amqp.channel.assertQueue('', { exclusive: true, autoDelete: true })).queue;
  await amqp.channel.consume(
    queue,
    (message) => {
      if (!message) return;
      amqp.channel.ack(message);
      const waiter = waiting.shift();
      if (waiter) waiter(message);
      else received.push(message);
    },
    { noAck: false },
  );
});

afterAll(async () => {
  await amqp.close();
});

describe('raw AMQP publisher', () => {
  it('sends every basic property and every header type, and amqplib decodes exactly what was sent', async () => {
    const publisher = await openRawPublisher(AMQP_URL);
    try {
      const headers: FieldTable = {
        longstr: { t: 'S', v: 'text ✓' },
        longstrBytes: { t: 'S', v: Buffer.from('bytes', 'utf8') },
        bytes: { t: 'x', v: Buffer.from([0, 1, 2, 255]) },
        timestamp: { t: 'T', v: 1_700_000_000n },
        int64: { t: 'l', v: -9_007_199_254_740_991n },
        int32: { t: 'I', v: -2_147_483_648 },
        uint32: { t: 'i', v: 4_294_967_295 },
        int16: { t: 's', v: -32_768 },
        uint16: { t: 'u', v: 65_535 },
        int8: { t: 'b', v: -128 },
        uint8: { t: 'B', v: 255 },
        decimal: { t: 'D', places: 2, digits: 12_345 },
        double: { t: 'd', v: 1.25 },
        float: { t: 'f', v: 1.5 },
        yes: { t: 't', v: true },
        no: { t: 't', v: false },
        void: { t: 'V' },
        array: { t: 'A', v: [{ t: 'S', v: 'a' }, { t: 'I', v: 1 }, { t: 'V' }, { t: 'A', v: [] }] },
        table: { t: 'F', v: { inner: { t: 't', v: true } } },
        // A pre-encoded table (key "k", longstr "v") and a value written verbatim (tag 'b', -1).
        rawTable: { t: 'F', v: Buffer.from([1, 0x6b, 0x53, 0, 0, 0, 1, 0x76]) },
        rawValue: { t: 'raw', v: Buffer.from([0x62, 0xff]) },
      };
      const properties: RawProperties = {
        contentType: 'application/json',
        contentEncoding: 'identity',
        headers,
        deliveryMode: 2,
        priority: 7,
        correlationId: 'correlation-1',
        replyTo: 'reply-queue',
        expiration: '60000',
        messageId: 'message-1',
        timestamp: 1_700_000_000n,
        type: 'order.created',
        userId: 'guest', // the broker refuses a user-id other than the connection's user
        appId: 'raw-amqp-test',
        clusterId: 'cluster-1',
      };
      // Larger than frame-max, so the body goes out in several body frames.
      const body = randomBytes(300_000);
      expect(body.length).toBeGreaterThan(publisher.frameMax);

      await expect(publisher.publish('', queue, body, properties)).resolves.toBe('ack');
      const message = await nextMessage();

      expect(message.content.equals(body)).toBe(true);
      expect(message.properties).toEqual({
        contentType: 'application/json',
        contentEncoding: 'identity',
        headers: {
          longstr: 'text ✓',
          longstrBytes: 'bytes',
          bytes: Buffer.from([0, 1, 2, 255]),
          timestamp: { '!': 'timestamp', value: 1_700_000_000 },
          int64: -9_007_199_254_740_991,
          int32: -2_147_483_648,
          uint32: 4_294_967_295,
          int16: -32_768,
          uint16: 65_535,
          int8: -128,
          uint8: 255,
          decimal: { '!': 'decimal', value: { places: 2, digits: 12_345 } },
          double: 1.25,
          float: 1.5,
          yes: true,
          no: false,
          void: null,
          array: ['a', 1, null, []],
          table: { inner: true },
          rawTable: { k: 'v' },
          rawValue: -1,
        },
        deliveryMode: 2,
        priority: 7,
        correlationId: 'correlation-1',
        replyTo: 'reply-queue',
        expiration: '60000',
        messageId: 'message-1',
        timestamp: 1_700_000_000,
        type: 'order.created',
        userId: 'guest',
        appId: 'raw-amqp-test',
        clusterId: 'cluster-1',
      });
    } finally {
      await publisher.close();
    }
  });

  it('sends shortstrs byte for byte, invalid UTF-8 included, and an empty body', async () => {
    const publisher = await openRawPublisher(AMQP_URL);
    try {
      const messageId = Buffer.from([0x6d, 0xff, 0xfe, 0x6d]);
      await expect(publisher.publish('', queue, Buffer.alloc(0), { messageId, type: Buffer.alloc(255, 0x61) })).resolves.toBe('ack');
      const message = await nextMessage();
      expect(message.content.length).toBe(0);
      // amqplib decodes shortstrs as UTF-8, so the two invalid bytes arrive as replacement characters.
      expect(message.properties.messageId).toBe('m\uFFFD\uFFFDm');
      expect(message.properties.type).toBe('a'.repeat(255));
    } finally {
      await publisher.close();
    }
  });

  it('records a basic.return for a mandatory publish with no route, which is still confirmed', async () => {
    const publisher = await openRawPublisher(AMQP_URL);
    try {
      await expect(publisher.publish('', `${queue}-unrouted`, Buffer.from('x'), {}, { mandatory: true })).resolves.toBe('ack');
      expect(publisher.returns).toEqual([{ replyCode: 312, replyText: 'NO_ROUTE', exchange: '', routingKey: `${queue}-unrouted` }]);
    } finally {
      await publisher.close();
    }
  });

  it("rejects with the broker's 404 reply when the exchange does not exist, and every later publish too", async () => {
    const publisher = await openRawPublisher(AMQP_URL);
    try {
      const exchange = `${queue}-missing-exchange`;
      const refused = publisher.publish(exchange, 'k', Buffer.from('x'));
      await expect(refused).rejects.toBeInstanceOf(BrokerCloseError);
      await expect(refused).rejects.toMatchObject({
        scope: 'channel',
        code: 404,
        replyText: `NOT_FOUND - no exchange '${exchange}' in vhost '/'`,
        classId: 60,
        methodId: 40,
      });
      await expect(publisher.publish('', queue, Buffer.from('x'))).rejects.toMatchObject({ code: 404 });
    } finally {
      await publisher.close();
    }
  });

  it('encodes nesting far deeper than the call stack allows recursion', () => {
    const depth = 13_000;
    const table = encodeTable({ d: nested(depth, 'A', { t: 'V' }) });
    // length prefix, key "d" (length octet + 1 byte), then per level tag 'A' + 4-byte length, then the 'V' tag.
    expect(table.length).toBe(4 + 2 + depth * 5 + 1);
    expect(table.readUInt32BE(0)).toBe(table.length - 4);
    expect(table.readUInt32BE(4 + 2 + 1)).toBe((depth - 1) * 5 + 1);
  });
});
