/**
 * Scale-out benchmark: orders/s of a burst with 1, 2 and 4 worker processes (`npm run worker`) on one PostgreSQL
 * database and one broker.
 *
 * The process creates a RabbitMQ virtual host of its own (`bench-workers`: nobody else's tests purge or feed its
 * queues) and, per worker count, a fresh PostgreSQL schema; then, per worker count:
 *   - opens the store on the schema (migrations, stock for the bench's item), declares the topology in the vhost;
 *   - starts N workers, each the real standalone worker (the rabbitmq-trigger-worker bin of
 *     serverless-offline-rabbitmq: every queue function of serverless.yml, handlers bundled with esbuild and run
 *     in-process, the outbox relay beside them) as one node process, AMQP_URL pointing at the vhost, DATABASE_URL at the schema; waits until every
 *     contract queue has N consumers;
 *   - warm-up burst (not reported: bundling, first connections, JIT), then `--repeats` bursts of the shape
 *     bench:pipeline uses: N orders inserted first (status `accepted`, as intake does), then their OrderPlaced
 *     events published to `orders` with confirms as fast as the channel takes them; an order is done when it is
 *     decided (reserved/rejected) AND notified; orders/s from the first publish to the last order done (the row's
 *     updated_at, written by the workers on this machine's clock);
 *   - checks every order of every burst: decided, notified, exactly one notification each, outbox drained;
 *   - stops the workers (SIGTERM: they finish their batches) and drops the schema.
 * The workers' CPU time per order and the share of the machine's CPU that was busy (Linux /proc) are noted: with the
 * broker, PostgreSQL and the workers on the same cores, they tell whether more workers mean more work done or only
 * more processes sharing the same CPUs.
 *
 * Results: bench/results/workers.json and workers.md. Timings never fail the run; errors (broker or database
 * down, a worker that exits, orders not done in time) and a failed check do, after the results are written.
 *
 *   npm run bench:workers [-- --workers 1,2,4 --orders 2000 --repeats 3]
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { loadConfig } from '../shared/config';
import { declareTopology, dlqName, topologyOptions } from '../shared/messaging';
import { openStore, type Store } from '../shared/store';
import { confirmChannel, countDone, orderEvent, storedBurst } from './orders';
import {
  bar,
  benchVhost,
  fmt,
  integerOption as int,
  type LatencySummary,
  machineFacts,
  median,
  postgresSchema,
  round,
  summarizeLatencies,
  withTimeout,
  writeResultFile,
} from './support';

const serviceDir = resolve(fileURLToPath(new URL('..', import.meta.url)));
const COMMAND = 'npm run bench:workers';
const VHOST = 'bench-workers';
const CONTRACT_QUEUES = ['order-events', 'inventory-events', 'order-status-events'];
const ITEM = 'bench-widget';
/** The catalogue the orders are spread over: `bench-widget` alone, or `bench-widget-0` ... `bench-widget-<n-1>`. */
const catalogue = (n: number): string[] => (n === 1 ? [ITEM] : Array.from({ length: n }, (_, i) => `${ITEM}-${i}`));
const UNKNOWN_ITEM = 'bench-unobtainium';
const noop = () => undefined;

interface Options {
  workers: number[];
  orders: number;
  warmup: number;
  repeats: number;
  concurrency: number | undefined;
  unknownShare: number;
  items: number;
  logLevel: string;
  outDir: string;
}

const usage = `Usage: npm run bench:workers -- [options]
  --workers LIST        worker process counts, one phase each (default 1,2,4)
  --orders N            orders per measured burst (default 2000)
  --warmup N            orders in an unreported warm-up burst per phase (default 2000: the first burst after
                        a shorter one was still ~20% slower, each new worker process warming up)
  --repeats N           measured bursts per phase; the median is reported (default 3)
  --concurrency N       --concurrency of every worker (default: the worker's own, 1 as on AWS)
  --unknown-share F     share of orders for an unknown item, rejected (default 0.1)
  --items N             catalogue items the orders are spread over, in turn (default 1: every order on one stock
                        row, which the workers' inventoryReservation batches take in turn, as in bench:pipeline)
  --log-level LEVEL     LOG_LEVEL of the workers (default warn: logging would dominate otherwise)
  --out-dir DIR         where workers.json and workers.md go (default bench/results)

Needs RabbitMQ at AMQP_URL with rabbitmqctl or its management API (vhost '${VHOST}', created and deleted by the run) and
PostgreSQL at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test; a fresh schema per phase).`;

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      workers: { type: 'string', default: '1,2,4' },
      orders: { type: 'string', default: '2000' },
      warmup: { type: 'string', default: '2000' },
      repeats: { type: 'string', default: '3' },
      concurrency: { type: 'string' },
      'unknown-share': { type: 'string', default: '0.1' },
      items: { type: 'string', default: '1' },
      'log-level': { type: 'string', default: 'warn' },
      'out-dir': { type: 'string', default: join(serviceDir, 'bench', 'results') },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const unknownShare = Number(values['unknown-share']);
  if (!(unknownShare >= 0 && unknownShare <= 1)) throw new Error(`--unknown-share must be 0..1, got '${values['unknown-share']}'`);
  return {
    workers: values.workers.split(',').map((part) => int('workers', part.trim(), 1, 32)),
    orders: int('orders', values.orders, 1, 1_000_000),
    warmup: int('warmup', values.warmup, 0, 100_000),
    repeats: int('repeats', values.repeats, 1, 20),
    concurrency: values.concurrency === undefined ? undefined : int('concurrency', values.concurrency, 1, 64),
    unknownShare,
    items: int('items', values.items, 1, 10_000),
    logLevel: values['log-level'],
    outDir: resolve(values['out-dir']),
  };
}

/** One `npm run worker` process: the trigger package's `bin` (rabbitmq-trigger-worker) under node, no npm wrapper between. */
class Worker {
  readonly child: ChildProcess;
  private out = '';
  readonly exited: Promise<void>;

  constructor(env: NodeJS.ProcessEnv, args: string[]) {
    this.child = spawn(process.execPath, [join(serviceDir, 'node_modules/.bin/rabbitmq-trigger-worker'), ...args], {
      cwd: serviceDir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => {
      this.out = (this.out + chunk.toString()).slice(-16_384);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.exited = once(this.child, 'exit').then(noop);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What it printed last, to explain a failure. */
  output(): string {
    return this.out.trim().split('\n').slice(-20).join('\n');
  }

  /** CPU seconds (user + system) this process has used so far; undefined where /proc is not there. */
  cpuSeconds(): number | undefined {
    try {
      // Fields after the command name (which may hold spaces): state is the 3rd field, utime the 14th, stime the 15th.
      const stat = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks; USER_HZ is 100 on Linux
    } catch {
      return undefined;
    }
  }

  /** SIGTERM (it finishes its batches and closes), SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = 30_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

interface Burst {
  orders: number;
  publishedPerSecond: number;
  seconds: number;
  ordersPerSecond: number;
  latencyMs: LatencySummary;
  /** CPU seconds of all workers during the burst, per order, in milliseconds (null without /proc). */
  workerCpuMsPerOrder: number | null;
  /** Share of the whole machine's CPU time that was busy during the burst, every process included (null without /proc). */
  machineCpuBusy: number | null;
  outcomes: Record<string, number>;
  checks: { decidedAndNotified: number; notifications: number; outboxBacklog: number; passed: boolean };
}

interface PhaseResult {
  workers: number;
  /** Seconds from spawning the workers to every contract queue having one consumer per worker. */
  startSeconds: number;
  warmup: { orders: number; ordersPerSecond: number } | null;
  bursts: Burst[];
  medianOrdersPerSecond: number;
  /** Median orders/s over that of the first phase (normally 1 worker). */
  speedup: number;
  medianWorkerCpuMsPerOrder: number | null;
  medianMachineCpuBusy: number | null;
  loadAverage: { atStart: number[]; atEnd: number[] };
}

/** The machine's CPU time so far (all cores, /proc/stat): busy and total, in clock ticks; undefined without /proc. */
function machineCpu(): { busy: number; total: number } | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((sum, v) => sum + v, 0);
    return { busy: total - fields[3]! - fields[4]!, total }; // idle and iowait are not busy
  } catch {
    return undefined;
  }
}

/** Waits until every order of `userId` is done; throws, with the workers' last words, if one dies or time runs out. */
async function waitDone(store: Store, userId: string, orders: number, workers: readonly Worker[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const done = await countDone(store, userId);
    if (done === orders) return;
    const dead = workers.find((worker) => !worker.running);
    if (dead) throw new Error(`worker ${dead.child.pid} exited during a burst (${done} of ${orders} done):\n${dead.output()}`);
    if (performance.now() > deadline)
      throw new Error(`only ${done} of ${orders} orders (${userId}) were decided and notified after ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

class Phase {
  private seq = 0;
  private readonly runId = randomUUID().slice(0, 8);

  constructor(
    private readonly options: Options,
    private readonly store: Store,
    private readonly publisher: ConfirmChannel,
    private readonly workers: readonly Worker[],
  ) {}

  private cpu(): number | undefined {
    let total = 0;
    for (const worker of this.workers) {
      const seconds = worker.cpuSeconds();
      if (seconds === undefined) return undefined;
      total += seconds;
    }
    return total;
  }

  /** All orders inserted first, then every OrderPlaced published as fast as the confirm channel takes them. */
  async burst(count: number, label: string): Promise<Burst> {
    const userId = `bench-${this.runId}-${label}-${++this.seq}`;
    const every = this.options.unknownShare > 0 ? Math.round(1 / this.options.unknownShare) : 0;
    const items = catalogue(this.options.items);
    const orders = Array.from({ length: count }, (_, i) => ({
      id: randomUUID(),
      item: every && i % every === 0 ? UNKNOWN_ITEM : items[i % items.length]!,
    }));
    for (let i = 0; i < orders.length; i += 500) {
      const chunk = orders.slice(i, i + 500);
      await this.store.transaction(async (tx) => {
        for (const o of chunk) await tx.orders.insert({ order_id: o.id, user_id: userId, item: o.item, quantity: 1 });
      });
    }
    const cpuBefore = this.cpu();
    const machineBefore = machineCpu();
    const publishedAt = new Map<string, number>();
    const start = performance.now();
    for (const order of orders) {
      publishedAt.set(order.id, Date.now());
      const { body, properties } = orderEvent(order.id, userId, order.item);
      if (!this.publisher.publish('orders', 'order.placed', body, properties))
        await withTimeout(once(this.publisher, 'drain'), 30_000, 'publish buffer to drain');
    }
    await withTimeout(this.publisher.waitForConfirms(), 60_000, 'burst confirms');
    const publishSeconds = (performance.now() - start) / 1000;
    await waitDone(this.store, userId, count, this.workers, 300_000);
    const cpuAfter = this.cpu();
    const machineAfter = machineCpu();
    const busy =
      machineBefore && machineAfter && machineAfter.total > machineBefore.total
        ? round((machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total), 3)
        : null;
    return this.analyse(
      userId,
      publishedAt,
      publishSeconds,
      cpuBefore === undefined || cpuAfter === undefined ? null : cpuAfter - cpuBefore,
      busy,
    );
  }

  /** Orders/s, latencies and checks of a finished burst, from the stored rows. */
  private async analyse(
    userId: string,
    publishedAt: Map<string, number>,
    publishSeconds: number,
    cpuSeconds: number | null,
    machineCpuBusy: number | null,
  ): Promise<Burst> {
    const { latencies, firstPublish, lastDone, outcomes, notifications: notified } = await storedBurst(this.store, userId, publishedAt);
    // Producers mark their rows published right after the confirms: give the last marks a moment.
    let outboxBacklog = await this.store.outbox.backlog();
    for (let i = 0; i < 50 && outboxBacklog > 0; i++) {
      await sleep(200);
      outboxBacklog = await this.store.outbox.backlog();
    }
    const orders = publishedAt.size;
    const decidedAndNotified = await countDone(this.store, userId);
    const seconds = (lastDone - firstPublish) / 1000;
    return {
      orders,
      publishedPerSecond: round(orders / publishSeconds),
      seconds: round(seconds, 3),
      ordersPerSecond: round(orders / seconds, 1),
      latencyMs: summarizeLatencies(latencies),
      workerCpuMsPerOrder: cpuSeconds === null ? null : round((cpuSeconds * 1000) / orders, 2),
      machineCpuBusy,
      outcomes,
      checks: {
        decidedAndNotified,
        notifications: notified,
        outboxBacklog,
        passed: decidedAndNotified === orders && notified === orders && outboxBacklog === 0,
      },
    };
  }
}

/** Waits until every contract queue has `count` consumers (each worker consumes each once). */
async function waitConsumers(channel: ConfirmChannel, count: number, workers: readonly Worker[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const consumers = await Promise.all(CONTRACT_QUEUES.map(async (queue) => (await channel.checkQueue(queue)).consumerCount));
    if (consumers.every((n) => n === count)) return;
    const dead = workers.find((worker) => !worker.running);
    if (dead) throw new Error(`worker ${dead.child.pid} exited while starting:\n${dead.output()}`);
    if (performance.now() > deadline)
      throw new Error(`after ${timeoutMs / 1000} s the queues have ${consumers.join('/')} consumers, expected ${count} each`);
    await sleep(250);
  }
}

interface Results {
  benchmark: 'workers';
  description: string;
  date: string;
  command: string;
  machine: ReturnType<typeof machineFacts> & { rabbitmq: string; loadAverage: { atStart: number[]; atEnd: number[] } };
  parameters: Omit<Options, 'outDir'> & { vhost: string; store: string; triggers: string; messageBytes: number };
  phases: PhaseResult[];
  checksPassed: boolean;
  elapsedSeconds: number;
}

async function main(): Promise<void> {
  const options = parseOptions();
  const started = performance.now();
  const loadAtStart = loadavg().map((v) => round(v, 2));
  const baseUrl = loadConfig(process.env).amqpUrls[0]!;
  const pgBase = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const vhost = await benchVhost(VHOST, baseUrl);
  const config = loadConfig({ ...process.env, AMQP_URL: vhost.url, AMQP_URLS: undefined });
  let schema: Awaited<ReturnType<typeof postgresSchema>> | undefined;
  let store: Store | undefined;
  let admin: { connection: ChannelModel; channel: ConfirmChannel } | undefined;
  let workers: Worker[] = [];
  const cleanup = async () => {
    await Promise.all(workers.map((worker) => worker.stop(5_000)));
    await admin?.connection.close().catch(noop);
    await store?.close().catch(noop);
    await schema?.drop().catch((e: unknown) => console.error(`bench: could not drop schema ${schema?.schema}: ${String(e)}`));
    await vhost.remove().catch((e: unknown) => console.error(`bench: could not delete vhost ${VHOST}: ${String(e)}`));
  };
  const interrupt = (signal: NodeJS.Signals) => {
    console.error(`bench: ${signal}; stopping the workers, deleting vhost ${VHOST} and the schema`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);

  const phases: PhaseResult[] = [];
  let rabbitmq = '?';
  let triggers = '';
  try {
    admin = await confirmChannel(vhost.url, 'bench-workers-publisher');
    rabbitmq = String(admin.connection.connection.serverProperties.version ?? '?');
    console.log(
      `RabbitMQ ${rabbitmq}, vhost '${VHOST}', node ${process.version}, ${machineFacts().cpus} cpus, load average ${loadAtStart[0]}`,
    );
    const { loadService, triggersFromFunctions } = await import('serverless-offline-rabbitmq');
    const service = loadService(serviceDir);
    triggers = triggersFromFunctions(service.functions, service.info)
      .map((t) => `${t.functionKey} (batch ${t.batchSize}, window ${t.maximumBatchingWindow} s)`)
      .join(', ');

    for (const count of options.workers) {
      const loadAtPhaseStart = loadavg().map((v) => round(v, 2));
      schema = await postgresSchema(pgBase, 'bench_workers');
      store = await openStore({ databaseUrl: schema.url });
      await store.stock.upsert(Object.fromEntries(catalogue(options.items).map((item) => [item, 1_000_000_000])));
      // The vhost is the run's own, but the previous phase may have left messages behind: start empty.
      await declareTopology(admin.connection, topologyOptions(config));
      for (const queue of [...CONTRACT_QUEUES, ...CONTRACT_QUEUES.map(dlqName)]) await admin.channel.purgeQueue(queue);

      const env: NodeJS.ProcessEnv = {
        ...process.env,
        AMQP_URL: vhost.url,
        DATABASE_URL: schema.url,
        LOG_LEVEL: options.logLevel,
        // One metrics endpoint per machine port: several workers here would fight over the default one.
        METRICS_PORT: 'off',
      };
      delete env.AMQP_URLS;
      const args = options.concurrency === undefined ? [] : ['--concurrency', String(options.concurrency)];
      const spawnedAt = performance.now();
      workers = Array.from({ length: count }, () => new Worker(env, args));
      await waitConsumers(admin.channel, count, workers, 180_000);
      const startSeconds = round((performance.now() - spawnedAt) / 1000, 1);
      console.log(`${count} worker(s): consuming after ${startSeconds} s`);

      const phase = new Phase(options, store, admin.channel, workers);
      let warmup: PhaseResult['warmup'] = null;
      if (options.warmup > 0) {
        const warm = await phase.burst(options.warmup, 'warmup');
        warmup = { orders: warm.orders, ordersPerSecond: warm.ordersPerSecond };
        console.log(`${count} worker(s): warm-up (not reported) ${fmt(warm.ordersPerSecond, 1)} orders/s`);
      }
      const bursts: Burst[] = [];
      for (let rep = 1; rep <= options.repeats; rep++) {
        const burst = await phase.burst(options.orders, 'burst');
        bursts.push(burst);
        console.log(
          `${count} worker(s) burst ${rep}: ${burst.orders} orders in ${burst.seconds} s = ${fmt(burst.ordersPerSecond, 1)} orders/s; ` +
            `latency p50/p99 ${burst.latencyMs.p50}/${burst.latencyMs.p99} ms; worker CPU ${burst.workerCpuMsPerOrder ?? '?'} ms/order; ` +
            `machine CPU ${burst.machineCpuBusy === null ? '?' : `${Math.round(burst.machineCpuBusy * 100)}%`} busy` +
            (burst.checks.passed ? '' : `; CHECKS FAILED ${JSON.stringify(burst.checks)}`),
        );
      }
      await Promise.all(workers.map((worker) => worker.stop()));
      workers = [];
      await store.close();
      store = undefined;
      await schema.drop();
      schema = undefined;

      const cpu = bursts.map((b) => b.workerCpuMsPerOrder).filter((v): v is number => v !== null);
      const busy = bursts.map((b) => b.machineCpuBusy).filter((v): v is number => v !== null);
      const medianRate = round(median(bursts.map((b) => b.ordersPerSecond)), 1);
      phases.push({
        workers: count,
        startSeconds,
        warmup,
        bursts,
        medianOrdersPerSecond: medianRate,
        speedup: round(medianRate / (phases[0]?.medianOrdersPerSecond ?? medianRate), 2),
        medianWorkerCpuMsPerOrder: cpu.length === bursts.length ? round(median(cpu), 2) : null,
        medianMachineCpuBusy: busy.length === bursts.length ? round(median(busy), 3) : null,
        loadAverage: { atStart: loadAtPhaseStart, atEnd: loadavg().map((v) => round(v, 2)) },
      });
    }
  } finally {
    await cleanup();
  }

  const { outDir, ...parameters } = options;
  const checksPassed = phases.every((phase) => phase.bursts.every((b) => b.checks.passed));
  const results: Results = {
    benchmark: 'workers',
    description: 'orders/s of a burst through 1, 2 and 4 `npm run worker` processes on one PostgreSQL database and one broker',
    date: new Date().toISOString(),
    command: COMMAND,
    machine: { ...machineFacts(), rabbitmq, loadAverage: { atStart: loadAtStart, atEnd: loadavg().map((v) => round(v, 2)) } },
    parameters: {
      ...parameters,
      vhost: VHOST,
      store: 'PostgreSQL, a fresh schema per phase',
      triggers,
      messageBytes: orderEvent(randomUUID(), 'bench-0000000-burst-1', ITEM).body.length,
    },
    phases,
    checksPassed,
    elapsedSeconds: round((performance.now() - started) / 1000, 1),
  };
  await writeResultFile(join(outDir, 'workers.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeResultFile(join(outDir, 'workers.md'), markdown(results));
  console.log(`wrote ${relative(process.cwd(), join(outDir, 'workers.json'))} and workers.md in ${results.elapsedSeconds} s`);
  for (const phase of phases)
    console.log(`${phase.workers} worker(s): ${fmt(phase.medianOrdersPerSecond, 1)} orders/s (x ${fmt(phase.speedup, 2)})`);
  if (!checksPassed) throw new Error('some orders were not decided, notified exactly once, or left outbox rows: see workers.json');
}

function markdown(r: Results): string {
  const { machine: m, parameters: p } = r;
  const max = Math.max(...r.phases.map((phase) => phase.medianOrdersPerSecond));
  const lines = [
    '# Scale-out benchmark (worker processes)',
    '',
    `Orders/s of a burst with ${r.phases.map((phase) => phase.workers).join(', ')} worker processes (\`npm run worker\`: every queue ` +
      `function of serverless.yml in-process, handlers bundled with esbuild, the outbox relay beside them; triggers ${p.triggers}; ` +
      `concurrency ${p.concurrency ?? 1} per function and worker; LOG_LEVEL ${p.logLevel}) sharing one PostgreSQL database (a fresh ` +
      `schema per worker count) and one RabbitMQ vhost (\`${p.vhost}\`, the run's own). Each burst is bench:pipeline's: ` +
      `${fmt(p.orders)} orders inserted first (status accepted, as intake does), then their OrderPlaced events (${p.messageBytes} bytes, ` +
      `persistent) published with confirms to \`orders\`; an order is done when it is decided **and** notified; orders/s from the ` +
      `first publish to the last order done. ${Math.round(p.unknownShare * 100)}% of the orders are for an unknown item (rejected). ` +
      `Per worker count: the workers start, an unreported warm-up of ${fmt(p.warmup)} orders, then ${p.repeats} measured bursts ` +
      '(median reported). Every order is checked: decided, notified, one notification each, outbox drained.',
    '',
    `Run ${r.date} on ${m.cpus} x ${m.cpuModel}, node ${m.node}, RabbitMQ ${m.rabbitmq} and PostgreSQL on the same machine; ` +
      `${r.elapsedSeconds} s in all; load average ${m.loadAverage.atStart[0]} at the start, ${m.loadAverage.atEnd[0]} at the end ` +
      '(per phase below). **The machine is shared and noisy**, and the workers, the broker and the database share its ' +
      `${m.cpus} cores: more worker processes can only help as far as there is CPU left for them.`,
    '',
    '| workers | orders/s (median) | x first | per-burst orders/s | latency p50 / p99 ms (median burst) | worker CPU ms/order | machine CPU busy | load average at start / end | checks |',
    '| ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | :---: |',
    ...r.phases.map((phase) => {
      const mid = [...phase.bursts].sort((a, b) => a.ordersPerSecond - b.ordersPerSecond)[Math.floor(phase.bursts.length / 2)]!;
      return (
        `| ${phase.workers} | ${fmt(phase.medianOrdersPerSecond, 1)} | ${fmt(phase.speedup, 2)} | ` +
        `${phase.bursts.map((b) => fmt(b.ordersPerSecond, 1)).join(', ')} | ${fmt(mid.latencyMs.p50)} / ${fmt(mid.latencyMs.p99)} | ` +
        `${phase.medianWorkerCpuMsPerOrder === null ? 'n/a' : fmt(phase.medianWorkerCpuMsPerOrder, 2)} | ` +
        `${phase.medianMachineCpuBusy === null ? 'n/a' : `${Math.round(phase.medianMachineCpuBusy * 100)}%`} | ` +
        `${phase.loadAverage.atStart[0]} / ${phase.loadAverage.atEnd[0]} | ${phase.bursts.every((b) => b.checks.passed) ? 'passed' : '**failed**'} |`
      );
    }),
    '',
    '```',
    ...r.phases.map(
      (phase) =>
        `${`${phase.workers} worker${phase.workers === 1 ? '' : 's'}`.padEnd(10)} ${bar(phase.medianOrdersPerSecond, max)} ${fmt(phase.medianOrdersPerSecond, 1)} orders/s`,
    ),
    '```',
    '',
    'x first: median orders/s over that of the first row. Worker CPU: user + system time of all the worker processes during ' +
      'the burst (Linux /proc), per order. Machine CPU busy: the share of all cores busy during the burst, whoever used them ' +
      '(workers, RabbitMQ, PostgreSQL, this process, anything else on the machine). Near 100% the cores are the limit: ' +
      'another worker process then only splits the same CPU more ways (its CPU per order rises) and adds no throughput; ' +
      'scaling out needs more cores or machines to put the workers on. ' +
      (p.items === 1
        ? "Every order (but the unknown-item ones) reserves the same item, as in bench:pipeline: each worker's " +
          "inventoryReservation batch is one transaction that updates that item's one stock row, so the workers' batches " +
          "also wait for each other's commits on its row lock (spread over 100 items with `--items`, the curve did not " +
          'change: a batch of 100 records touches nearly all of them).'
        : `The orders are spread over ${fmt(p.items)} items in turn. A batch holds every stock row it updated until it ` +
          "commits, so a batch that shares even one row with another worker's open batch still waits for that commit " +
          '(with no more items than a batch has records, nearly every batch does).'),
    '',
    'Reproduce (RabbitMQ at `AMQP_URL` with `rabbitmqctl` or its management API, PostgreSQL at `TEST_DATABASE_URL`; options: `npm run bench:workers -- --help`):',
    '',
    '```sh',
    COMMAND,
    '```',
    '',
    'Every figure, per burst: `workers.json`.',
    '',
  ];
  return lines.join('\n');
}

main().catch((error: unknown) => {
  console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
});
