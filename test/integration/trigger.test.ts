/**
 * The trigger against what any AMQP client can publish (real broker, in-process handlers): a message that
 * cannot become an `aws:rmq` record, or could never fit an invocation, is dead-lettered on its own with the
 * reason, and its neighbours are invoked once; batches are cut before the 6 MB invocation payload.
 */

import {
  decodeRabbitMQEvent,
  envelopeBytes,
  localEventSourceArn,
  MAX_INVOCATION_PAYLOAD_BYTES,
  messageBytes,
  type RabbitMQEvent,
  toRabbitMQMessage,
} from 'middy-rabbitmq';
import { type Runner, triggersFromFunctions } from 'serverless-offline-rabbitmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dlqName } from '../../shared/messaging';
import { AMQP_URL, drainQueue, openTestAmqp, queueDepth, type TestAmqp } from '../support/amqp';
import { nested, openRawPublisher } from '../support/raw-amqp';
import { deleteQueues, type TestHandler, testRunner, trigger, uniqueQueue, waitFor } from '../support/runner';

interface Call {
  bodies: string[];
  payloadBytes: number;
}

/** Records what each invocation carried; `fail(call)` makes that call throw. */
function recorder(fail: (call: number) => boolean = () => false) {
  const calls: Call[] = [];
  const handler: TestHandler = async (event: RabbitMQEvent) => {
    calls.push({
      // Bodies are named by their first 8 bytes (big ones are a tag padded with dots, then filler).
      bodies: decodeRabbitMQEvent(event).map((record) => record.body.subarray(0, 8).toString('latin1').replace(/\.+$/, '')),
      payloadBytes: Buffer.byteLength(JSON.stringify(event)),
    });
    if (fail(calls.length)) throw new Error('handler failed');
  };
  return { calls, handler, bodies: () => calls.flatMap((call) => call.bodies) };
}

describe('trigger: hostile messages (real broker)', () => {
  let amqp: TestAmqp;
  const queues: string[] = [];
  const runners: Runner[] = [];

  const start = async (...args: Parameters<typeof testRunner>) => {
    const made = testRunner(...args);
    runners.push(made.runner);
    for (const t of args[0]) queues.push(t.queue);
    await made.runner.start();
    return made;
  };

  const drain = (queue: string) => drainQueue(amqp.channel, queue);

  beforeAll(async () => {
    amqp = await openTestAmqp();
  });
  afterEach(async () => {
    await Promise.all(runners.splice(0).map((runner) => runner.stop()));
    await deleteQueues(amqp, queues.splice(0));
  });
  afterAll(async () => {
    await amqp.close();
  });

  it('dead-letters a message with no aws:rmq form on its own, with the reason; its neighbours are invoked once', async () => {
    const queue = uniqueQueue('trigger-hostile');
    const fn = recorder();
    const { runner } = await start(
      [trigger(queue, { functionKey: 'fn', batchSize: 10, maximumBatchingWindow: 0.3 })],
      { fn: fn.handler },
      { deadLetterExchange: 'dlx' },
    );
    let deep: unknown = 'bottom';
    for (let i = 0; i < 70; i++) deep = [deep];
    const send = (body: string, options: Record<string, unknown> = {}) =>
      amqp.channel.sendToQueue(queue, Buffer.from(body), { persistent: true, ...options });
    send('ok-1');
    send('bad-timestamp', { messageId: 'bad-1', timestamp: 10 ** 13 }); // pika's timestamp=10**13: no Date holds it
    send('ok-2');
    send('bad-header-timestamp', { messageId: 'bad-2', headers: { when: { '!': 'timestamp', value: 10 ** 13 } } });
    send('ok-3');
    send('bad-nesting', { messageId: 'bad-3', headers: { deep } });
    send('ok-4');

    await waitFor(async () => (await queueDepth(amqp.connection, dlqName(queue))) === 3, 'three dead letters');
    await waitFor(() => fn.bodies().length === 4, 'the four good messages');
    expect(fn.bodies().sort()).toEqual(['ok-1', 'ok-2', 'ok-3', 'ok-4']);

    const dead = await drain(dlqName(queue));
    const byId = Object.fromEntries(dead.map((m) => [m.properties.messageId, m]));
    expect(Object.keys(byId).sort()).toEqual(['bad-1', 'bad-2', 'bad-3']);
    for (const message of dead) {
      expect(message.properties.headers).toMatchObject({
        'x-error-class': 'unrepresentable',
        'x-error-name': 'UnrepresentableMessageError',
        'x-original-queue': queue,
        'x-attempts': 1,
      });
    }
    expect(String(byId['bad-1']!.properties.headers!['x-error-message'])).toContain('timestamp: timestamp 10000000000000 is not a date');
    expect(String(byId['bad-2']!.properties.headers!['x-error-message'])).toContain('headers.when');
    expect(String(byId['bad-3']!.properties.headers!['x-error-message'])).toContain('nested deeper than 64 levels');
    // The copies keep the body and what could be kept of the properties; what had to change is noted.
    expect(byId['bad-1']!.content.toString()).toBe('bad-timestamp');
    expect(byId['bad-1']!.properties.timestamp).toBe(10 ** 13);
    expect(byId['bad-2']!.properties.headers!['x-truncated-headers']).toBeUndefined();
    expect(byId['bad-3']!.properties.headers!['x-truncated-headers']).toMatch(/nested deeper than 64 levels/);

    await waitFor(async () => (await queueDepth(amqp.connection, queue)) === 0, 'the work queue drained');
    expect(runner.triggers[0]!.counts).toMatchObject({ received: 7, deadLettered: 3, acked: 7, requeued: 0, rejected: 0 });
  });

  it('survives headers amqplib could not decode before its patch: nesting 10,000 deep, a "__proto__" key', async () => {
    const queue = uniqueQueue('trigger-deep');
    const fn = recorder();
    const { runner } = await start(
      [trigger(queue, { functionKey: 'fn', batchSize: 10, maximumBatchingWindow: 0.3 })],
      { fn: fn.handler },
      { deadLetterExchange: 'dlx' },
    );
    const raw = await openRawPublisher(AMQP_URL);
    try {
      await raw.publish('', queue, Buffer.from('ok-1'), {});
      // Unpatched, amqplib's recursive decoder overflowed the stack on this header and closed the consumer's
      // connection, every time the broker redelivered it.
      await raw.publish('', queue, Buffer.from('deep'), { messageId: 'deep', headers: { deep: nested(10_000, 'A', { t: 'I', v: 1 }) } });
      await raw.publish('', queue, Buffer.from('proto'), {
        messageId: 'proto',
        headers: [
          ['__proto__', { t: 'F', v: { polluted: { t: 't', v: true } } }],
          ['kept', { t: 'S', v: 'yes' }],
        ],
      });
      await raw.publish('', queue, Buffer.from('ok-2'), {});
    } finally {
      await raw.close();
    }
    await waitFor(() => fn.bodies().length === 3, 'the representable messages');
    await waitFor(async () => (await queueDepth(amqp.connection, dlqName(queue))) === 1, 'the deep one dead-lettered');
    expect(fn.bodies().sort()).toEqual(['ok-1', 'ok-2', 'proto']);
    const [dead] = await drain(dlqName(queue));
    expect(dead!.properties.messageId).toBe('deep');
    expect(dead!.properties.headers).toMatchObject({ 'x-error-class': 'unrepresentable' });
    expect(String(dead!.properties.headers!['x-error-message'])).toContain('nested deeper than 64 levels');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // One connection all along: the consumer never died.
    expect(runner.triggers[0]!.counts).toMatchObject({ received: 4, acked: 4, requeued: 0 });
  });

  it('reads headers shaped like amqplib\u2019s typed values as tables, and dead-letters a message carrying them once, connection intact', async () => {
    // Found by test/fault/broker-fuzz. {'!': 'timestamp', value: 'soon'} is a table any client may send: it was
    // refused as unrepresentable, and its dead-letter copy carried a NaN double, which RabbitMQ refuses by
    // closing the whole connection (541), consumers included, on every redelivery; {'!': 'decimal', value: 'x'}
    // made amqplib throw on the copy, and the message was requeued for ever.
    const queue = uniqueQueue('trigger-typed');
    const fn = recorder();
    const { runner } = await start(
      [trigger(queue, { functionKey: 'fn', batchSize: 10, maximumBatchingWindow: 0.3 })],
      { fn: fn.handler },
      { deadLetterExchange: 'dlx' },
    );
    const typedLooking = {
      soon: {
        t: 'F',
        v: [
          ['!', { t: 'S', v: 'timestamp' }],
          ['value', { t: 'S', v: 'soon' }],
        ],
      },
      dec: {
        t: 'F',
        v: [
          ['!', { t: 'S', v: 'decimal' }],
          ['value', { t: 'S', v: 'x' }],
        ],
      },
      bare: { t: 'F', v: [['!', { t: 'S', v: 'timestamp' }]] },
    } as const;
    const raw = await openRawPublisher(AMQP_URL);
    try {
      await raw.publish('', queue, Buffer.from('ok-1'), {});
      await raw.publish('', queue, Buffer.from('typed-ok'), { messageId: 'typed-ok', headers: typedLooking });
      // Unrepresentable for its timestamp: dead-lettered by the trigger, with the same headers on the copy.
      await raw.publish('', queue, Buffer.from('typed-dead'), { messageId: 'typed-dead', timestamp: 10n ** 13n, headers: typedLooking });
      await raw.publish('', queue, Buffer.from('ok-2'), {});
    } finally {
      await raw.close();
    }
    await waitFor(async () => (await queueDepth(amqp.connection, dlqName(queue))) === 1, 'the unrepresentable one dead-lettered');
    await waitFor(() => fn.bodies().length === 3, 'the three representable messages');
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) === 0, 'the work queue drained');
    expect(fn.bodies().sort()).toEqual(['ok-1', 'ok-2', 'typed-ok']);
    const [dead] = await drain(dlqName(queue));
    expect(dead!.properties.messageId).toBe('typed-dead');
    expect(dead!.properties.headers).toMatchObject({
      'x-error-class': 'unrepresentable',
      soon: { '(!)': 'timestamp', value: 'soon' },
      dec: { '(!)': 'decimal', value: 'x' },
    });
    expect(String(dead!.properties.headers!['x-error-message'])).toContain('timestamp: timestamp 10000000000000');
    // Once, on one connection: nothing requeued, nothing received twice.
    expect(runner.triggers[0]!.counts).toMatchObject({ received: 4, deadLettered: 1, acked: 4, requeued: 0, rejected: 0 });
  });

  it('without a dead-letter exchange, rejects such a message to the queue\u2019s own dead-lettering', async () => {
    const queue = uniqueQueue('trigger-reject');
    const fn = recorder();
    const { runner } = await start([trigger(queue, { functionKey: 'fn', maximumBatchingWindow: 0.1 })], { fn: fn.handler });
    amqp.channel.sendToQueue(queue, Buffer.from('ok'), {});
    amqp.channel.sendToQueue(queue, Buffer.from('bad'), { messageId: 'bad', timestamp: 10 ** 13 });
    // The runner declared the queue with x-dead-letter-exchange dlx: the rejected message lands in its DLQ.
    await waitFor(async () => (await queueDepth(amqp.connection, dlqName(queue))) === 1, 'the rejected message in the DLQ');
    const [dead] = await drain(dlqName(queue));
    expect(dead!.properties.messageId).toBe('bad');
    expect((dead!.properties.headers!['x-death'] as Array<{ reason: string }>)[0]!.reason).toBe('rejected');
    expect(fn.bodies()).toEqual(['ok']);
    expect(runner.triggers[0]!.counts).toMatchObject({ rejected: 1, acked: 1 });
  });

  it('a failing invocation requeues its records but not the message already dead-lettered', async () => {
    const queue = uniqueQueue('trigger-mixed');
    const fn = recorder((call) => call === 1);
    const { runner } = await start(
      [trigger(queue, { functionKey: 'fn', batchSize: 5, maximumBatchingWindow: 0.3 })],
      { fn: fn.handler },
      { deadLetterExchange: 'dlx' },
    );
    amqp.channel.sendToQueue(queue, Buffer.from('a'), {});
    amqp.channel.sendToQueue(queue, Buffer.from('bad'), { messageId: 'bad', timestamp: 10 ** 13 });
    amqp.channel.sendToQueue(queue, Buffer.from('b'), {});
    await waitFor(() => fn.calls.length >= 2 && fn.bodies().filter((b) => b === 'a').length === 2, 'the batch failed once, then succeeded');
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) === 0, 'the work queue drained');
    expect(fn.calls.map((call) => call.bodies.sort())).toEqual([
      ['a', 'b'],
      ['a', 'b'],
    ]);
    expect(await queueDepth(amqp.connection, dlqName(queue))).toBe(1);
    expect(runner.triggers[0]!.counts).toMatchObject({ deadLettered: 1, requeued: 2, acked: 3 });
  });

  it('cuts batches before 6 MB of invocation payload, and dead-letters a record that can never fit', async () => {
    const queue = uniqueQueue('trigger-size');
    const fn = recorder();
    const definition = trigger(queue, { functionKey: 'fn', batchSize: 10, maximumBatchingWindow: 1 });
    const { runner } = await start([definition], { fn: fn.handler }, { deadLetterExchange: 'dlx' });

    // The largest body whose record still fits an invocation alone, found with the trigger's own measure on
    // the properties the consumer will see (amqplib always sends a headers table).
    const arn = localEventSourceArn();
    const room = MAX_INVOCATION_PAYLOAD_BYTES - envelopeBytes(arn, `${queue}::/`);
    const recordBytes = (size: number) =>
      messageBytes(
        toRabbitMQMessage({ content: Buffer.alloc(size), fields: { redelivered: false }, properties: { headers: {}, messageId: 'edge' } }),
      );
    let fits = Math.floor((room * 3) / 4);
    while (recordBytes(fits) > room) fits--;
    while (recordBytes(fits + 1) <= room) fits++;

    const body = (tag: string, size: number) => Buffer.concat([Buffer.from(tag.padEnd(8, '.')), Buffer.alloc(size - 8, 0x61)]);
    const send = (tag: string, size: number) => amqp.channel.sendToQueue(queue, body(tag, size), { messageId: 'edge' });
    send('two-a', 2_000_000);
    send('two-b', 2_000_000);
    send('small-1', 100);
    send('two-c', 2_000_000); // would push the first batch past 6 MB: starts the next one
    send('edge', fits); // exactly as large as a record can be: invoked alone
    send('over', fits + 3); // one base64 quantum more: can never be sent
    send('huge', 7_000_000);
    send('small-2', 100);

    await waitFor(async () => (await queueDepth(amqp.connection, dlqName(queue))) === 2, 'two dead letters');
    await waitFor(() => fn.bodies().length === 6, 'every message that fits');
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) === 0, 'the work queue drained');

    for (const call of fn.calls) expect(call.payloadBytes).toBeLessThanOrEqual(MAX_INVOCATION_PAYLOAD_BYTES);
    // The edge record went alone, within one base64 quantum (4 bytes) of the limit.
    const edge = fn.calls.find((call) => call.bodies[0]!.startsWith('edge'))!;
    expect(edge.bodies).toHaveLength(1);
    expect(edge.payloadBytes).toBeGreaterThan(MAX_INVOCATION_PAYLOAD_BYTES - 4);
    expect(fn.bodies().sort()).toEqual(['edge', 'small-1', 'small-2', 'two-a', 'two-b', 'two-c']);
    const dead = await drain(dlqName(queue));
    expect(dead.map((m) => m.content.subarray(0, 8).toString().replace(/\.+$/, '')).sort()).toEqual(['huge', 'over']);
    for (const message of dead) {
      expect(message.properties.headers).toMatchObject({ 'x-error-class': 'payload-too-large', 'x-error-name': 'PayloadTooLargeError' });
      expect(String(message.properties.headers!['x-error-message'])).toContain('AWS Lambda would drop it');
    }
    expect(runner.triggers[0]!.counts).toMatchObject({ received: 8, deadLettered: 2 });
  });

  it('filter criteria: invokes only what matches a pattern, acks the rest without invoking, and counts it', async () => {
    const queue = uniqueQueue('trigger-filter');
    queues.push(queue);
    const fn = recorder();
    // As osls takes them: two patterns, ORed; one on JSON bodies, one on plain-text bodies.
    const filterPatterns = [{ data: { kind: ['order'], quantity: [{ numeric: ['>', 2] }] } }, { data: [{ prefix: 'plain:' }] }];
    const made = testRunner([trigger(queue, { functionKey: 'fn', batchSize: 10, maximumBatchingWindow: 0.2, filterPatterns })], {
      fn: fn.handler,
    });
    runners.push(made.runner);
    await made.runner.start();
    const bodies = [
      '{"kind":"order","quantity":3}',
      '{"kind":"order","quantity":1}',
      '{"kind":"refund","quantity":9}',
      'plain: text',
      'other text',
      '{"kind":"order","quantity":5}',
    ];
    for (const body of bodies) amqp.channel.sendToQueue(queue, Buffer.from(body));
    await waitFor(() => made.runner.triggers[0]!.counts.received === 6, 'all six delivered');
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) === 0, 'the queue drained');
    await waitFor(() => fn.bodies().length === 3, 'the three that match');
    // Recorded bodies are named by their first 8 bytes.
    expect(fn.bodies().sort()).toEqual(['plain: t', '{"kind":', '{"kind":'].sort());
    expect(made.runner.triggers[0]!.counts).toMatchObject({ received: 6, filtered: 3, acked: 6, requeued: 0 });
  });

  it('refuses, at start, a pattern AWS would refuse, naming the function and the pattern', () => {
    const functions = {
      fn: { handler: 'h.handler', events: [{ rabbitmq: { queue: 'q', filterPatterns: [{ data: { n: [{ numeric: ['>', 'x'] }] } }] } }] },
    };
    expect(() => triggersFromFunctions(functions, { service: 's', stage: 'dev' })).toThrow(
      /Function 'fn', event 1 \(rabbitmq\): filterPatterns: Filter pattern 1 at data\.n/,
    );
  });
});
