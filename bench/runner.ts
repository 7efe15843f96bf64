/**
 * Runner benchmark: what does the RabbitMQ-trigger runner cost over a bare amqplib consumer?
 *
 * Throughput: for each batch size, both consumers drain the same backlog (N contract-shaped persistent JSON
 * messages, pre-filled with publisher confirms into a fresh quorum queue declared exactly as the runner's
 * topology declares it), side by side in one process, pairs repeated with alternating order:
 *   - plain: amqplib consume, manual acks, prefetch batchSize * 2, one `multiple` ack per batchSize messages
 *     (the same ack frames the runner sends; `--plain-ack each` acks every message instead);
 *   - runner: the standalone worker's stack, a `Runner` with an `InProcessInvoker` over `bundledHandlerLoader`
 *     (esbuild bundle imported in-process) calling the no-op `bench/noop-handler.ts`, concurrency 1, the
 *     given batchSize and a short batching window (its prefetch is batchSize * 2 with concurrency 1).
 * A drain is timed from the first delivery on the consumer's channel to the ack of the last message (and
 * this process's CPU time over the same span is noted), and each queue is checked empty afterwards
 * (unacked messages would be back in it once the channel closed).
 *
 * Latency: single messages published one at a time, a few ms apart, stamped with performance.now(); the
 * runner (window 0) records handler start minus that stamp, the plain consumer its callback time minus it;
 * the runner's own share is also measured per message, from delivery on its channel to handler start.
 *
 * Results: bench/results/runner.json and runner.md. Timings never fail the run; errors (broker down, a
 * drain that does not finish in time, a queue not empty afterwards) do.
 *
 *   npm run bench:runner [-- --batch-sizes 1,10,100 --messages 5000,20000,100000 --repeats 7 --plain-ack batch]
 */

import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib';
import amqp from 'amqplib';
import type { RabbitMQEvent } from 'middy-rabbitmq';
import { bundledHandlerLoader, type HandlerLoader, InProcessInvoker, Runner, type TriggerDefinition } from 'serverless-offline-rabbitmq';
import { appHooks } from '../shared/app/runner-hooks';
import { type Config, loadConfig } from '../shared/config';
import { eventProperties, newEvent } from '../shared/events';
import { createLogger, type Logger } from '../shared/logging';
import { declareTopology, dlqName, topologyOptions } from '../shared/messaging';
import { setBenchProbe } from './noop-handler';
import {
  fmt,
  integerOption as int,
  type LatencySummary,
  machineFacts,
  median,
  round,
  summarizeLatencies,
  withTimeout,
  writeResultFile,
} from './support';

const serviceDir = resolve(fileURLToPath(new URL('..', import.meta.url)));
const COMMAND = 'npm run bench:runner';
/** Issue 12: runner >= 0.9 x plain at every batch size measured. */
const TARGET = { minRatio: 0.9 } as const;
const noop = () => undefined;

interface BenchOptions {
  /** Backlog per drain, one per batch size. */
  messages: number[];
  repeats: number;
  batchSizes: number[];
  windowSeconds: number;
  plainAck: 'batch' | 'each';
  warmupMessages: number;
  latencyMessages: number;
  latencyRounds: number;
  latencySpacingMs: number;
  latencyBatchSize: number;
  budgetSeconds: number;
  outDir: string;
  /** Write a V8 CPU profile of every drain (plain and runner alike) into this directory. */
  cpuProfileDir: string | undefined;
}

const usage = `Usage: npm run bench:runner -- [options]
  --batch-sizes LIST      comma-separated (default 1,10,100)
  --messages N|LIST       backlog per drain: one number for every batch size, or one per batch size
                          (default 5000,20000,100000: each drain lasts about a second or more)
  --repeats N             plain/runner pairs per batch size (default 7)
  --window SECONDS        runner maximumBatchingWindow for throughput (default 0.05)
  --plain-ack MODE        batch: one multiple-ack per batchSize messages, like the runner (default); each: ack every message
  --warmup N              messages per unreported warm-up drain of each consumer (default 2000)
  --latency-messages N    messages per consumer for the latency measurement (default 500)
  --latency-rounds N      alternating rounds the latency messages are split into (default 2)
  --latency-spacing MS    pause between latency publishes (default 5)
  --latency-batch-size N  runner batchSize for the latency measurement, window 0 (default 100)
  --budget SECONDS        stop starting new measurements after this long (default 420)
  --cpu-profile DIR       write a CPU profile (.cpuprofile, node:inspector) of each drain into DIR; profiling
                          slows both consumers, so rates from such a run are not the committed figures
  --out-dir DIR           where runner.json and runner.md go (default bench/results)`;

function parseOptions(): BenchOptions {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '5000,20000,100000' },
      repeats: { type: 'string', default: '7' },
      'batch-sizes': { type: 'string', default: '1,10,100' },
      window: { type: 'string', default: '0.05' },
      'plain-ack': { type: 'string', default: 'batch' },
      warmup: { type: 'string', default: '2000' },
      'latency-messages': { type: 'string', default: '500' },
      'latency-rounds': { type: 'string', default: '2' },
      'latency-spacing': { type: 'string', default: '5' },
      'latency-batch-size': { type: 'string', default: '100' },
      budget: { type: 'string', default: '420' },
      'out-dir': { type: 'string', default: join(serviceDir, 'bench', 'results') },
      'cpu-profile': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const batchSizes = values['batch-sizes'].split(',').map((part) => int('batch-sizes', part.trim(), 1, 10_000));
  let messages = values.messages.split(',').map((part) => int('messages', part.trim(), 1, 1_000_000));
  if (messages.length === 1) messages = batchSizes.map(() => messages[0]!);
  if (messages.length !== batchSizes.length) throw new Error('--messages must be one number or one per batch size');
  const windowSeconds = Number(values.window);
  if (!(windowSeconds >= 0 && windowSeconds <= 5)) throw new Error(`--window must be 0..5 seconds, got '${values.window}'`);
  const plainAck = values['plain-ack'];
  if (plainAck !== 'batch' && plainAck !== 'each') throw new Error(`--plain-ack must be batch or each, got '${plainAck}'`);
  return {
    messages,
    repeats: int('repeats', values.repeats, 1, 20),
    batchSizes,
    windowSeconds,
    plainAck,
    warmupMessages: int('warmup', values.warmup, 0, 100_000),
    latencyMessages: int('latency-messages', values['latency-messages'], 0, 100_000),
    latencyRounds: int('latency-rounds', values['latency-rounds'], 1, 20),
    latencySpacingMs: int('latency-spacing', values['latency-spacing'], 0, 1_000),
    latencyBatchSize: int('latency-batch-size', values['latency-batch-size'], 1, 10_000),
    budgetSeconds: int('budget', values.budget, 10, 3_600),
    outDir: resolve(values['out-dir']),
    cpuProfileDir: values['cpu-profile'] === undefined ? undefined : resolve(values['cpu-profile']),
  };
}

/** One drain of a backlog by one consumer. */
interface Drain {
  messages: number;
  seconds: number;
  rate: number;
  /** Handler invocations (runner) or ack frames (plain). */
  batches: number;
  /** This process's CPU time (user + system) during the drain, per message, in microseconds. */
  cpuMicrosPerMessage: number;
}

type Kind = 'plain' | 'runner';

class Bench {
  private readonly runId = randomUUID().slice(0, 8);
  /** Queues this run declared and has not deleted yet: deleted (with their DLQs) at the end, also on failure. */
  private readonly created = new Set<string>();
  private readonly url: string;
  private readonly logger: Logger;
  private readonly loader: HandlerLoader;
  private adminConnection: Promise<ChannelModel> | undefined;
  private queueSeq = 0;
  /** Measurements that were disturbed (e.g. a connection closed by someone else's test) and retried. */
  readonly disturbances: Array<{ what: string; error: string }> = [];
  private readonly startedAt = performance.now();

  constructor(
    private readonly config: Config,
    private readonly options: BenchOptions,
  ) {
    this.url = config.amqpUrls[0]!;
    // The runner's own logs at warn, so logging does not dominate what is measured.
    this.logger = createLogger({ level: 'warn' });
    // One loader for every runner in the run: bundled and imported once, like a warm Lambda container.
    this.loader = bundledHandlerLoader(serviceDir, join(serviceDir, 'bench', '.build', 'runner'));
  }

  get elapsedSeconds(): number {
    return (performance.now() - this.startedAt) / 1000;
  }

  get overBudget(): boolean {
    return this.elapsedSeconds > this.options.budgetSeconds;
  }

  async open(): Promise<Record<string, string | undefined>> {
    const admin = await this.admin();
    // Bundle and import the handler now, so no measurement pays for esbuild.
    await this.loader(this.trigger('bench-preload', 1, 0));
    const { product, version, platform, cluster_name: clusterName } = admin.connection.serverProperties;
    return { product, version, platform, clusterName };
  }

  /** The connection for declaring, filling, checking and deleting queues; opened again if it was closed. */
  private admin(): Promise<ChannelModel> {
    this.adminConnection ??= (async () => {
      const connection = await amqp.connect(this.url, {
        clientProperties: { connection_name: `bench-runner-admin-${this.runId}` },
      } as object);
      connection.on('error', noop);
      connection.once('close', () => {
        this.adminConnection = undefined;
      });
      return connection;
    })().catch((error: unknown) => {
      this.adminConnection = undefined;
      throw error;
    });
    return this.adminConnection;
  }

  /**
   * Runs `fn` again (up to three more times, waiting longer each time) when it fails: the broker is shared, and
   * other people's tests close every connection on it or restart it. Each retry is recorded in the results.
   */
  async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    // Long enough in all for a broker restart (rabbitmqctl stop_app / start_app) to finish.
    const waitsMs = [2_000, 5_000, 10_000];
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (attempt >= waitsMs.length || this.overBudget) throw error;
        this.disturbances.push({ what, error: message });
        console.log(`${what}: disturbed (${message}); measuring it again in ${waitsMs[attempt]! / 1000} s`);
        await sleep(waitsMs[attempt]!);
      }
    }
  }

  trigger(queue: string, batchSize: number, windowSeconds: number): TriggerDefinition {
    return {
      functionKey: 'benchNoop',
      functionName: 'rabbit-functions-bench-benchNoop',
      handler: 'bench/noop-handler.handler',
      queue,
      virtualHost: '/',
      brokerArn: undefined,
      batchSize,
      maximumBatchingWindow: windowSeconds,
      enabled: true,
      timeout: 6,
      memorySize: 1024,
    };
  }

  /** A fresh quorum work queue (and its DLQ), declared with the arguments the runner's topology gives it. */
  async newQueue(label: string): Promise<string> {
    const name = `bench-runner-${this.runId}-${++this.queueSeq}-${label}`;
    this.created.add(name);
    await declareTopology(await this.admin(), topologyOptions(this.config, [{ name, bindings: [] }]));
    return name;
  }

  /** Deletes a queue and its DLQ now; if that fails they stay listed for the final cleanup. */
  async dropQueue(name: string): Promise<void> {
    try {
      await deleteQueues(await this.admin(), [name, dlqName(name)]);
      this.created.delete(name);
    } catch {
      // cleanup() tries again over a fresh connection
    }
  }

  /** Deletes every queue this run still has, over a fresh connection (the admin one may be what failed). */
  async cleanup(): Promise<void> {
    const queues = [...this.created].flatMap((name) => [name, dlqName(name)]);
    this.created.clear();
    if (queues.length) {
      const connection = await amqp.connect(this.url).catch(() => undefined);
      if (connection) {
        connection.on('error', noop);
        await deleteQueues(connection, queues).catch(noop);
        await connection.close().catch(noop);
      } else {
        console.error(`bench: could not reach RabbitMQ to delete ${queues.join(', ')}`);
      }
    }
    const admin = this.adminConnection;
    this.adminConnection = undefined;
    await admin?.then((connection) => connection.close()).catch(noop);
  }

  async depth(queue: string): Promise<number> {
    const channel = await (await this.admin()).createChannel();
    channel.on('error', noop);
    try {
      return (await channel.checkQueue(queue)).messageCount;
    } finally {
      await channel.close().catch(noop);
    }
  }

  /** Publishes `count` persistent contract-shaped messages with confirms and checks they are all there. */
  async prefill(queue: string, count: number): Promise<void> {
    const channel = await (await this.admin()).createConfirmChannel();
    channel.on('error', noop);
    try {
      for (let i = 0; i < count; i++) {
        const { body, properties } = orderPlaced();
        if (!channel.sendToQueue(queue, body, properties)) await withTimeout(once(channel, 'drain'), 30_000, 'publish buffer to drain');
        if ((i + 1) % 1_000 === 0) await withTimeout(channel.waitForConfirms(), 30_000, 'publisher confirms');
      }
      await withTimeout(channel.waitForConfirms(), 30_000, 'publisher confirms');
    } finally {
      await channel.close().catch(noop);
    }
    const deadline = Date.now() + 5_000;
    for (;;) {
      const depth = await this.depth(queue);
      if (depth === count) return;
      if (Date.now() > deadline) throw new Error(`Queue ${queue} holds ${depth} messages after pre-filling ${count}`);
      await sleep(50);
    }
  }

  drainTimeoutMs(messages: number): number {
    return Math.max(30_000, messages * 5);
  }

  /** The plain amqplib loop: consume, count, ack (one `multiple` ack per batchSize, or every message). */
  async drainPlain(queue: string, messages: number, batchSize: number): Promise<Drain> {
    const connection = await amqp.connect(this.url, plainSocketOptions(this.runId));
    connection.on('error', noop);
    let count = 0;
    let acks = 0;
    let first: number | undefined;
    let cpuAtFirst: NodeJS.CpuUsage | undefined;
    const ackEach = this.options.plainAck === 'each';
    try {
      const channel = await connection.createChannel();
      channel.on('error', noop);
      await channel.prefetch(batchSize * 2);
      const finished = new Promise<number>((resolveEnd, reject) => {
        // A drain on a connection someone closed would only time out; fail it at once, so it is retried.
        connection.once('close', (error?: Error) => reject(new Error(`plain loop lost its connection: ${error?.message ?? 'closed'}`)));
        void channel.consume(
          queue,
          (message) => {
            if (message === null) return;
            if (first === undefined) {
              first = performance.now();
              cpuAtFirst = process.cpuUsage();
            }
            count++;
            if (ackEach) {
              channel.ack(message);
              acks++;
            } else if (count % batchSize === 0 || count === messages) {
              channel.ack(message, true);
              acks++;
            }
            // After the ack was handed to amqplib, as the runner's end is taken (see drainRunner).
            if (count === messages) setImmediate(() => resolveEnd(performance.now()));
          },
          { noAck: false },
        );
      });
      finished.catch(noop); // handled when awaited below
      const end = await withTimeout(finished, this.drainTimeoutMs(messages), `plain loop draining ${messages} messages`);
      const cpu = process.cpuUsage(cpuAtFirst);
      await channel.close();
      return this.drained('plain', queue, messages, count, first!, end, acks, cpu);
    } finally {
      await connection.close().catch(noop);
    }
  }

  /** The runner as the standalone worker runs it, with the no-op handler. */
  async drainRunner(queue: string, messages: number, batchSize: number): Promise<Drain> {
    const runner = this.runner(queue, batchSize, this.options.windowSeconds);
    let first: number | undefined;
    let cpuAtFirst: NodeJS.CpuUsage | undefined;
    observeDeliveries(runner, () => {
      if (first !== undefined) return;
      first = performance.now();
      cpuAtFirst = process.cpuUsage();
    });
    let count = 0;
    let invocations = 0;
    let resolveEnd!: (at: number) => void;
    const finished = new Promise<number>((resolvePromise, reject) => {
      resolveEnd = resolvePromise;
      // The runner would reconnect and get redeliveries: a disturbed drain, measured again instead.
      runner.broker.once('disconnected', (error?: Error) => reject(new Error(`runner lost its connection: ${error?.message ?? 'closed'}`)));
    });
    finished.catch(noop); // handled when awaited below; this only keeps an early rejection from crashing the run
    setBenchProbe((event) => {
      invocations++;
      for (const batch of Object.values(event.rmqMessagesByQueue)) count += batch.length;
      // The trigger acks in the microtasks that follow the handler's return; the next macrotask sees it done.
      if (count === messages) setImmediate(() => resolveEnd(performance.now()));
    });
    try {
      await withTimeout(runner.start(), 30_000, 'runner start');
      const end = await withTimeout(finished, this.drainTimeoutMs(messages), `runner draining ${messages} messages`);
      const cpu = process.cpuUsage(cpuAtFirst);
      await runner.stop();
      return this.drained('runner', queue, messages, count, first!, end, invocations, cpu);
    } finally {
      setBenchProbe(undefined);
      await runner.stop().catch(noop);
    }
  }

  runner(queue: string, batchSize: number, windowSeconds: number): Runner {
    return new Runner({
      urls: this.config.amqpUrls,
      hooks: appHooks({ relayStore: false }),
      triggers: [this.trigger(queue, batchSize, windowSeconds)],
      invoker: new InProcessInvoker(this.loader),
      logger: this.logger,
      concurrency: 1,
      connectionName: `bench-runner-${this.runId}`,
    });
  }

  private async drained(
    kind: Kind,
    queue: string,
    expected: number,
    count: number,
    first: number,
    end: number,
    batches: number,
    cpu: NodeJS.CpuUsage,
  ): Promise<Drain> {
    if (count !== expected) throw new Error(`${kind} saw ${count} messages, expected ${expected} (redeliveries?)`);
    // The consumer's channel is closed: anything not acked would be back in the queue.
    const left = await this.depth(queue);
    if (left !== 0) throw new Error(`${kind}: ${left} messages left in ${queue} after the drain (not acked)`);
    const seconds = (end - first) / 1000;
    return {
      messages: count,
      seconds: round(seconds, 4),
      rate: round(count / seconds),
      batches,
      cpuMicrosPerMessage: round((cpu.user + cpu.system) / count, 1),
    };
  }

  /**
   * One side-by-side pair: a fresh queue per consumer, both pre-filled first, then drained back to back in
   * `order`, so the two drains are seconds apart and share the machine's conditions as far as possible.
   */
  async pair(label: string, order: readonly Kind[], messages: number, batchSize: number): Promise<Record<Kind, Drain>> {
    const queues = new Map<Kind, string>();
    try {
      for (const kind of order) {
        const queue = await this.newQueue(`${label}-${kind}`);
        queues.set(kind, queue);
        await this.prefill(queue, messages);
      }
      const drains: Partial<Record<Kind, Drain>> = {};
      for (const kind of order) {
        const queue = queues.get(kind)!;
        drains[kind] = await this.profiled(`${label}-${kind}`, () =>
          kind === 'plain' ? this.drainPlain(queue, messages, batchSize) : this.drainRunner(queue, messages, batchSize),
        );
      }
      return drains as Record<Kind, Drain>;
    } finally {
      for (const queue of queues.values()) await this.dropQueue(queue);
    }
  }

  /** Runs `fn` under the V8 CPU profiler when --cpu-profile is set, writing `<label>.cpuprofile`. */
  private async profiled<T>(label: string, fn: () => Promise<T>): Promise<T> {
    const dir = this.options.cpuProfileDir;
    if (!dir) return fn();
    const { Session } = await import('node:inspector/promises');
    const session = new Session();
    session.connect();
    try {
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 100 });
      await session.post('Profiler.start');
      let result: T;
      try {
        result = await fn();
      } finally {
        const { profile } = await session.post('Profiler.stop');
        await writeResultFile(join(dir, `${label}.cpuprofile`), JSON.stringify(profile));
      }
      return result;
    } finally {
      session.disconnect();
    }
  }

  /**
   * Publish-to-consumer latency for `count` single messages published `spacingMs` apart: for the runner from
   * publish to handler start (window 0), for the plain loop from publish to the consume callback.
   */
  async latency(kind: Kind, label: string, count: number): Promise<{ endToEnd: number[]; inRunner: number[] }> {
    const { latencyBatchSize: batchSize, latencySpacingMs: spacingMs } = this.options;
    const queue = await this.newQueue(label);
    const samples: number[] = [];
    // Runner only: delivery on its channel -> handler start, per message (keyed by messageId).
    const inRunner: number[] = [];
    const deliveredAt = new Map<string, number>();
    const stampOf = (body: Buffer): number => (JSON.parse(body.toString()) as { published_at: number }).published_at;
    let connection: ChannelModel | undefined;
    let runner: Runner | undefined;
    let lost: string | undefined;
    try {
      if (kind === 'plain') {
        connection = await amqp.connect(this.url, plainSocketOptions(this.runId));
        connection.on('error', noop);
        connection.once('close', (error?: Error) => (lost ??= `plain consumer lost its connection: ${error?.message ?? 'closed'}`));
        const channel = await connection.createChannel();
        channel.on('error', noop);
        await channel.prefetch(batchSize * 2);
        await channel.consume(
          queue,
          (message: ConsumeMessage | null) => {
            if (message === null) return;
            const at = performance.now();
            samples.push(at - stampOf(message.content));
            channel.ack(message);
          },
          { noAck: false },
        );
      } else {
        runner = this.runner(queue, batchSize, 0);
        runner.broker.once('disconnected', (error?: Error) => (lost ??= `runner lost its connection: ${error?.message ?? 'closed'}`));
        observeDeliveries(runner, (message) => deliveredAt.set(String(message.properties.messageId), performance.now()));
        setBenchProbe((event: RabbitMQEvent, startedAt: number) => {
          for (const batch of Object.values(event.rmqMessagesByQueue)) {
            for (const message of batch) {
              samples.push(startedAt - stampOf(Buffer.from(message.data, 'base64')));
              const delivered = deliveredAt.get(String(message.basicProperties.messageId));
              if (delivered !== undefined) inRunner.push(startedAt - delivered);
            }
          }
        });
        await withTimeout(runner.start(), 30_000, 'runner start');
      }
      const publisher = await (await this.admin()).createChannel();
      publisher.on('error', noop);
      for (let i = 0; i < count && !lost; i++) {
        const { body, properties } = orderPlaced(true);
        publisher.sendToQueue(queue, body, properties);
        await sleep(spacingMs);
      }
      const deadline = Date.now() + 15_000;
      while (samples.length < count || lost) {
        if (lost) throw new Error(lost);
        if (Date.now() > deadline) throw new Error(`${kind}: only ${samples.length} of ${count} latency messages arrived`);
        await sleep(10);
      }
      await publisher.close().catch(noop);
      return { endToEnd: samples, inRunner };
    } finally {
      setBenchProbe(undefined);
      await runner?.stop().catch(noop);
      await connection?.close().catch(noop);
      await this.dropQueue(queue);
    }
  }
}

/**
 * Calls `onDelivery` for every message the runner's consumer channel receives, before the trigger sees it,
 * by wrapping the consume callback of the channels this Runner instance's broker hands out (bench-side
 * instrumentation, nothing in shared/ changes; its cost, one extra call per message, is charged to the runner).
 */
/**
 * The plain loop's connection options: TCP_NODELAY as the runner's Broker sets it (4638b9a), so the two compare like
 * for like; with Nagle on, an ack written while an earlier segment is unacknowledged waits for the broker's ACK.
 */
function plainSocketOptions(runId: string): object {
  return { clientProperties: { connection_name: `bench-plain-${runId}` }, noDelay: true };
}

function observeDeliveries(runner: Runner, onDelivery: (message: ConsumeMessage) => void): void {
  const broker = runner.broker;
  const createChannel = broker.createChannel.bind(broker);
  broker.createChannel = async (): Promise<Channel> => {
    const channel = await createChannel();
    const consume = channel.consume.bind(channel);
    channel.consume = (queue: string, onMessage: (message: ConsumeMessage | null) => void, options?: Options.Consume) =>
      consume(
        queue,
        (message) => {
          if (message) onDelivery(message);
          onMessage(message);
        },
        options,
      );
    return channel;
  };
}

/** A contract OrderPlaced message with the contract's properties; `stamped` adds the publish time. */
function orderPlaced(stamped = false): { body: Buffer; properties: Options.Publish } {
  const event = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'bench-user', item: 'widget', quantity: 1 });
  const properties = eventProperties(event, 'bench', randomUUID());
  const body = stamped ? { ...event, published_at: performance.now() } : event;
  return { body: Buffer.from(JSON.stringify(body)), properties };
}

async function deleteQueues(connection: ChannelModel, queues: readonly string[]): Promise<void> {
  for (const queue of queues) {
    const channel = await connection.createChannel();
    channel.on('error', noop);
    await channel.deleteQueue(queue).catch(noop);
    await channel.close().catch(noop);
  }
}

interface LatencyBlock {
  description: string;
  runner: LatencySummary;
  plain: LatencySummary;
  /** Runner percentile minus plain percentile (independent samples, so noisy; see deliveryToHandlerStart). */
  addedMs: { p50: number; p95: number; p99: number };
  deliveryToHandlerStart: LatencySummary & { description: string };
}

interface Results {
  benchmark: string;
  description: string;
  date: string;
  command: string;
  machine: ReturnType<typeof machineFacts> & {
    rabbitmq: Record<string, string | undefined>;
    /** 1, 5 and 15 minute load averages when the run started and ended: how busy the shared machine was. */
    loadAverage: { atStart: number[]; atEnd: number[] };
  };
  parameters: {
    messageBytes: number;
    messageShape: string;
    queue: string;
    repeats: number;
    order: string;
    ratio: string;
    timing: string;
    plain: { prefetch: string; ack: string };
    runner: { invoker: string; concurrency: number; maximumBatchingWindowSeconds: number; prefetch: string; logLevel: string };
    latency: {
      messagesPerConsumer: number;
      rounds: number;
      spacingMs: number;
      runnerBatchSize: number;
      runnerMaximumBatchingWindowSeconds: number;
    };
    budgetSeconds: number;
  };
  throughput: ThroughputResult[];
  /** `met`: every measured batch size reached minRatio (null when none was measured). */
  target: {
    minRatio: number;
    atEveryBatchSize: true;
    ratios: Array<{ batchSize: number; ratio: number; met: boolean }>;
    met: boolean | null;
  };
  latency: LatencyBlock | null;
  truncated: boolean;
  /** Measurements thrown away and repeated because something outside the bench disturbed them. */
  disturbances: Array<{ what: string; error: string }>;
  elapsedSeconds: number;
}

interface ThroughputResult {
  batchSize: number;
  messagesPerDrain: number;
  prefetch: number;
  plain: { runs: Drain[]; medianRate: number };
  runner: { runs: Drain[]; medianRate: number; meanBatch: number };
  /**
   * The runner/plain ratio: the median of the per-pair ratios. Each pair's two drains run seconds apart, so
   * their ratio cancels most of the machine's drift; the median then drops the odd disturbed pair.
   */
  ratio: number;
  /** Runner rate / plain rate of each side-by-side pair, in repetition order. */
  pairRatios: number[];
  /** Median runner rate / median plain rate (medians taken over drains minutes apart; for reference). */
  ratioOfMedians: number;
  /**
   * Median CPU us/msg of the runner minus that of the plain loop: what the runner itself costs this process
   * per message, a figure much less disturbed by other load than the rates are.
   */
  extraCpuMicrosPerMessage: number;
}

async function main(): Promise<void> {
  const options = parseOptions();
  const loadAtStart = loadavg().map((v) => round(v, 2));
  const config = loadConfig(process.env);
  const bench = new Bench(config, options);
  let interrupted = false;
  const interrupt = (signal: NodeJS.Signals) => {
    interrupted = true;
    console.error(`bench: ${signal}; deleting the temporary queues`);
    void bench.cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const throughput: ThroughputResult[] = [];
  let latency: LatencyBlock | undefined;
  let truncated = false;
  let rabbitmq: Record<string, string | undefined>;
  try {
    rabbitmq = await bench.open();
    console.log(`RabbitMQ ${rabbitmq.version ?? '?'}, node ${process.version}, ${machineFacts().cpus} cpus`);

    if (options.warmupMessages > 0) {
      const warm = await bench.retrying('warm-up', () => bench.pair('warmup', ['plain', 'runner'], options.warmupMessages, 10));
      console.log(`warm-up at batch 10 (not reported): plain ${fmt(warm.plain.rate)} msg/s, runner ${fmt(warm.runner.rate)} msg/s`);
    }

    for (const [index, batchSize] of options.batchSizes.entries()) {
      const messages = options.messages[index]!;
      const result: ThroughputResult = {
        batchSize,
        messagesPerDrain: messages,
        prefetch: batchSize * 2,
        plain: { runs: [], medianRate: Number.NaN },
        runner: { runs: [], medianRate: Number.NaN, meanBatch: Number.NaN },
        ratio: Number.NaN,
        pairRatios: [],
        ratioOfMedians: Number.NaN,
        extraCpuMicrosPerMessage: Number.NaN,
      };
      throughput.push(result);
      for (let rep = 1; rep <= options.repeats && !interrupted; rep++) {
        if (bench.overBudget) {
          truncated = true;
          console.log(`budget of ${options.budgetSeconds} s used up: skipping the rest of batch ${batchSize}`);
          break;
        }
        // Each pair alternates which consumer goes first, so neither always runs on a fresher broker.
        const order: Kind[] = rep % 2 === 1 ? ['plain', 'runner'] : ['runner', 'plain'];
        const pair = await bench.retrying(`batch ${batchSize} rep ${rep}`, () =>
          bench.pair(`b${batchSize}-r${rep}`, order, messages, batchSize),
        );
        for (const kind of order) {
          const drain = pair[kind];
          result[kind].runs.push(drain);
          console.log(
            `batch ${String(batchSize).padStart(3)} rep ${rep} ${kind.padEnd(6)}: ${fmt(drain.rate).padStart(7)} msg/s` +
              ` (${drain.messages} in ${drain.seconds.toFixed(2)} s, ${drain.batches} ${kind === 'plain' ? 'ack frames' : 'invocations'},` +
              ` ${drain.cpuMicrosPerMessage} us CPU/msg)`,
          );
        }
        result.pairRatios.push(round(pair.runner.rate / pair.plain.rate, 3));
      }
      result.plain.medianRate = round(median(result.plain.runs.map((r) => r.rate)));
      result.runner.medianRate = round(median(result.runner.runs.map((r) => r.rate)));
      result.runner.meanBatch = round(
        result.runner.runs.reduce((sum, r) => sum + r.messages, 0) / (result.runner.runs.reduce((sum, r) => sum + r.batches, 0) || 1),
        2,
      );
      result.ratio = round(median(result.pairRatios), 3);
      result.ratioOfMedians = round(result.runner.medianRate / result.plain.medianRate, 3);
      const cpu = (runs: Drain[]) => median(runs.map((r) => r.cpuMicrosPerMessage));
      result.extraCpuMicrosPerMessage = round(cpu(result.runner.runs) - cpu(result.plain.runs), 1);
      console.log(
        `batch ${String(batchSize).padStart(3)}: median rates plain ${fmt(result.plain.medianRate)} msg/s, runner ${fmt(result.runner.medianRate)} msg/s;` +
          ` runner/plain ${fmt(result.ratio, 3)} (median of the pair ratios; ratio of the medians ${fmt(result.ratioOfMedians, 3)});` +
          ` runner CPU +${fmt(result.extraCpuMicrosPerMessage, 1)} us/msg`,
      );
    }

    if (options.latencyMessages > 0 && !interrupted) {
      if (bench.overBudget) {
        truncated = true;
        console.log(`budget of ${options.budgetSeconds} s used up: skipping the latency measurement`);
      } else {
        const samples: Record<Kind, number[]> = { plain: [], runner: [] };
        const inRunnerSamples: number[] = [];
        const perRound = Math.ceil(options.latencyMessages / options.latencyRounds);
        for (let roundNo = 1; roundNo <= options.latencyRounds && !interrupted; roundNo++) {
          const order: Kind[] = roundNo % 2 === 1 ? ['plain', 'runner'] : ['runner', 'plain'];
          for (const kind of order) {
            const count = Math.min(perRound, options.latencyMessages - samples[kind].length);
            if (count === 0) continue;
            const measured = await bench.retrying(`latency round ${roundNo} ${kind}`, () =>
              bench.latency(kind, `lat-r${roundNo}-${kind}`, count),
            );
            samples[kind].push(...measured.endToEnd);
            inRunnerSamples.push(...measured.inRunner);
          }
        }
        const plain = summarizeLatencies(samples.plain);
        const runner = summarizeLatencies(samples.runner);
        const deliveryToHandler = summarizeLatencies(inRunnerSamples);
        const added = (key: 'p50' | 'p95' | 'p99') => round(runner[key] - plain[key], 3);
        latency = {
          description: 'milliseconds from publish to handler start (runner, maximumBatchingWindow 0) and to the consume callback (plain)',
          runner,
          plain,
          addedMs: { p50: added('p50'), p95: added('p95'), p99: added('p99') },
          deliveryToHandlerStart: {
            description: 'milliseconds, per message, inside the runner: its consumer channel receiving the message -> handler start',
            ...deliveryToHandler,
          },
        };
        console.log(
          `latency p50/p95/p99 ms: plain ${plain.p50}/${plain.p95}/${plain.p99}, runner ${runner.p50}/${runner.p95}/${runner.p99},` +
            ` added ${added('p50')}/${added('p95')}/${added('p99')}; inside the runner (delivery -> handler start)` +
            ` ${deliveryToHandler.p50}/${deliveryToHandler.p95}/${deliveryToHandler.p99}`,
        );
      }
    }
  } finally {
    await bench.cleanup();
  }
  if (interrupted) return;

  const ratios = throughput
    .filter((t) => Number.isFinite(t.ratio))
    .map((t) => ({ batchSize: t.batchSize, ratio: t.ratio, met: t.ratio >= TARGET.minRatio }));
  const met = ratios.length ? ratios.every((r) => r.met) : undefined;
  const results: Results = {
    benchmark: 'runner',
    description: 'no-op handler through the standalone runner vs a plain amqplib consume-and-ack loop, same broker, same backlog, one run',
    date: new Date().toISOString(),
    command: COMMAND,
    machine: { ...machineFacts(), rabbitmq, loadAverage: { atStart: loadAtStart, atEnd: loadavg().map((v) => round(v, 2)) } },
    parameters: {
      messageBytes: orderPlaced().body.length,
      messageShape: 'persistent JSON OrderPlaced events with the contract properties, pre-filled with publisher confirms',
      queue: 'a fresh quorum queue per measurement, declared as the runner topology declares work queues',
      repeats: options.repeats,
      order: 'per pair both queues are pre-filled, then drained back to back: plain first in odd repetitions, runner first in even ones',
      ratio: 'median of the per-pair runner/plain ratios (ratioOfMedians for reference)',
      timing: 'first delivery on the consumer channel to the ack of the last message',
      plain: {
        prefetch: 'batchSize * 2',
        ack:
          options.plainAck === 'batch'
            ? 'one multiple-ack per batchSize messages (the runner sends the same frames)'
            : 'one ack per message',
      },
      runner: {
        invoker: 'InProcessInvoker + bundledHandlerLoader (esbuild bundle of bench/noop-handler.ts, imported in-process)',
        concurrency: 1,
        maximumBatchingWindowSeconds: options.windowSeconds,
        prefetch: 'batchSize * (concurrency + 1) = batchSize * 2',
        logLevel: 'warn',
      },
      latency: {
        messagesPerConsumer: options.latencyMessages,
        rounds: options.latencyRounds,
        spacingMs: options.latencySpacingMs,
        runnerBatchSize: options.latencyBatchSize,
        runnerMaximumBatchingWindowSeconds: 0,
      },
      budgetSeconds: options.budgetSeconds,
    },
    throughput,
    target: { ...TARGET, atEveryBatchSize: true, ratios, met: met ?? null },
    latency: latency ?? null,
    truncated,
    disturbances: bench.disturbances,
    elapsedSeconds: round(bench.elapsedSeconds, 1),
  };
  await writeResultFile(join(options.outDir, 'runner.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeResultFile(join(options.outDir, 'runner.md'), markdown(results));
  console.log(`wrote ${relative(process.cwd(), join(options.outDir, 'runner.json'))} and runner.md in ${results.elapsedSeconds} s`);
  const listed = ratios.map((r) => `${r.batchSize}: ${fmt(r.ratio, 3)}`).join(', ');
  if (met === undefined) console.log('TARGET not measured: no batch size finished in this run');
  else console.log(`TARGET ${met ? 'MET' : 'NOT MET'}: runner/plain at every batch size >= ${TARGET.minRatio} (${listed})`);
}

function markdown(results: Results): string {
  const { machine, parameters: p, throughput, latency, target } = results;
  const lines = [
    '# Runner benchmark',
    '',
    `A no-op handler fed through the standalone runner (\`Runner\` + \`InProcessInvoker\` + \`bundledHandlerLoader\`, concurrency 1, ` +
      `maximumBatchingWindow ${p.runner.maximumBatchingWindowSeconds} s) versus a plain amqplib consume-and-ack loop, each draining ` +
      `the same backlog of persistent ${p.messageBytes}-byte JSON messages from a fresh quorum queue, ` +
      `side by side in one run: ${p.repeats} pairs per batch size, alternating which goes first, each drain timed from its ` +
      `first delivery to its last ack. Both consume with prefetch = 2 x batch size on connections with TCP_NODELAY; the plain loop sends ${p.plain.ack}.`,
    '',
    `Run ${results.date} on ${machine.cpus} x ${machine.cpuModel} (${machine.platform} ${machine.osRelease}), node ${machine.node}, ` +
      `${machine.rabbitmq.product ?? 'RabbitMQ'} ${machine.rabbitmq.version ?? '?'} on the same machine; ${results.elapsedSeconds} s in all; ` +
      `load average ${machine.loadAverage.atStart[0]} at the start, ${machine.loadAverage.atEnd[0]} at the end. ` +
      'The machine is shared and noisy: the side-by-side ratios mean more than the absolute rates.',
    '',
    '| batch size | messages per drain | plain msg/s | runner msg/s | runner / plain | per-pair ratios | CPU us/msg plain | CPU us/msg runner | runner extra CPU us/msg |',
    '| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |',
    ...throughput.map((t) => {
      const cpu = (runs: Drain[]) => fmt(median(runs.map((r) => r.cpuMicrosPerMessage)), 1);
      return (
        `| ${t.batchSize} | ${fmt(t.messagesPerDrain)} | ${fmt(t.plain.medianRate)} | ${fmt(t.runner.medianRate)} | ${fmt(t.ratio, 3)} | ` +
        `${t.pairRatios.map((r) => fmt(r, 3)).join(', ')} | ${cpu(t.plain.runs)} | ${cpu(t.runner.runs)} | ${fmt(t.extraCpuMicrosPerMessage, 1)} |`
      );
    }),
    '',
    "Rates: medians over the repetitions. runner / plain: the median of the per-pair ratios (each pair's queues are " +
      "pre-filled first, then drained back to back, so the two drains of a pair share the machine's conditions). " +
      "CPU us/msg: this process's CPU time (user + system) during a drain, per message, median of the repetitions; " +
      "the runner's extra CPU is its own cost, which the rates show only in part, because the broker does most of the work.",
    '',
    target.met === null
      ? `Target (runner >= ${target.minRatio} x plain at every batch size): not measured in this run.`
      : `Target (runner >= ${target.minRatio} x plain at every batch size): **${target.met ? 'met' : 'not met'}** (` +
        `${target.ratios.map((r) => `${r.batchSize}: ${fmt(r.ratio, 3)}${r.met ? '' : ' below'}`).join(', ')}).`,
    '',
  ];
  if (latency) {
    const row = (name: string, s: LatencySummary) => `| ${name} | ${s.p50} | ${s.p95} | ${s.p99} | ${s.mean} | ${s.max} |`;
    lines.push(
      '## Latency, publish to handler start (window 0)',
      '',
      `${fmt(p.latency.messagesPerConsumer)} single messages per consumer, published one at a time ${p.latency.spacingMs} ms apart, ` +
        `stamped with the publishing process's clock (runner batchSize ${p.latency.runnerBatchSize}, maximumBatchingWindow 0). ` +
        'Milliseconds.',
      '',
      '| | p50 | p95 | p99 | mean | max |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      row('plain (publish -> consume callback)', latency.plain),
      row('runner (publish -> handler start)', latency.runner),
      `| added by the runner (runner - plain) | ${latency.addedMs.p50} | ${latency.addedMs.p95} | ${latency.addedMs.p99} | | |`,
      row('inside the runner (delivery on its channel -> handler start)', latency.deliveryToHandlerStart),
      '',
      'The first two rows are independent samples dominated by the broker, so their difference is noisy (it can even be ' +
        'negative); the last row measures, per message, exactly the part the runner adds.',
      '',
    );
  }
  if (results.disturbances.length) {
    lines.push(
      `${results.disturbances.length} measurement(s) were disturbed from outside (e.g. a connection closed by another test on the ` +
        'shared broker), thrown away and repeated; see `disturbances` in runner.json.',
      '',
    );
  }
  if (results.truncated) lines.push('The time budget ran out: some measurements were skipped (see `truncated` in runner.json).', '');
  lines.push(
    'Reproduce (RabbitMQ at `AMQP_URL`, default amqp://guest:guest@127.0.0.1:5672; options: `npm run bench:runner -- --help`):',
    '',
    '```sh',
    COMMAND,
    '```',
    '',
    'Every figure, per repetition: `runner.json`.',
    '',
  );
  return lines.join('\n');
}

main().catch((error: unknown) => {
  console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
});
