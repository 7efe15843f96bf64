/**
 * Pipeline benchmark: orders through the whole queue side of the system, against the broker's own ceiling.
 *
 * The parent process creates a RabbitMQ virtual host of the benchmark's own (`bench`, so nobody else's tests
 * purge or feed its queues and it disturbs nobody's), then runs one child process per store (SQLite file, then a
 * fresh PostgreSQL schema: the configuration and the handlers' store are per process), collects their figures,
 * writes bench/results/pipeline.json and pipeline.md, and deletes the vhost and the schema, also on failure.
 *
 * Each child, with AMQP_URL pointing at the vhost:
 *   - runs the three real queue handlers (inventoryReservation, notification, orderStatus) in one Runner with an
 *     InProcessInvoker, with their triggers exactly as functions/*.yml define them, plus the outbox relay, as
 *     test/integration/flow.test.ts wires them (the topology is declared in the vhost by the runner; checked);
 *   - ceiling: a plain amqplib loop on the same broker and vhost, same message body: a confirm channel publishing
 *     N persistent messages into a fresh quorum queue (declared as the topology declares work queues) while a
 *     consumer (prefetch 200, one multiple-ack per 100, the runner's shape) drains it; messages/s from the first
 *     publish to the last ack. Measured before and after the pipeline phases; their mean is the ceiling;
 *   - warm-up (not reported), then burst: N orders inserted into the store first (as intake would: status
 *     `accepted`), then their OrderPlaced events published to the `orders` exchange as fast as a confirm channel
 *     takes them;
 *   - steady: orders inserted (one transaction per 20 ms tick) and published at a fixed rate for a fixed time;
 *   - an order is done when its status is reserved/rejected AND it is notified: its end time is the row's
 *     `updated_at`, written by the later of the two handlers' transactions (same process clock as the publish
 *     stamp, millisecond resolution); latency = end - publish. Afterwards every order is checked: decided,
 *     notified, exactly one notification, outbox empty.
 *
 *   npm run bench:pipeline [-- --stores sqlite,postgres --burst 2000 --steady-seconds 60 --rate auto]
 */

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ConfirmChannel } from 'amqplib';
import amqp from 'amqplib';
import type { RabbitMQEvent } from 'middy-rabbitmq';
import type { HandlerLoader, Invocation, Invoker, TriggerDefinition } from 'serverless-offline-rabbitmq';
import { appHooks } from '../shared/app/runner-hooks';
import { type Config, loadConfig } from '../shared/config';
import { createLogger } from '../shared/logging';
import { declareTopology, dlqName, topologyOptions } from '../shared/messaging';
import type { Store } from '../shared/store';
import { confirmChannel, countDone, orderEvent, type StoredBurst, storedBurst } from './orders';
import {
  bar,
  benchVhost,
  fmt,
  integerOption as int,
  type LatencySummary,
  machineFacts,
  postgresSchema,
  round,
  summarizeLatencies,
  vhostQueues,
  withTimeout,
  writeResultFile,
} from './support';

const serviceDir = resolve(fileURLToPath(new URL('..', import.meta.url)));
const thisFile = fileURLToPath(import.meta.url);
const COMMAND = 'npm run bench:pipeline';
const VHOST = 'bench';
const CONTRACT_QUEUES = ['order-events', 'inventory-events', 'order-status-events'];
const noop = () => undefined;

/**
 * Broker work per order, counted from the topology and the handlers:
 *   publishes (each with a publisher confirm): OrderPlaced -> `orders`; the outcome (InventoryReserved or
 *     InventoryFailed) -> `inventory`, once, fanned out by the broker to two queues;
 *   messages enqueued: order-events 1, inventory-events 1, order-status-events 1 = 3;
 *   deliveries: 3; acks: 3 messages, sent as one multiple-ack per batch by the runner.
 * "Operations" in the target's sense: 2 publishes + 3 deliveries = 5. One ceiling message costs 1 publish,
 * 1 enqueue, 1 delivery, 1 ack: in queue-message terms an order is worth 3 ceiling messages.
 */
const BROKER_WORK = { publishes: 2, confirms: 2, enqueues: 3, deliveries: 3, acks: 3, operations: 5, queueMessagesPerOrder: 3 } as const;
const TARGET_FRACTION = 0.5;

type StoreKind = 'sqlite' | 'postgres';

interface Options {
  stores: StoreKind[];
  burst: number;
  warmup: number;
  steadySeconds: number;
  /** Orders per second for the steady phase, or 'auto': half the burst throughput measured just before. */
  rate: number | 'auto';
  ceilingMessages: number;
  unknownShare: number;
  logLevel: string;
  /** Run each store's child under `node --cpu-prof`, writing its .cpuprofile into this directory. */
  cpuProfileDir: string | undefined;
  outDir: string;
  child: StoreKind | undefined;
  resultFile: string | undefined;
}

const usage = `Usage: npm run bench:pipeline -- [options]
  --stores LIST           sqlite,postgres (default both; PostgreSQL at TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test)
  --burst N               orders in the burst (default 2000)
  --warmup N              orders in an unreported warm-up burst (default 300)
  --steady-seconds S      how long orders are published at the steady rate (default 60)
  --rate N|auto           steady orders per second; auto = half the burst throughput of the same run (default auto)
  --ceiling-messages N    messages per ceiling measurement (default 20000)
  --unknown-share F       share of orders for an unknown item, rejected (default 0.1)
  --log-level LEVEL       LOG_LEVEL of the handlers (default warn: logging would dominate otherwise)
  --cpu-profile DIR       run each store's child under node --cpu-prof, profiles into DIR (slows it: not for the committed figures)
  --out-dir DIR           where pipeline.json and pipeline.md go (default bench/results)`;

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      stores: { type: 'string', default: 'sqlite,postgres' },
      burst: { type: 'string', default: '2000' },
      warmup: { type: 'string', default: '300' },
      'steady-seconds': { type: 'string', default: '60' },
      rate: { type: 'string', default: 'auto' },
      'ceiling-messages': { type: 'string', default: '20000' },
      'unknown-share': { type: 'string', default: '0.1' },
      'log-level': { type: 'string', default: 'warn' },
      'cpu-profile': { type: 'string' },
      'out-dir': { type: 'string', default: join(serviceDir, 'bench', 'results') },
      child: { type: 'string' },
      'result-file': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const stores = values.stores.split(',').map((s) => s.trim());
  for (const s of stores) if (s !== 'sqlite' && s !== 'postgres') throw new Error(`--stores: unknown store '${s}'`);
  const unknownShare = Number(values['unknown-share']);
  if (!(unknownShare >= 0 && unknownShare <= 1)) throw new Error('--unknown-share must be 0..1');
  const child = values.child as StoreKind | undefined;
  if (child !== undefined && child !== 'sqlite' && child !== 'postgres') throw new Error(`--child: unknown store '${child}'`);
  return {
    stores: stores as StoreKind[],
    burst: int('burst', values.burst, 1, 100_000),
    warmup: int('warmup', values.warmup, 0, 100_000),
    steadySeconds: int('steady-seconds', values['steady-seconds'], 0, 600),
    rate: values.rate === 'auto' ? 'auto' : int('rate', values.rate, 1, 100_000),
    ceilingMessages: int('ceiling-messages', values['ceiling-messages'], 100, 1_000_000),
    unknownShare,
    logLevel: values['log-level'],
    cpuProfileDir: values['cpu-profile'] === undefined ? undefined : resolve(values['cpu-profile']),
    outDir: resolve(values['out-dir']),
    child,
    resultFile: values['result-file'],
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Child: one store, the pipeline and the ceiling side by side.

interface Ceiling {
  messages: number;
  seconds: number;
  messagesPerSecond: number;
  /** First publish to the last confirm: the publishing side alone. */
  publishSeconds: number;
}

interface Phase {
  orders: number;
  /** Orders per second the publisher achieved (steady: the rate asked for is `rateAsked`). */
  publishedPerSecond: number;
  /** First publish to the last order done. */
  seconds: number;
  /** Orders done per second over `seconds`: the throughput end to end. */
  ordersPerSecond: number;
  latencyMs: LatencySummary;
  outcomes: Record<string, number>;
  checks: { decidedAndNotified: number; notifications: number; outboxBacklog: number };
}

interface SteadyPhase extends Phase {
  rateAsked: number;
  publishSeconds: number;
  /** Orders not yet done when the last one was published, and how long they took to finish after that. */
  backlogAtEnd: number;
  drainSeconds: number;
  /** Latency percentiles of the first and second half of the orders: a growing queue shows as a rise. */
  firstHalfMs: LatencySummary;
  secondHalfMs: LatencySummary;
}

interface StoreResult {
  store: StoreKind;
  location: string;
  triggers: Array<{ functionKey: string; queue: string; batchSize: number; maximumBatchingWindow: number }>;
  topology: { vhost: string; queuesChecked: string[] };
  messageBytes: number;
  ceilingBefore: Ceiling;
  ceilingAfter: Ceiling;
  /** Mean of before and after, messages/s. */
  ceilingMessagesPerSecond: number;
  burst: Phase;
  steady: SteadyPhase | null;
  /** Per queue function, its invocations during the burst: the Lambda billed duration of a batch. */
  invocations: Record<string, InvocationStats>;
  comparison: {
    /** Burst orders/s x 5 (operations per order) / ceiling messages/s: the target's figure. */
    operationsRatio: number;
    /** Burst orders/s x 3 (queue messages per order) / ceiling messages/s: the stricter like-for-like figure. */
    queueMessagesRatio: number;
    atLeastHalf: boolean;
  };
  elapsedSeconds: number;
}

/** One function's invocations in a phase: how many, records per batch, and the mean duration of full batches. */
interface InvocationStats {
  invocations: number;
  records: number;
  /** Invocations with a full batch (batchSize records) and their mean duration, ms: what a 100-record batch costs. */
  fullBatches: number;
  fullBatchMeanMs: number | null;
  /** Mean duration over all invocations, ms. */
  meanMs: number | null;
}

/** Wraps an invoker to time every invocation per function (records per batch, duration). */
class TimedInvoker implements Invoker {
  private samples = new Map<string, Array<{ records: number; ms: number }>>();

  constructor(private readonly inner: Invoker) {}

  async invoke(trigger: TriggerDefinition, event: RabbitMQEvent, invocation: Invocation): Promise<unknown> {
    const records = Object.values(event.rmqMessagesByQueue).reduce((n, list) => n + list.length, 0);
    const start = performance.now();
    try {
      return await this.inner.invoke(trigger, event, invocation);
    } finally {
      const list = this.samples.get(trigger.functionKey) ?? [];
      list.push({ records, ms: performance.now() - start });
      this.samples.set(trigger.functionKey, list);
    }
  }

  /** The figures since the last call, per function; starts a new period. */
  take(batchSizes: ReadonlyMap<string, number>): Record<string, InvocationStats> {
    const out: Record<string, InvocationStats> = {};
    for (const [fn, list] of this.samples) {
      const full = list.filter((s) => s.records >= (batchSizes.get(fn) ?? Number.POSITIVE_INFINITY));
      const mean = (xs: typeof list) => (xs.length ? round(xs.reduce((n, s) => n + s.ms, 0) / xs.length, 1) : null);
      out[fn] = {
        invocations: list.length,
        records: list.reduce((n, s) => n + s.records, 0),
        fullBatches: full.length,
        fullBatchMeanMs: mean(full),
        meanMs: mean(list),
      };
    }
    this.samples = new Map();
    return out;
  }
}

/** The plain amqplib loop: publish-with-confirms into a fresh quorum queue while a consumer drains and acks it. */
async function measureCeiling(config: Config, url: string, label: string, messages: number): Promise<Ceiling> {
  const queue = `bench-ceiling-${label}-${randomUUID().slice(0, 8)}`;
  const { connection: pubConnection, channel: pub } = await confirmChannel(url, `bench-ceiling-pub-${label}`);
  const subConnection = await amqp.connect(url, { clientProperties: { connection_name: `bench-ceiling-sub-${label}` } } as object);
  subConnection.on('error', noop);
  try {
    await declareTopology(pubConnection, topologyOptions(config, [{ name: queue, bindings: [] }]));
    const sub = await subConnection.createChannel();
    sub.on('error', noop);
    await sub.prefetch(200);
    let count = 0;
    let resolveEnd!: (at: number) => void;
    const finished = new Promise<number>((r) => (resolveEnd = r));
    await sub.consume(
      queue,
      (message) => {
        if (!message) return;
        count++;
        if (count % 100 === 0 || count === messages) sub.ack(message, true);
        if (count === messages) setImmediate(() => resolveEnd(performance.now()));
      },
      { noAck: false },
    );
    const bodies = Array.from({ length: 64 }, () => orderEvent(randomUUID(), 'bench-ceiling', 'bench-widget'));
    const start = performance.now();
    for (let i = 0; i < messages; i++) {
      const { body, properties } = bodies[i % bodies.length]!;
      if (!pub.sendToQueue(queue, body, { ...properties, messageId: randomUUID() }))
        await withTimeout(once(pub, 'drain'), 30_000, 'publish buffer to drain');
      if ((i + 1) % 1_000 === 0) await withTimeout(pub.waitForConfirms(), 30_000, 'ceiling confirms');
    }
    await withTimeout(pub.waitForConfirms(), 30_000, 'ceiling confirms');
    const published = performance.now();
    const end = await withTimeout(finished, 120_000, `ceiling consumer draining ${messages} messages`);
    await sub.close().catch(noop);
    const seconds = (end - start) / 1000;
    return {
      messages,
      seconds: round(seconds, 3),
      messagesPerSecond: round(messages / seconds),
      publishSeconds: round((published - start) / 1000, 3),
    };
  } finally {
    const ch = await pubConnection.createChannel().catch(() => undefined);
    if (ch) {
      ch.on('error', noop);
      await ch.deleteQueue(queue).catch(noop);
      await ch.deleteQueue(dlqName(queue)).catch(noop);
    }
    await pubConnection.close().catch(noop);
    await subConnection.close().catch(noop);
  }
}

/** Waits until every order of `userId` is done; resolves to when that was seen (performance.now()). */
async function waitDone(store: Store, userId: string, orders: number, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const done = await countDone(store, userId);
    if (done === orders) return performance.now();
    if (performance.now() > deadline)
      throw new Error(`only ${done} of ${orders} orders (${userId}) were decided and notified after ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** Latencies and checks of a finished phase, from the stored rows. */
async function analyse(
  store: Store,
  userId: string,
  publishedAt: Map<string, number>,
): Promise<Omit<StoredBurst, 'notifications'> & { checks: Phase['checks'] }> {
  const { notifications, ...stored } = await storedBurst(store, userId, publishedAt);
  return {
    ...stored,
    checks: { decidedAndNotified: await countDone(store, userId), notifications, outboxBacklog: await store.outbox.backlog() },
  };
}

class PipelineChild {
  private readonly runId = randomUUID().slice(0, 8);
  private seq = 0;

  constructor(
    private readonly options: Options,
    private readonly store: Store,
    private readonly publisher: ConfirmChannel,
  ) {}

  private newOrders(count: number): Array<{ id: string; item: string }> {
    return Array.from({ length: count }, (_, i) => ({
      id: randomUUID(),
      // Every 1/unknownShare-th order asks for an item the catalog does not have: rejected (unknown_item).
      item: this.options.unknownShare > 0 && i % Math.round(1 / this.options.unknownShare) === 0 ? 'bench-unobtainium' : 'bench-widget',
    }));
  }

  private async insert(orders: ReadonlyArray<{ id: string; item: string }>, userId: string): Promise<void> {
    for (let i = 0; i < orders.length; i += 500) {
      const chunk = orders.slice(i, i + 500);
      await this.store.transaction(async (tx) => {
        for (const o of chunk) await tx.orders.insert({ order_id: o.id, user_id: userId, item: o.item, quantity: 1 });
      });
    }
  }

  private publish(order: { id: string; item: string }, userId: string): boolean {
    const { body, properties } = orderEvent(order.id, userId, order.item);
    return this.publisher.publish('orders', 'order.placed', body, properties);
  }

  /** All orders inserted first, then every OrderPlaced published as fast as the confirm channel takes them. */
  async burst(count: number, label: string): Promise<Phase> {
    const userId = `bench-${this.runId}-${label}-${++this.seq}`;
    const orders = this.newOrders(count);
    await this.insert(orders, userId);
    const publishedAt = new Map<string, number>();
    const start = performance.now();
    for (const order of orders) {
      publishedAt.set(order.id, Date.now());
      if (!this.publish(order, userId)) await withTimeout(once(this.publisher, 'drain'), 30_000, 'publish buffer to drain');
    }
    await withTimeout(this.publisher.waitForConfirms(), 60_000, 'burst confirms');
    const publishSeconds = (performance.now() - start) / 1000;
    await waitDone(this.store, userId, count, 180_000);
    const a = await analyse(this.store, userId, publishedAt);
    const seconds = (a.lastDone - a.firstPublish) / 1000;
    return {
      orders: count,
      publishedPerSecond: round(count / publishSeconds),
      seconds: round(seconds, 3),
      ordersPerSecond: round(count / seconds, 1),
      latencyMs: summarizeLatencies(a.latencies),
      outcomes: a.outcomes,
      checks: a.checks,
    };
  }

  /** Orders inserted and published at `rate` per second for `seconds`, one transaction and one batch per 20 ms tick. */
  async steady(rate: number, seconds: number): Promise<SteadyPhase> {
    const userId = `bench-${this.runId}-steady-${++this.seq}`;
    const total = Math.round(rate * seconds);
    const orders = this.newOrders(total);
    const publishedAt = new Map<string, number>();
    const start = performance.now();
    let sent = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate)) - sent;
      if (due > 0) {
        const tick = orders.slice(sent, sent + due);
        await this.insert(tick, userId);
        for (const order of tick) {
          publishedAt.set(order.id, Date.now());
          if (!this.publish(order, userId)) await withTimeout(once(this.publisher, 'drain'), 30_000, 'publish buffer to drain');
        }
        sent += due;
      }
      await sleep(20);
    }
    await withTimeout(this.publisher.waitForConfirms(), 60_000, 'steady confirms');
    const publishedEnd = performance.now();
    const backlogAtEnd = total - (await countDone(this.store, userId));
    const drained = await waitDone(this.store, userId, total, 180_000);
    const a = await analyse(this.store, userId, publishedAt);
    const span = (a.lastDone - a.firstPublish) / 1000;
    const half = Math.floor(a.latencies.length / 2);
    return {
      orders: total,
      rateAsked: rate,
      publishSeconds: round((publishedEnd - start) / 1000, 2),
      publishedPerSecond: round(total / ((publishedEnd - start) / 1000), 1),
      seconds: round(span, 3),
      ordersPerSecond: round(total / span, 1),
      latencyMs: summarizeLatencies(a.latencies),
      firstHalfMs: summarizeLatencies(a.latencies.slice(0, half)),
      secondHalfMs: summarizeLatencies(a.latencies.slice(half)),
      backlogAtEnd,
      drainSeconds: round((drained - publishedEnd) / 1000, 2),
      outcomes: a.outcomes,
      checks: a.checks,
    };
  }
}

async function runChild(options: Options, kind: StoreKind, resultFile: string): Promise<void> {
  const started = performance.now();
  // Configuration is read once per process: the parent set AMQP_URL (the vhost), SQLITE_PATH or DATABASE_URL, LOG_LEVEL.
  const config = loadConfig(process.env);
  const url = config.amqpUrls[0]!;
  const [{ processStore: defaultStore }, { InProcessInvoker, loadService, Runner, triggersFromFunctions }, { closeMessaging }] =
    await Promise.all([import('../shared/app/queue-function'), import('serverless-offline-rabbitmq'), import('../shared/messaging')]);
  const handlers: Record<string, { handler: unknown }> = {
    inventoryReservation: await import('../handlers/inventory-reservation'),
    notification: await import('../handlers/notification'),
    orderStatus: await import('../handlers/order-status'),
  };
  // The handlers' own store (one per process, as in a Lambda container): the bench inserts orders through it too.
  const store = await defaultStore();
  await store.stock.upsert({ 'bench-widget': 1_000_000_000 });

  const { connection: adminConnection, channel: publisher } = await confirmChannel(url, `bench-pipeline-publisher-${kind}`);
  // The vhost is the benchmark's own, but a previous store's run may have left something behind: start empty.
  await declareTopology(adminConnection, topologyOptions(config));
  for (const queue of [...CONTRACT_QUEUES, ...CONTRACT_QUEUES.map(dlqName)]) await publisher.purgeQueue(queue);

  const service = loadService(serviceDir);
  const triggers = triggersFromFunctions(service.functions, service.info).filter((t) => t.functionKey in handlers);
  const load: HandlerLoader = async (trigger) => handlers[trigger.functionKey]!.handler as Awaited<ReturnType<HandlerLoader>>;
  const timed = new TimedInvoker(new InProcessInvoker(load));
  const batchSizes = new Map(triggers.map((t) => [t.functionKey, t.batchSize]));
  const runner = new Runner({
    urls: config.amqpUrls,
    triggers,
    invoker: timed,
    logger: createLogger({ level: 'warn' }),
    hooks: appHooks({ relayStore: defaultStore }),
    connectionName: `bench-pipeline-runner-${kind}`,
  });
  const log = (line: string) => console.log(`[${kind}] ${line}`);
  try {
    await withTimeout(runner.start(), 60_000, 'runner start');
    // The runner declared the topology over its connection to AMQP_URL: check its queues are in the vhost.
    const queuesChecked: string[] = [];
    for (const queue of CONTRACT_QUEUES) {
      const ok = await publisher.checkQueue(queue);
      queuesChecked.push(`${queue} (${ok.consumerCount} consumer)`);
      if (ok.consumerCount < 1) throw new Error(`no consumer on ${queue} in vhost ${new URL(url).pathname}`);
    }
    const bench = new PipelineChild(options, store, publisher);
    const messageBytes = orderEvent(randomUUID(), `bench-${randomUUID().slice(0, 8)}-burst-1`, 'bench-widget').body.length;

    const ceilingBefore = await measureCeiling(config, url, `${kind}-before`, options.ceilingMessages);
    log(`ceiling before: ${fmt(ceilingBefore.messagesPerSecond)} msg/s`);
    if (options.warmup > 0) {
      const warm = await bench.burst(options.warmup, 'warmup');
      log(`warm-up (not reported): ${fmt(warm.ordersPerSecond)} orders/s`);
    }
    timed.take(batchSizes); // warm-up and start-up invocations are not the burst's
    const burst = await bench.burst(options.burst, 'burst');
    const invocations = timed.take(batchSizes);
    for (const [fn, st] of Object.entries(invocations))
      log(
        `  ${fn}: ${st.invocations} invocations, ${st.records} records, full batches ${st.fullBatches} at ${st.fullBatchMeanMs ?? '-'} ms mean`,
      );
    log(
      `burst: ${burst.orders} orders in ${burst.seconds} s = ${fmt(burst.ordersPerSecond, 1)} orders/s; latency p50/p95/p99 ` +
        `${burst.latencyMs.p50}/${burst.latencyMs.p95}/${burst.latencyMs.p99} ms`,
    );
    let steady: SteadyPhase | null = null;
    if (options.steadySeconds > 0) {
      const rate =
        options.rate === 'auto'
          ? Math.max(1, Math.floor(burst.ordersPerSecond / 2 / 10) * 10 || Math.floor(burst.ordersPerSecond / 2))
          : options.rate;
      steady = await bench.steady(rate, options.steadySeconds);
      log(
        `steady: ${steady.orders} orders at ${rate}/s asked, ${fmt(steady.ordersPerSecond, 1)} orders/s done; latency p50/p95/p99 ` +
          `${steady.latencyMs.p50}/${steady.latencyMs.p95}/${steady.latencyMs.p99} ms; backlog at end ${steady.backlogAtEnd}, drained in ${steady.drainSeconds} s`,
      );
    }
    const ceilingAfter = await measureCeiling(config, url, `${kind}-after`, options.ceilingMessages);
    log(`ceiling after: ${fmt(ceilingAfter.messagesPerSecond)} msg/s`);
    const ceiling = round((ceilingBefore.messagesPerSecond + ceilingAfter.messagesPerSecond) / 2);
    const operationsRatio = round((burst.ordersPerSecond * BROKER_WORK.operations) / ceiling, 3);
    const result: StoreResult = {
      store: kind,
      location: store.location,
      triggers: triggers.map((t) => ({
        functionKey: t.functionKey,
        queue: t.queue,
        batchSize: t.batchSize,
        maximumBatchingWindow: t.maximumBatchingWindow,
      })),
      topology: { vhost: decodeURIComponent(new URL(url).pathname.slice(1)), queuesChecked },
      messageBytes,
      ceilingBefore,
      ceilingAfter,
      ceilingMessagesPerSecond: ceiling,
      burst,
      steady,
      invocations,
      comparison: {
        operationsRatio,
        queueMessagesRatio: round((burst.ordersPerSecond * BROKER_WORK.queueMessagesPerOrder) / ceiling, 3),
        atLeastHalf: operationsRatio >= TARGET_FRACTION,
      },
      elapsedSeconds: round((performance.now() - started) / 1000, 1),
    };
    await writeResultFile(resultFile, JSON.stringify(result));
  } finally {
    await runner.stop().catch(noop);
    await adminConnection.close().catch(noop);
    await closeMessaging().catch(noop);
    await store.close().catch(noop);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Parent: vhost, schema, one child per store, the report.

interface Results {
  benchmark: 'pipeline';
  description: string;
  date: string;
  command: string;
  machine: ReturnType<typeof machineFacts> & { rabbitmq: string; loadAverage: { atStart: number[]; atEnd: number[] } };
  parameters: Omit<Options, 'outDir' | 'child' | 'resultFile'> & {
    vhost: string;
    brokerWorkPerOrder: typeof BROKER_WORK;
    targetFraction: number;
  };
  vhostQueuesSeen: string[];
  stores: StoreResult[];
  elapsedSeconds: number;
}

async function runParent(options: Options): Promise<void> {
  const started = performance.now();
  const loadAtStart = loadavg().map((v) => round(v, 2));
  const baseUrl = loadConfig(process.env).amqpUrls[0]!;
  const pgBase = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const tmp = await mkdtemp(join(tmpdir(), 'bench-pipeline-'));
  const vhost = await benchVhost(VHOST, baseUrl);
  let schema: Awaited<ReturnType<typeof postgresSchema>> | undefined;
  let current: ReturnType<typeof spawn> | undefined;
  const cleanup = async () => {
    if (current && current.exitCode === null) current.kill('SIGKILL');
    await schema?.drop().catch((e: unknown) => console.error(`bench: could not drop schema ${schema?.schema}: ${String(e)}`));
    await vhost.remove().catch((e: unknown) => console.error(`bench: could not delete vhost ${VHOST}: ${String(e)}`));
    await rm(tmp, { recursive: true, force: true });
  };
  const interrupt = (signal: NodeJS.Signals) => {
    console.error(`bench: ${signal}; deleting vhost ${VHOST}`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const stores: StoreResult[] = [];
  let vhostQueuesSeen: string[] = [];
  let rabbitmq = '?';
  try {
    const probe = await amqp.connect(vhost.url);
    rabbitmq = String(probe.connection.serverProperties.version ?? '?');
    await probe.close();
    console.log(
      `RabbitMQ ${rabbitmq}, vhost '${VHOST}' (${vhost.url.replace(/\/\/[^@]*@/, '//')}), node ${process.version}, ${machineFacts().cpus} cpus`,
    );
    for (const kind of options.stores) {
      const env: NodeJS.ProcessEnv = { ...process.env, AMQP_URL: vhost.url, LOG_LEVEL: options.logLevel };
      delete env.AMQP_URLS;
      delete env.DATABASE_URL;
      if (kind === 'postgres') {
        schema = await postgresSchema(pgBase, 'bench_pipeline');
        env.DATABASE_URL = schema.url;
      } else {
        env.SQLITE_PATH = join(tmp, 'app.sqlite');
      }
      const resultFile = join(tmp, `${kind}.json`);
      const profile = options.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : [];
      const args = [...profile, '--import', 'tsx', thisFile, '--child', kind, '--result-file', resultFile];
      for (const [flag, value] of [
        ['--burst', options.burst],
        ['--warmup', options.warmup],
        ['--steady-seconds', options.steadySeconds],
        ['--rate', options.rate],
        ['--ceiling-messages', options.ceilingMessages],
        ['--unknown-share', options.unknownShare],
      ] as const)
        args.push(flag, String(value));
      const child = spawn(process.execPath, args, { env, stdio: 'inherit' });
      current = child;
      const timer = setTimeout(() => child.kill('SIGKILL'), 240_000 + options.steadySeconds * 1000);
      const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
      clearTimeout(timer);
      if (code !== 0) throw new Error(`the ${kind} run failed (exit ${code ?? signal})`);
      stores.push(JSON.parse(await readFile(resultFile, 'utf8')) as StoreResult);
      if (vhostQueuesSeen.length === 0) vhostQueuesSeen = await vhostQueues(VHOST);
      await schema?.drop();
    }
  } finally {
    await cleanup();
  }
  const { outDir, child: _c, resultFile: _r, ...parameters } = options;
  const results: Results = {
    benchmark: 'pipeline',
    description:
      'orders through inventoryReservation, notification and orderStatus (one Runner, InProcessInvoker, outbox relay) ' +
      'vs a plain amqplib publish-with-confirms + consume-and-ack loop on the same broker and vhost, per store, one run',
    date: new Date().toISOString(),
    command: COMMAND,
    machine: { ...machineFacts(), rabbitmq, loadAverage: { atStart: loadAtStart, atEnd: loadavg().map((v) => round(v, 2)) } },
    parameters: { ...parameters, vhost: VHOST, brokerWorkPerOrder: BROKER_WORK, targetFraction: TARGET_FRACTION },
    vhostQueuesSeen,
    stores,
    elapsedSeconds: round((performance.now() - started) / 1000, 1),
  };
  await writeResultFile(join(outDir, 'pipeline.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeResultFile(join(outDir, 'pipeline.md'), markdown(results));
  console.log(`wrote ${relative(process.cwd(), join(outDir, 'pipeline.json'))} and pipeline.md in ${results.elapsedSeconds} s`);
  for (const s of stores)
    console.log(
      `${s.store}: burst ${fmt(s.burst.ordersPerSecond, 1)} orders/s x ${BROKER_WORK.operations} = ${fmt(s.burst.ordersPerSecond * BROKER_WORK.operations)} ops/s ` +
        `vs ceiling ${fmt(s.ceilingMessagesPerSecond)} msg/s: ${fmt(s.comparison.operationsRatio, 3)} -> at least half ${s.comparison.atLeastHalf ? 'YES' : 'NO'}`,
    );
}

function markdown(r: Results): string {
  const { machine: m, parameters: p } = r;
  const lat = (s: LatencySummary) => `${fmt(s.p50)} / ${fmt(s.p95)} / ${fmt(s.p99)}`;
  const maxRate = Math.max(...r.stores.map((s) => s.ceilingMessagesPerSecond));
  const w = p.brokerWorkPerOrder;
  const trig =
    r.stores[0]?.triggers.map((t) => `${t.functionKey} (batch ${t.batchSize}, window ${t.maximumBatchingWindow} s)`).join(', ') ?? '';
  const lines = [
    '# Pipeline benchmark',
    '',
    `Orders through the queue side of the system, side by side with the broker's own ceiling, in one run, per store. ` +
      `The three real queue handlers run in one \`Runner\` with an \`InProcessInvoker\` plus the outbox relay (as ` +
      `test/integration/flow.test.ts wires them), with their triggers as functions/*.yml define them: ${trig}; concurrency 1; ` +
      `handlers' LOG_LEVEL ${p.logLevel}. Orders are inserted into the store first (status accepted, as intake does), then ` +
      `their OrderPlaced events (${r.stores[0]?.messageBytes ?? '?'} bytes, persistent) are published with confirms to \`orders\`. ` +
      `An order is done when its status is reserved/rejected **and** it is notified; latency runs from its publish to ` +
      `the later of those two commits (the row's updated_at). ${Math.round(p.unknownShare * 100)}% of the orders are for an unknown item (rejected). ` +
      `Every order is then checked in the store: decided, notified, one notification each, outbox empty.`,
    '',
    `Run ${r.date} on ${m.cpus} x ${m.cpuModel}, node ${m.node}, RabbitMQ ${m.rabbitmq} on the same machine, in a vhost of its own ` +
      `(\`${p.vhost}\`, created and deleted by the run; queues seen there: ${r.vhostQueuesSeen.length}); ${r.elapsedSeconds} s in all; load average ` +
      `${m.loadAverage.atStart[0]} at the start, ${m.loadAverage.atEnd[0]} at the end. **The machine is shared and noisy** (other ` +
      'engineers run tests on the same broker and cores): read the ratios measured side by side, not the absolute rates.',
    '',
    '## Throughput against the broker ceiling',
    '',
    `Ceiling: a plain amqplib loop on the same broker and vhost, same message body: one confirm channel publishing ${fmt(p.ceilingMessages)} ` +
      'persistent messages into a fresh quorum queue while one consumer (prefetch 200, a multiple-ack per 100) drains it; ' +
      'messages/s from the first publish to the last ack, measured before and after the pipeline phases (the mean is used).',
    '',
    `Broker work per order, counted: ${w.publishes} publishes with confirms (OrderPlaced; the outcome, published once and fanned out ` +
      `to two queues), ${w.enqueues} messages enqueued, ${w.deliveries} deliveries, ${w.acks} acks (batched): **${w.operations} operations** ` +
      `(publishes + deliveries). A ceiling message is 1 publish + 1 delivery, so like for like an order is worth ${w.queueMessagesPerOrder} ceiling messages.`,
    '',
    '| store | ceiling msg/s (before / after) | burst orders/s | orders/s x 5 | x 5 / ceiling | at least half? | orders/s x 3 / ceiling |',
    '| --- | ---: | ---: | ---: | ---: | :---: | ---: |',
    ...r.stores.map(
      (s) =>
        `| ${s.store} | ${fmt(s.ceilingMessagesPerSecond)} (${fmt(s.ceilingBefore.messagesPerSecond)} / ${fmt(s.ceilingAfter.messagesPerSecond)}) | ` +
        `${fmt(s.burst.ordersPerSecond, 1)} | ${fmt(s.burst.ordersPerSecond * w.operations)} | ${fmt(s.comparison.operationsRatio, 3)} | ` +
        `${s.comparison.atLeastHalf ? 'yes' : 'no'} | ${fmt(s.comparison.queueMessagesRatio, 3)} |`,
    ),
    '',
    '```',
    ...r.stores.flatMap((s) => [
      `${`${s.store} ceiling`.padEnd(22)} ${bar(s.ceilingMessagesPerSecond, maxRate)} ${fmt(s.ceilingMessagesPerSecond)} msg/s`,
      `${`${s.store} orders x 5`.padEnd(22)} ${bar(s.burst.ordersPerSecond * w.operations, maxRate)} ${fmt(s.burst.ordersPerSecond * w.operations)} ops/s`,
    ]),
    '```',
    '',
    '## Invocations during the burst',
    '',
    "Each queue function's invocations while the burst ran, timed around the in-process invoke (what Lambda bills): " +
      'the mean duration of a full batch is the cost of 100 records in one transaction, one commit, one INSERT of the ' +
      'events they emit and one round of confirms for them. The three functions run at once in one process.',
    '',
    '| store | function | invocations | records | full batches | full batch mean ms | mean ms |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
    ...r.stores.flatMap((s) =>
      Object.entries(s.invocations)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(
          ([fn, st]) =>
            `| ${s.store} | ${fn} | ${fmt(st.invocations)} | ${fmt(st.records)} | ${fmt(st.fullBatches)} | ${st.fullBatchMeanMs ?? ''} | ${st.meanMs ?? ''} |`,
        ),
    ),
    '',
    '## Burst and steady load',
    '',
    `Burst: ${fmt(p.burst)} orders inserted, then all published at once (after an unreported warm-up of ${fmt(p.warmup)}); ` +
      `orders/s from the first publish to the last order done. Steady: orders inserted and published every 20 ms for ${p.steadySeconds} s ` +
      `at ${p.rate === 'auto' ? 'half the burst throughput of the same run' : `${p.rate} orders/s`}. Latency in milliseconds, p50 / p95 / p99.`,
    '',
    '| store | phase | orders | asked /s | published /s | done /s | latency p50 / p95 / p99 | max | backlog when publishing ended | outcomes |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ...r.stores.flatMap((s) => {
      const outcomes = (ph: Phase) =>
        Object.entries(ph.outcomes)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ');
      const rows = [
        `| ${s.store} | burst | ${fmt(s.burst.orders)} | | ${fmt(s.burst.publishedPerSecond)} | ${fmt(s.burst.ordersPerSecond, 1)} | ${lat(s.burst.latencyMs)} | ${fmt(s.burst.latencyMs.max)} | | ${outcomes(s.burst)} |`,
      ];
      if (s.steady)
        rows.push(
          `| ${s.store} | steady | ${fmt(s.steady.orders)} | ${fmt(s.steady.rateAsked)} | ${fmt(s.steady.publishedPerSecond, 1)} | ${fmt(s.steady.ordersPerSecond, 1)} | ` +
            `${lat(s.steady.latencyMs)} | ${fmt(s.steady.latencyMs.max)} | ${s.steady.backlogAtEnd} orders, done ${s.steady.drainSeconds} s later | ${outcomes(s.steady)} |`,
        );
      return rows;
    }),
    '',
    ...r.stores
      .filter((s) => s.steady)
      .map(
        (s) =>
          `- ${s.store}, steady: latency p50 / p95 / p99 first half ${lat(s.steady!.firstHalfMs)} ms, second half ${lat(s.steady!.secondHalfMs)} ms ` +
          '(a rise would mean a growing queue).',
      ),
    '',
    `The end-to-end latency includes the batching windows (${trig}): at a low rate a batch waits for its window, twice ` +
      '(inventory, then notification and status in parallel); that is the configuration, not overhead.',
    '',
    'Reproduce (RabbitMQ at `AMQP_URL` with `rabbitmqctl` or its management API, PostgreSQL at `TEST_DATABASE_URL`; options: `npm run bench:pipeline -- --help`):',
    '',
    '```sh',
    COMMAND,
    '```',
    '',
    'Every figure: `pipeline.json`.',
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const options = parseOptions();
  if (options.child) {
    if (!options.resultFile) throw new Error('--child needs --result-file');
    await runChild(options, options.child, options.resultFile);
    // Handlers' process-wide connections and timers may linger; the result is written.
    process.exit(0);
  }
  await runParent(options);
}

main().catch((error: unknown) => {
  console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
});
