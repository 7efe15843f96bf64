/**
 * The runner's Prometheus endpoint (issue 14) after a known flow through the real broker, in-process handlers:
 * the counts it serves per function and queue are exactly what the flow makes the triggers count.
 *
 *   metricsA (batch size 1): ok-1, ok-2, fail-once (its first invocation throws: requeued, redelivered, then
 *            processed) and a message with no aws:rmq form (timestamp 10^13), dead-lettered by the trigger.
 *   metricsB (batch size 1, filter: body starts with "keep:"): keep:1, drop:1 (filtered out), keep:2.
 *
 * And the real `npm run worker` (shared/runner/worker.ts) serves the same on METRICS_PORT.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeRabbitMQEvent, type RabbitMQEvent } from 'middy-rabbitmq';
import { InProcessInvoker, Runner } from 'serverless-offline-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appHooks } from '../../shared/app/runner-hooks';
import { loadConfig } from '../../shared/config';
import { newEvent } from '../../shared/events';
import { createLogger } from '../../shared/logging';
import { dlqName } from '../../shared/messaging';
import { openStore, type Store } from '../../shared/store';
import { AMQP_URL, openTestAmqp, queueDepth, type TestAmqp } from '../support/amqp';
import { publishOrderPlaced } from '../support/orders';
import { freePort } from '../support/ports';
import { reservationFunction } from '../support/reservation-function';
import { deleteQueues, LogCapture, testRunner, trigger, uniqueQueue, waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';
import { killAll, spawnWorker, type WorkerProcess } from '../support/worker-process';

/** `name{labels} value` lines of the text format, as `name{labels}` -> value. */
function samples(text: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    map.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return map;
}

describe('the runner serves its triggers’ counts for Prometheus', () => {
  const queueA = uniqueQueue('metrics-a');
  const queueB = uniqueQueue('metrics-b');
  const queueC = uniqueQueue('metrics-c');
  const seen: string[] = [];
  const failed = new Set<string>();
  let amqp: TestAmqp;
  let runner: Runner;
  let url: string;

  const handler = async (event: RabbitMQEvent) => {
    for (const record of decodeRabbitMQEvent(event)) {
      const body = record.body.toString();
      seen.push(body);
      if (body === 'fail-once' && !failed.has(body)) {
        failed.add(body);
        throw new Error('first invocation fails');
      }
      if (body === 'slow-once' && !failed.has(body)) {
        failed.add(body);
        await new Promise((resolve) => setTimeout(resolve, 1_000)); // past metricsC's 0.3 s timeout
      }
    }
  };

  beforeAll(async () => {
    amqp = await openTestAmqp();
    const env = { AMQP_URL };
    runner = new Runner({
      urls: loadConfig(env).amqpUrls,
      env,
      hooks: appHooks({ relayStore: false }),
      triggers: [
        trigger(queueA, { functionKey: 'metricsA', batchSize: 1, maximumBatchingWindow: 0.05 }),
        trigger(queueC, { functionKey: 'metricsC', batchSize: 1, maximumBatchingWindow: 0.05, timeout: 0.3 }),
        trigger(queueB, {
          functionKey: 'metricsB',
          batchSize: 1,
          maximumBatchingWindow: 0.05,
          filterPatterns: [{ data: [{ prefix: 'keep:' }] }],
        }),
      ],
      invoker: new InProcessInvoker(async () => handler),
      logger: createLogger({ level: 'debug', destination: new LogCapture() }),
      deadLetterExchange: 'dlx',
      requeueDelayMs: 50,
      metricsPort: 0,
    });
    await runner.start();
    url = (await runner.metricsUrl())!;
  });

  afterAll(async () => {
    await runner?.stop();
    await deleteQueues(amqp, [queueA, queueB, queueC]);
    await amqp?.close();
  });

  it('counts invocations, records received, acked, requeued, dead-lettered, filtered and rejected exactly', async () => {
    expect(url).toMatch(/^http:\/\/localhost:\d+\/metrics$/);
    const send = (queue: string, body: string, options: Record<string, unknown> = {}) =>
      amqp.channel.sendToQueue(queue, Buffer.from(body), { persistent: true, ...options });
    for (const body of ['ok-1', 'ok-2', 'fail-once']) send(queueA, body);
    send(queueA, 'bad-timestamp', { messageId: 'bad-1', timestamp: 10 ** 13 }); // no Date holds it: no aws:rmq form
    for (const body of ['keep:1', 'drop:1', 'keep:2']) send(queueB, body);

    const a = `function="metricsA",queue="${queueA}"`;
    const b = `function="metricsB",queue="${queueB}"`;
    const read = async () => {
      const response = await fetch(url);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      return response.text();
    };
    await waitFor(
      async () => {
        const s = samples(await read());
        return s.get(`rabbitmq_trigger_records_acked_total{${a}}`) === 4 && s.get(`rabbitmq_trigger_records_acked_total{${b}}`) === 3;
      },
      'every message of the flow to be settled',
      20_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 300)); // nothing more is to come
    const text = await read();
    const s = samples(text);
    const expected: Record<string, [number, number]> = {
      // metric: [metricsA, metricsB]
      rabbitmq_trigger_invocations_total: [4, 2],
      rabbitmq_trigger_failed_invocations_total: [1, 0],
      rabbitmq_trigger_records_received_total: [5, 3],
      rabbitmq_trigger_records_acked_total: [4, 3],
      rabbitmq_trigger_records_requeued_total: [1, 0],
      rabbitmq_trigger_records_dead_lettered_total: [1, 0],
      rabbitmq_trigger_records_filtered_total: [0, 1],
      rabbitmq_trigger_records_rejected_total: [0, 0],
    };
    const got = Object.fromEntries(Object.keys(expected).map((name) => [name, [s.get(`${name}{${a}}`), s.get(`${name}{${b}}`)]]));
    expect(got, text).toEqual(expected);
    // The function's side: the handler returned no batch report (it is not a queueFunction), one invocation threw;
    // every invocation was timed; no message carried an AMQP timestamp a date can hold.
    const fn: Record<string, [number, number]> = {
      rabbitmq_function_unreported_invocations_total: [3, 2],
      'rabbitmq_function_errors_total{kind="error"}': [1, 0],
      'rabbitmq_function_errors_total{kind="timeout"}': [0, 0],
      'rabbitmq_function_records_total{outcome="processed"}': [0, 0],
      rabbitmq_function_batch_duration_seconds_count: [4, 2],
      rabbitmq_trigger_message_age_seconds_count: [0, 0],
    };
    const labelled = (name: string, labels: string) => {
      const [metric, extra] = name.split('{');
      return s.get(`${metric}{${labels}${extra ? `,${extra.slice(0, -1)}` : ''}}`);
    };
    expect(Object.fromEntries(Object.keys(fn).map((name) => [name, [labelled(name, a), labelled(name, b)]])), text).toEqual(fn);
    for (const name of Object.keys(expected)) {
      expect(text).toContain(`# TYPE ${name} counter`);
      expect(text).toMatch(new RegExp(`# HELP ${name} \\S`));
    }
    expect(s.get(`rabbitmq_trigger_state{${a},state="Enabled"}`)).toBe(1);
    expect(s.get(`rabbitmq_trigger_state{${a},state="Failed"}`)).toBe(0);
    // The flow as the handler and the broker saw it.
    expect(seen.filter((body) => body === 'fail-once')).toHaveLength(2);
    expect(seen).not.toContain('drop:1');
    expect(await queueDepth(amqp.connection, dlqName(queueA))).toBe(1);
    // The same numbers npm run status shows.
    const status = runner.mappings().find((m) => m.Local.functionKey === 'metricsA')!;
    expect(status.Local.counts).toMatchObject({ invocations: 4, received: 5, acked: 4, requeued: 1, deadLettered: 1 });
  }, 30_000);

  it('counts an invocation that outlived its timeout as a timeout error; its batch came back and went through', async () => {
    amqp.channel.sendToQueue(queueC, Buffer.from('slow-once'), { persistent: true });
    const c = `function="metricsC",queue="${queueC}"`;
    let s = new Map<string, number>();
    await waitFor(
      async () => {
        s = samples(await (await fetch(url)).text());
        return s.get(`rabbitmq_trigger_records_acked_total{${c}}`) === 1;
      },
      'the slow message settled',
      20_000,
    );
    expect({
      invocations: s.get(`rabbitmq_trigger_invocations_total{${c}}`),
      requeued: s.get(`rabbitmq_trigger_records_requeued_total{${c}}`),
      timeout: s.get(`rabbitmq_function_errors_total{${c},kind="timeout"}`),
      error: s.get(`rabbitmq_function_errors_total{${c},kind="error"}`),
      durations: s.get(`rabbitmq_function_batch_duration_seconds_count{${c}}`),
      unreported: s.get(`rabbitmq_function_unreported_invocations_total{${c}}`),
    }).toEqual({ invocations: 2, requeued: 1, timeout: 1, error: 0, durations: 2, unreported: 1 });
  });

  it('answers 404 elsewhere, and stops serving when the runner stops', async () => {
    expect((await fetch(url.replace('/metrics', '/'))).status).toBe(404);
    await runner.stop();
    await expect(fetch(url)).rejects.toThrow();
  });
});

describe('the functions’ record outcomes, batch durations and message ages, in-process', () => {
  // The real middleware (the app's queue-function wiring, test/support/reservation-function.ts) on a SQLite file.
  const queue = uniqueQueue('metrics-fn');
  const dir = mkdtempSync(join(tmpdir(), 'metrics-fn-'));
  const series = `function="reserve",queue="${queue}"`;
  let amqp: TestAmqp;
  let store: Store;
  let runner: Runner;
  let url: string;

  beforeAll(async () => {
    amqp = await openTestAmqp();
    store = await openStore({ sqlitePath: join(dir, 'app.sqlite') });
    await store.stock.upsert({ widget: 100, flaky: 10 });
    const handler = reservationFunction({ store, logger: createLogger({ level: 'silent' }), retryDelaysMs: [200, 400] });
    ({ runner } = testRunner(
      [
        trigger(queue, {
          functionKey: 'reserve',
          batchSize: 10,
          maximumBatchingWindow: 0.1,
          filterPatterns: [{ data: { event_type: ['OrderPlaced'] } }],
        }),
      ],
      { reserve: handler },
      { env: { RETRY_DELAYS_MS: '200,400' }, metricsPort: 0 },
    ));
    await runner.start();
    url = (await runner.metricsUrl())!;
  });

  afterAll(async () => {
    await runner?.stop();
    await store?.close();
    await deleteQueues(amqp, [queue]);
    await amqp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts 5 orders, 2 duplicates, 1 retried then processed, 1 poison message and 1 filtered record exactly', async () => {
    // Published two minutes ago, as far as their AMQP timestamps tell: each delivery is 120 s old or a little more.
    const sentAt = Math.floor(Date.now() / 1000) - 120;
    const send = (body: string | object, properties: Record<string, unknown> = {}) => {
      const event = typeof body === 'object' ? (body as { event_id: string; event_type: string }) : undefined;
      amqp.channel.sendToQueue(queue, Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), {
        persistent: true,
        contentType: 'application/json',
        timestamp: sentAt,
        ...(event ? { messageId: event.event_id, type: event.event_type } : {}),
        ...properties,
      });
    };
    const orders = Array.from({ length: 5 }, (_, i) =>
      newEvent('OrderPlaced', { order_id: randomUUID(), user_id: `u-${i}`, item: 'widget', quantity: 1 }),
    );
    for (const order of orders) send(order);
    send(newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'u-f', item: 'flaky', quantity: 1 })); // fails once
    // A poison message: an OrderPlaced the schema refuses (valid JSON, so the filter lets it through); no timestamp: no age.
    send({ event_id: 'poison-1', event_type: 'OrderPlaced', quantity: 'lots' }, { timestamp: undefined });
    send({ event_id: 'other-1', event_type: 'PriceChanged' }); // matches no filter pattern
    const value = async (name: string, labels = series) => samples(await (await fetch(url)).text()).get(`${name}{${labels}}`);
    const outcome = (name: string) => `${series},outcome="${name}"`;
    await waitFor(
      async () => (await value('rabbitmq_function_records_total', outcome('processed'))) === 6,
      'the six orders processed',
      20_000,
    );
    // Two of the orders again, as a publisher retrying after a lost confirm would send them.
    send(orders[0]!);
    send(orders[3]!);
    await waitFor(async () => (await value('rabbitmq_function_records_total', outcome('duplicate'))) === 2, 'both duplicates seen', 20_000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // nothing more is to come

    const text = await (await fetch(url)).text();
    const s = samples(text);
    const get = (name: string, extra = '') => s.get(`${name}{${series}${extra}}`);
    expect(
      Object.fromEntries(
        ['processed', 'duplicate', 'retried', 'dead_lettered'].map((o) => [o, get('rabbitmq_function_records_total', `,outcome="${o}"`)]),
      ),
      text,
    ).toEqual({ processed: 6, duplicate: 2, retried: 1, dead_lettered: 1 });
    expect(get('rabbitmq_trigger_records_filtered_total')).toBe(1);
    // 5 orders + their retry + 2 duplicates + the poison message + the filtered one; all acked.
    expect(get('rabbitmq_trigger_records_received_total')).toBe(11);
    expect(get('rabbitmq_trigger_records_acked_total')).toBe(11);
    expect(get('rabbitmq_function_unreported_invocations_total')).toBe(0);
    for (const kind of ['error', 'timeout', 'not_loaded']) expect(get('rabbitmq_function_errors_total', `,kind="${kind}"`)).toBe(0);
    // One duration per invocation; batching decides how many there were.
    const invocations = get('rabbitmq_trigger_invocations_total')!;
    expect(invocations).toBeGreaterThanOrEqual(3);
    expect(get('rabbitmq_function_batch_duration_seconds_count')).toBe(invocations);
    expect(get('rabbitmq_function_batch_duration_seconds_bucket', ',le="+Inf"')).toBe(invocations);
    expect(get('rabbitmq_function_batch_duration_seconds_sum')).toBeGreaterThan(0);
    // An age for every delivery with a timestamp (all but the poison message; the retry keeps its timestamp),
    // each between two and five minutes.
    expect(get('rabbitmq_trigger_message_age_seconds_count')).toBe(10);
    expect(get('rabbitmq_trigger_message_age_seconds_bucket', ',le="60"')).toBe(0);
    expect(get('rabbitmq_trigger_message_age_seconds_bucket', ',le="300"')).toBe(10);
    expect(get('rabbitmq_trigger_message_age_seconds_sum')).toBeGreaterThanOrEqual(1_200);
    expect(text).toContain('# TYPE rabbitmq_function_records_total counter');
    expect(text).toContain('# TYPE rabbitmq_function_batch_duration_seconds histogram');
    expect(text).toContain('# TYPE rabbitmq_trigger_message_age_seconds histogram');
    // What the store and the broker say of the same flow.
    expect((await store.stock.get('widget'))?.available).toBe(95);
    expect((await store.stock.get('flaky'))?.available).toBe(9);
    expect(await queueDepth(amqp.connection, dlqName(queue))).toBe(1);
  }, 60_000);
});

describe('npm run worker serves its metrics on METRICS_PORT', () => {
  const dir = mkdtempSync(join(tmpdir(), 'metrics-worker-'));
  const workers: WorkerProcess[] = [];
  let vhost: TestVhost;
  let amqp: VhostAmqp;

  beforeAll(async () => {
    vhost = await createVhost('metrics-worker');
    amqp = await openAmqp(vhost.url);
  }, 120_000);

  afterAll(async () => {
    await killAll(workers);
    await amqp?.close();
    await vhost?.remove();
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('counts one order and one message with no aws:rmq form through inventoryReservation exactly', async () => {
    const port = await freePort();
    const worker = spawnWorker(
      { AMQP_URL: vhost.url, SQLITE_PATH: join(dir, 'app.sqlite'), METRICS_PORT: String(port), LOG_FORMAT: 'json' },
      { args: ['--functions', 'inventoryReservation'] },
    );
    workers.push(worker);
    await waitFor(
      () => worker.output().includes('"message":"serving metrics"') && worker.output().includes('"message":"consuming"'),
      `the worker to consume and serve its metrics. Output so far:\n${worker.output()}`,
      90_000,
    );
    const url = `http://localhost:${port}/metrics`;
    expect(worker.output()).toContain(`"url":"${url}"`);

    await publishOrderPlaced(amqp.channel, [
      newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'u-1', item: 'Burger', quantity: 1 }),
    ]);
    amqp.channel.publish('orders', 'order.placed', Buffer.from('{}'), { messageId: 'bad-1', timestamp: 10 ** 13 });
    await amqp.channel.waitForConfirms();

    const series = 'function="inventoryReservation",queue="order-events"';
    let s = new Map<string, number>();
    await waitFor(
      async () => {
        s = samples(await (await fetch(url)).text());
        return s.get(`rabbitmq_trigger_records_acked_total{${series}}`) === 2;
      },
      'both messages settled',
      30_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${worker.output().slice(-4_000)}`);
    });
    const names = [
      'invocations',
      'failed_invocations',
      ...['received', 'acked', 'requeued', 'dead_lettered', 'filtered', 'rejected'].map((c) => `records_${c}`),
    ];
    expect(Object.fromEntries(names.map((n) => [n, s.get(`rabbitmq_trigger_${n}_total{${series}}`)]))).toEqual({
      invocations: 1,
      failed_invocations: 0,
      records_received: 2,
      records_acked: 2,
      records_requeued: 0,
      records_dead_lettered: 1,
      records_filtered: 0,
      records_rejected: 0,
    });
    // What the function's middleware did, learnt from its batch report in the worker's process; the order's age.
    const fn = (name: string, extra = '') => s.get(`${name}{${series}${extra}}`);
    expect({
      processed: fn('rabbitmq_function_records_total', ',outcome="processed"'),
      duplicate: fn('rabbitmq_function_records_total', ',outcome="duplicate"'),
      dead_lettered: fn('rabbitmq_function_records_total', ',outcome="dead_lettered"'),
      unreported: fn('rabbitmq_function_unreported_invocations_total'),
      durations: fn('rabbitmq_function_batch_duration_seconds_count'),
      ages: fn('rabbitmq_trigger_message_age_seconds_count'),
    }).toEqual({ processed: 1, duplicate: 0, dead_lettered: 0, unreported: 0, durations: 1, ages: 1 });
    // Only the function asked for.
    expect([...s.keys()].filter((k) => k.includes('function="notification"'))).toEqual([]);
    await worker.kill('SIGINT');
  }, 150_000);
});
