import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Context } from 'aws-lambda';
import { decodeRabbitMQEvent, type RabbitMQEvent } from 'middy-rabbitmq';
import type { Runner } from 'serverless-offline-rabbitmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventProperties, newEvent } from '../../shared/events';
import { openStore } from '../../shared/store';
import { getMessage, openTestAmqp, purgeQueues, queueDepth, type TestAmqp } from '../support/amqp';
import { brokerControl } from '../support/broker-control';
import { deleteQueues, type TestHandler, testRunner, trigger, uniqueQueue, waitFor } from '../support/runner';
import { spawnWorker } from '../support/worker-process';

const awsSample = JSON.parse(
  readFileSync(new URL('../fixtures/aws-samples/rabbitmq-event-aws-sample.json', import.meta.url), 'utf8'),
) as RabbitMQEvent;

interface Seen {
  event: RabbitMQEvent;
  context: Context;
  bodies: string[];
  redelivered: boolean[];
}

/** A handler that records every invocation, optionally failing or stalling. */
function recorder(behaviour: (call: number, seen: Seen) => Promise<void> | void = () => undefined) {
  const calls: Seen[] = [];
  const handler: TestHandler = async (event, context) => {
    const records = decodeRabbitMQEvent(event);
    const seen = {
      event,
      context,
      bodies: records.map((r) => r.body.toString()),
      redelivered: records.map((r) => r.redelivered),
    };
    calls.push(seen);
    await behaviour(calls.length, seen);
  };
  return { calls, handler, bodies: () => calls.flatMap((c) => c.bodies) };
}

describe('RabbitMQ-trigger runner (real broker)', () => {
  let amqp: TestAmqp;
  const queues: string[] = [];
  const runners: Runner[] = [];

  const publish = (queue: string, bodies: string[], options: Record<string, unknown> = {}) => {
    for (const body of bodies) amqp.channel.sendToQueue(queue, Buffer.from(body), { persistent: true, ...options });
  };
  const start = async (...args: Parameters<typeof testRunner>) => {
    const made = testRunner(...args);
    runners.push(made.runner);
    for (const t of args[0]) queues.push(t.queue);
    await made.runner.start();
    return made;
  };
  const range = (n: number, prefix = 'm') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

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

  it('invokes when batchSize messages are in hand', async () => {
    const queue = uniqueQueue();
    const fn = recorder();
    // The window is long, so only a full batch can start an invocation quickly.
    const { runner } = await start([trigger(queue, { functionKey: 'sized', batchSize: 5, maximumBatchingWindow: 30 })], {
      sized: fn.handler,
    });
    publish(queue, range(10));
    await waitFor(() => fn.calls.length === 2, 'two full batches');
    expect(fn.calls.map((c) => c.bodies.length)).toEqual([5, 5]);
    expect(fn.bodies()).toEqual(range(10));
    await runner.stop();
  });

  it('invokes with what arrived when the batching window ends', async () => {
    const queue = uniqueQueue();
    const fn = recorder();
    await start([trigger(queue, { functionKey: 'windowed', batchSize: 100, maximumBatchingWindow: 0.3 })], {
      windowed: fn.handler,
    });
    publish(queue, range(3));
    await waitFor(() => fn.calls.length === 1, 'one windowed batch');
    await sleep(500);
    expect(fn.calls).toHaveLength(1);
    expect(fn.calls[0]!.bodies).toEqual(range(3));
  });

  it('sends exactly the aws:rmq event shape, with a Lambda context', async () => {
    const queue = uniqueQueue();
    const fn = recorder();
    await start([trigger(queue, { functionKey: 'shape', timeout: 7 })], { shape: fn.handler });
    publish(queue, ['{"hello":"world"}'], {
      contentType: 'application/json',
      headers: { header1: 'value1', numberInHeader: 10 },
      messageId: 'm-1',
      timestamp: 2021,
    });
    await waitFor(() => fn.calls.length === 1, 'the invocation');
    const { event, context } = fn.calls[0]!;
    expect(Object.keys(event)).toEqual(Object.keys(awsSample));
    expect(event.eventSource).toBe('aws:rmq');
    expect(event.eventSourceArn).toMatch(/^arn:aws:mq:[a-z0-9-]+:\d{12}:broker:[\w-]+:b-[0-9a-f-]{36}$/);
    expect(Object.keys(event.rmqMessagesByQueue)).toEqual([`${queue}::/`]);
    const [message] = event.rmqMessagesByQueue[`${queue}::/`]!;
    const sampleMessage = Object.values(awsSample.rmqMessagesByQueue)[0]![0]!;
    expect(Object.keys(message!)).toEqual(Object.keys(sampleMessage));
    expect(Object.keys(message!.basicProperties)).toEqual(Object.keys(sampleMessage.basicProperties));
    expect(message!.basicProperties.headers).toEqual({
      header1: { bytes: [118, 97, 108, 117, 101, 49] },
      numberInHeader: 10,
    });
    expect(message!.basicProperties.timestamp).toBe('Jan 1, 1970, 12:33:41 AM');
    expect(message!.basicProperties.correlationId).toBeNull();
    expect(message!.basicProperties.bodySize).toBe(17);
    expect(Buffer.from(message!.data, 'base64').toString()).toBe('{"hello":"world"}');
    expect(context.functionName).toBe('test-local-shape');
    expect(context.awsRequestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(context.getRemainingTimeInMillis()).toBeLessThanOrEqual(7_000);
    expect(context.getRemainingTimeInMillis()).toBeGreaterThan(0);
  });

  it('acks the whole batch on success', async () => {
    const queue = uniqueQueue();
    const fn = recorder();
    const { runner } = await start([trigger(queue, { functionKey: 'acker', batchSize: 4 })], { acker: fn.handler });
    publish(queue, range(8));
    await waitFor(() => fn.bodies().length === 8, 'all messages handled');
    await runner.stop();
    // Unacked messages would be back in the queue once the runner's channel closed.
    expect(await queueDepth(amqp.connection, queue)).toBe(0);
    expect(fn.calls.flatMap((c) => c.redelivered)).not.toContain(true);
  });

  it('redelivers every message of a batch whose handler throws', async () => {
    const queue = uniqueQueue();
    const fn = recorder((call) => {
      if (call === 1) throw new Error('database down');
    });
    const { logs } = await start([trigger(queue, { functionKey: 'thrower', batchSize: 3, maximumBatchingWindow: 0.3 })], {
      thrower: fn.handler,
    });
    publish(queue, range(3));
    await waitFor(() => fn.calls.length >= 2, 'the retried batch');
    expect(fn.calls[0]!.bodies).toEqual(range(3));
    expect(fn.calls[1]!.bodies.sort()).toEqual(range(3));
    expect(fn.calls[1]!.redelivered).toEqual([true, true, true]);
    expect(logs.lines.some((l) => l.message === 'invocation failed; the whole batch will be redelivered')).toBe(true);
  });

  it('redelivers the batch when the handler outlives its timeout', async () => {
    const queue = uniqueQueue();
    const fn = recorder(async (call) => {
      if (call === 1) await sleep(2_500);
    });
    const { logs } = await start([trigger(queue, { functionKey: 'slow', timeout: 1, batchSize: 2, maximumBatchingWindow: 0.1 })], {
      slow: fn.handler,
    });
    publish(queue, range(2));
    await waitFor(() => fn.calls.length >= 2, 'the redelivered batch');
    expect(fn.calls[1]!.bodies.sort()).toEqual(range(2));
    expect(fn.calls[1]!.redelivered).toEqual([true, true]);
    const failure = logs.lines.find((l) => l.message === 'invocation failed; the whole batch will be redelivered');
    expect(failure?.err).toMatchObject({ message: expect.stringMatching(/timed out after 1\.00 seconds/) });
  });

  it('waits before requeueing after failed invocations in a row (100 ms doubling), and starts again after a success', async () => {
    const queue = uniqueQueue();
    const fn = recorder((call) => {
      if (call <= 4 || call === 6) throw new Error('broker connection in backoff');
    });
    const { runner, logs } = await start([trigger(queue, { functionKey: 'backoff', batchSize: 1, maximumBatchingWindow: 0 })], {
      backoff: fn.handler,
    });
    publish(queue, ['first']);
    await waitFor(() => fn.calls.length === 5, 'four failures, then a success');
    expect(runner.triggers[0]!.describe().Local.requeueDelayMs).toBe(0);
    publish(queue, ['second']);
    await waitFor(() => fn.calls.length === 7, 'a failure, then a success');
    // The waits the trigger applied, as it reports them: doubling, then back to the first after a success.
    const waits = logs.lines
      .filter((l) => l.message === 'invocation failed; the whole batch will be redelivered')
      .map((l) => l.requeueDelayMs);
    expect(waits).toEqual([100, 200, 400, 800, 100]);
    // Five invocations for the first message, not a hot loop of redeliveries, and nothing overtook it.
    expect(fn.calls.map((c) => c.bodies)).toEqual([['first'], ['first'], ['first'], ['first'], ['first'], ['second'], ['second']]);
    expect(runner.triggers[0]!.counts).toMatchObject({ received: 7, failedInvocations: 5, requeued: 5, acked: 2 });
  });

  it('holds a failed batch unacknowledged during the backoff, and stop() does not wait it out', async () => {
    const queue = uniqueQueue();
    const fn = recorder(() => {
      throw new Error('down');
    });
    const { runner, logs } = await start(
      [trigger(queue, { functionKey: 'patient', batchSize: 1, maximumBatchingWindow: 0 })],
      { patient: fn.handler },
      { requeueDelayMs: 600_000, maxRequeueDelayMs: 600_000 },
    );
    publish(queue, ['held']);
    await waitFor(() => logs.lines.some((l) => l.message === 'invocation failed; the whole batch will be redelivered'), 'the failure');
    expect(runner.triggers[0]!.describe().Local.requeueDelayMs).toBe(600_000);
    expect(await queueDepth(amqp.connection, queue)).toBe(0); // unacknowledged, held by the trigger
    await runner.stop(); // a ten-minute wait would outlast the test's timeout
    // The broker applies the requeue asynchronously (CI once read 0 right after stop()), so poll for it.
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) === 1, 'the held message back in the queue');
    expect(fn.calls).toHaveLength(1);
  });

  it('runs one invocation at a time by default, more when configured', async () => {
    for (const concurrency of [1, 3]) {
      const queue = uniqueQueue();
      let active = 0;
      let peak = 0;
      const fn = recorder(async () => {
        active++;
        peak = Math.max(peak, active);
        await sleep(150);
        active--;
      });
      const { runner } = await start(
        [trigger(queue, { functionKey: 'conc', batchSize: 1, maximumBatchingWindow: 0 })],
        { conc: fn.handler },
        {
          concurrency,
        },
      );
      publish(queue, range(9));
      await waitFor(() => fn.bodies().length === 9, `9 messages at concurrency ${concurrency}`);
      expect(peak).toBe(concurrency);
      await runner.stop();
    }
  });

  it('keeps other functions running when one keeps failing', async () => {
    const good = uniqueQueue();
    const bad = uniqueQueue();
    const ok = recorder();
    const broken = recorder(() => {
      throw new Error('always broken');
    });
    await start([trigger(good, { functionKey: 'good' }), trigger(bad, { functionKey: 'bad', maximumBatchingWindow: 0 })], {
      good: ok.handler,
      bad: broken.handler,
    });
    publish(bad, ['poison']);
    await waitFor(() => broken.calls.length >= 3, 'the failing function to be retried');
    publish(good, range(5));
    await waitFor(() => ok.bodies().length === 5, 'the healthy function to process its messages');
  });

  it('recovers after the broker closes every connection, losing nothing', async () => {
    const queue = uniqueQueue();
    const fn = recorder();
    const { runner, logs } = await start([trigger(queue, { functionKey: 'survivor', batchSize: 5, maximumBatchingWindow: 0.1 })], {
      survivor: fn.handler,
    });
    publish(queue, range(5, 'before'));
    await waitFor(() => fn.bodies().length === 5, 'messages before the cut');

    await (await brokerControl()).closeAllConnections('test: forced close');
    amqp = await openTestAmqp(); // the test's own connection was closed too
    await waitFor(
      () => logs.lines.some((l) => l.message === 'channel closed; unacknowledged messages return to the queue; reconnecting'),
      'the runner to notice',
    );
    publish(queue, range(5, 'after'));
    await waitFor(() => new Set(fn.bodies()).size === 10, 'messages after the cut', 20_000);
    await runner.stop();
    expect(await queueDepth(amqp.connection, queue)).toBe(0);
    expect([...new Set(fn.bodies())].sort()).toEqual([...range(5, 'after'), ...range(5, 'before')].sort());
  });

  it('shuts down cleanly: finishes the batch in flight and returns the rest, losing nothing', async () => {
    const queue = uniqueQueue();
    let started!: () => void;
    const inFlight = new Promise<void>((resolve) => (started = resolve));
    const fn = recorder(async (call) => {
      if (call === 1) {
        started();
        await sleep(500);
      }
    });
    // The window is long, so the batch in flight is the first five messages whatever the timing (with 50 ms, a
    // runner or broker paused that long on a loaded machine handed on a batch of one: ['m0']).
    const { runner } = await start([trigger(queue, { functionKey: 'graceful', batchSize: 5, maximumBatchingWindow: 30 })], {
      graceful: fn.handler,
    });
    publish(queue, range(20));
    await inFlight;
    await runner.stop();
    const handled = fn.bodies();
    expect(handled).toEqual(range(5)); // only the batch that had started
    // The rest is back, none acked unfinished (polled: the broker applies requeues asynchronously).
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) === 15, 'the 15 unstarted messages back in the queue');
  });

  it('with the app\u2019s hooks, runs the outbox relay: an event left unpublished is sent once the runner is up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runner-outbox-'));
    const store = await openStore({ sqlitePath: join(dir, 'app.sqlite') });
    try {
      await purgeQueues(amqp.connection, ['order-events']);
      const event = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'u', item: 'widget', quantity: 1 });
      // As if intake had committed it while the broker was down.
      await store.outbox.add([
        {
          event_id: event.event_id,
          exchange: 'orders',
          routing_key: 'order.placed',
          body: event,
          properties: eventProperties(event, 'test'),
        },
      ]);
      const queue = uniqueQueue();
      await start([trigger(queue, { functionKey: 'idle' })], { idle: recorder().handler }, { relayStore: async () => store });
      const message = await getMessage(amqp.channel, 'order-events', 10_000);
      expect(message.properties.messageId).toBe(event.event_id);
      await waitFor(async () => (await store.outbox.backlog()) === 0, 'the row to be marked published');
    } finally {
      await Promise.all(runners.splice(0).map((runner) => runner.stop()));
      await store.close();
    }
  });

  it('npm run worker refuses a batch size and window AWS would refuse, with its message, before connecting', async () => {
    const worker = spawnWorker(
      // Nothing listens on port 1: had the worker tried to connect, it would say so.
      { AMQP_URL: 'amqp://guest:guest@127.0.0.1:1', AMQP_URLS: '', LOG_LEVEL: 'info' },
      { args: ['--service-dir', 'test/fixtures/offline-service-invalid'] },
    );
    expect(await worker.exited).toEqual({ code: 2, signal: null });
    expect(worker.output().trim()).toBe(
      "worker: Function 'tooLarge', event 1 (rabbitmq): AWS would refuse this event source mapping (CreateEventSourceMapping: ValidationException): " +
        "2 validation errors detected: Value '10001' at 'batchSize' failed to satisfy constraint: Member must have value less than or equal to 10000; " +
        "Value '301' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value less than or equal to 300",
    );
  });

  it('stops cleanly while it still cannot reach the broker, and stays stopped', async () => {
    const { runner, logs } = testRunner(
      [trigger(uniqueQueue(), { functionKey: 'unreachable' })],
      { unreachable: recorder().handler },
      {
        env: { AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' },
      },
    );
    const started = runner.start();
    await waitFor(() => logs.lines.some((l) => l.message === 'could not connect to RabbitMQ'), 'a failed connection attempt');
    await runner.stop();
    await started;
    const linesAtStop = logs.lines.length;
    await sleep(600);
    expect(runner.triggers.map((t) => t.status)).toEqual(['stopped']);
    expect(logs.lines.slice(linesAtStop)).toEqual([]);
  });
});
