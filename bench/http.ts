/**
 * HTTP benchmark: what does `POST /order` cost, beside a trivial handler served the same way?
 *
 * Two ways of serving, each real beside trivial, side by side in one run, at each concurrency (closed loop:
 * every worker sends its next request as soon as the answer is in; a warm-up second is not measured; the order
 * of real and trivial alternates between concurrencies):
 *   - offline: `serverless offline start` as child processes: the real service in this repository (its
 *     orderIntake function, esbuild bundle, SQLite file in a temp dir; its queue functions run too, as with
 *     `npm start`) and bench/offline-service (one trivial function answering 202, httpApi event), loaded over
 *     real HTTP with keep-alive connections by bench/http-load.ts from this process;
 *   - in-process: the Lambda handlers called directly in a loop with API Gateway v2 events (no socket): the
 *     real `handlers/order-intake.handler` (middy + @fastify/aws-lambda + the intake fastify app, storing the
 *     order and its outbox row and publishing OrderPlaced with confirms) versus a tiny fastify app with one
 *     route answering 202, wrapped the same way (@fastify/aws-lambda + middy). One child process per store
 *     (SQLite file, fresh PostgreSQL schema), since the configuration and the store are per process.
 * Everything runs against RabbitMQ in a vhost of the benchmark's own (`bench`, created and deleted here).
 *
 *   npm run bench:http [-- --seconds 8 --concurrency 16,32 --stores sqlite,postgres --modes offline,in-process]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { loadConfig } from '../shared/config';
import { copyService } from '../test/support/offline';
import { type BaselineStore, createBaseline } from './http-baseline';
import { httpPoster, type LoadResult, runLoad, type Send } from './http-load';
import {
  bar,
  benchVhost,
  fmt,
  type LatencySummary,
  machineFacts,
  median,
  postgresSchema,
  round,
  summarizeLatencies,
  writeResultFile,
} from './support';

const serviceDir = resolve(fileURLToPath(new URL('..', import.meta.url)));
const trivialServiceDir = join(serviceDir, 'bench', 'offline-service');
const thisFile = fileURLToPath(import.meta.url);
const COMMAND = 'npm run bench:http';
const VHOST = 'bench';
const ORDER_BODY = () => JSON.stringify({ user_id: 'bench-user', item: 'widget', quantity: 1 });

type StoreKind = 'sqlite' | 'postgres';
/** What the real service runs on through serverless offline, as the results name it. */
const OFFLINE_STORE: Readonly<Record<StoreKind, string>> = { sqlite: 'SQLite file', postgres: 'PostgreSQL schema' };
type Mode = 'offline' | 'in-process' | 'cold-burst';
type Kind = 'real' | 'trivial' | 'baseline';
/** What the issue asks of the figures: real >= 0.8 x the hand-written baseline in-process, >= 0.6 x trivial offline at 16. */
const TARGETS = { vsBaseline: 0.8, offlineVsTrivial: 0.6, offlineConcurrency: 16, coldBurstP99Ms: 2_000 } as const;

interface Options {
  seconds: number;
  warmupSeconds: number;
  maxRequests: number;
  concurrency: number[];
  repeats: number;
  stores: StoreKind[];
  /** The real service's store through serverless offline (offline and cold burst). */
  offlineStore: StoreKind;
  modes: Mode[];
  burst: number;
  outDir: string;
  child: StoreKind | undefined;
  resultFile: string | undefined;
  /** In-process: each case under the V8 CPU profiler, `<store>-<kind>-c<concurrency>-r<round>.cpuprofile` in this directory. */
  cpuProfileDir: string | undefined;
  /** Cold burst: the real server's output, each line stamped with ms since its spawn, into this file (its LOG_LEVEL info). */
  serverLog: string | undefined;
}

const usage = `Usage: npm run bench:http -- [options]
  --seconds S          measured seconds per case (default 8)
  --warmup S           unmeasured seconds before each case (default 1)
  --max-requests N     upper bound on measured requests per case (default 100000)
  --concurrency LIST   closed-loop workers (default 16,32)
  --repeats N          rounds of every closed-loop case; ratios are the median over rounds (default 3)
  --stores LIST        stores for the in-process case (default sqlite,postgres)
  --offline-store S    the real service's store through serverless offline: sqlite (default, as npm start) or postgres
  --modes LIST         offline,in-process,cold-burst (default all three)
  --burst N            concurrent POST /order of the cold burst (default 16)
  --out-dir DIR        where http.json and http.md go (default bench/results)
  --server-log FILE    cold burst: the real server's output (LOG_LEVEL info) into FILE, each line stamped with ms since the spawn
  --cpu-profile DIR    in-process: a CPU profile of each case (node:inspector) into DIR (slows it: not for the committed figures)`;

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '8' },
      warmup: { type: 'string', default: '1' },
      'max-requests': { type: 'string', default: '100000' },
      concurrency: { type: 'string', default: '16,32' },
      repeats: { type: 'string', default: '3' },
      stores: { type: 'string', default: 'sqlite,postgres' },
      'offline-store': { type: 'string', default: 'sqlite' },
      modes: { type: 'string', default: 'offline,in-process,cold-burst' },
      burst: { type: 'string', default: '16' },
      'out-dir': { type: 'string', default: join(serviceDir, 'bench', 'results') },
      child: { type: 'string' },
      'result-file': { type: 'string' },
      'cpu-profile': { type: 'string' },
      'server-log': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const num = (name: string, raw: string, min: number, max: number): number => {
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min || value > max) throw new Error(`--${name} must be in ${min}..${max}, got '${raw}'`);
    return value;
  };
  const list = <T extends string>(name: string, raw: string, allowed: readonly T[]): T[] =>
    raw.split(',').map((part) => {
      const value = part.trim() as T;
      if (!allowed.includes(value)) throw new Error(`--${name}: unknown '${value}' (${allowed.join(', ')})`);
      return value;
    });
  const child = values.child === undefined ? undefined : list('child', values.child, ['sqlite', 'postgres'] as const)[0];
  return {
    seconds: num('seconds', values.seconds, 1, 120),
    warmupSeconds: num('warmup', values.warmup, 0, 30),
    maxRequests: num('max-requests', values['max-requests'], 1, 10_000_000),
    concurrency: values.concurrency.split(',').map((c) => num('concurrency', c.trim(), 1, 1024)),
    repeats: num('repeats', values.repeats, 1, 20),
    stores: list('stores', values.stores, ['sqlite', 'postgres'] as const),
    offlineStore: list('offline-store', values['offline-store'], ['sqlite', 'postgres'] as const)[0]!,
    modes: list('modes', values.modes, ['offline', 'in-process', 'cold-burst'] as const),
    burst: num('burst', values.burst, 1, 256),
    outDir: resolve(values['out-dir']),
    child,
    resultFile: values['result-file'],
    cpuProfileDir: values['cpu-profile'] === undefined ? undefined : resolve(values['cpu-profile']),
    serverLog: values['server-log'] === undefined ? undefined : resolve(values['server-log']),
  };
}

/** The modes that run closed-loop cases. */
type LoadMode = Exclude<Mode, 'cold-burst'>;

interface Case extends LoadResult {
  /** Round (0-based) of --repeats. */
  repeat: number;
  mode: LoadMode;
  store: StoreKind | 'none';
  kind: Kind;
}

/** Every figure is the median over the rounds (--repeats) of the ratio measured within each round. */
interface Ratio {
  mode: LoadMode;
  store: StoreKind;
  concurrency: number;
  /** Real requests/s / trivial requests/s. */
  throughput: number;
  /** Real p50 / trivial p50, and the same for p99. */
  p50: number;
  p99: number;
  /** In-process: real requests/s / the hand-written baseline's requests/s (same store, same concurrency). */
  vsBaseline?: number;
  /** In-process: real p50 / baseline p50, and the same for p99. */
  vsBaselineP50?: number;
  vsBaselineP99?: number;
  /** The throughput ratios of each round, in order (their median is above). */
  rounds: { throughput: number[]; vsBaseline?: number[] };
}

/**
 * Runs the handlers alternately at each concurrency: trivial, real(, baseline) at the first, the reverse at the
 * next, ... so real is always measured right next to each of the others; `--repeats` rounds of that, each round
 * starting the other way round from the one before.
 */
async function sideBySide(
  senders: Partial<Record<Kind, Send>>,
  options: Options,
  label: (kind: Kind, concurrency: number) => Omit<Case, keyof LoadResult | 'repeat'>,
  log: (line: string) => void,
  around: <T>(name: string, run: () => Promise<T>) => Promise<T> = (_name, run) => run(),
): Promise<Case[]> {
  const cases: Case[] = [];
  const kinds = (['trivial', 'real', 'baseline'] as const).filter((kind) => senders[kind]);
  for (let repeat = 0; repeat < options.repeats; repeat++)
    for (const [index, concurrency] of options.concurrency.entries()) {
      const order: Kind[] = (index + repeat) % 2 === 0 ? [...kinds] : [...kinds].reverse();
      for (const kind of order) {
        const labels = label(kind, concurrency);
        const result = await around(`${labels.store}-${kind}-c${concurrency}-r${repeat + 1}`, () =>
          runLoad(senders[kind]!, {
            concurrency,
            seconds: options.seconds,
            warmupSeconds: options.warmupSeconds,
            maxRequests: options.maxRequests,
          }),
        );
        const c = { repeat, ...labels, ...result };
        cases.push(c);
        log(
          `${options.repeats > 1 ? `round ${repeat + 1}: ` : ''}${c.mode} ${c.store} ${kind.padEnd(8)} c=${concurrency}: ${fmt(result.requestsPerSecond, 1)} req/s, p50/p95/p99 ` +
            `${result.latencyMs.p50}/${result.latencyMs.p95}/${result.latencyMs.p99} ms, ${fmt(result.cpuMsPerRequest, 3)} CPU ms/request, ${result.failures} failed${result.firstError ? ` (${result.firstError})` : ''}`,
        );
      }
    }
  return cases;
}

// ---------------------------------------------------------------------------------------------------------------
// In-process child: the handlers called with API Gateway v2 events.

function apiEvent(body: string, seq: number): APIGatewayProxyEventV2 {
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: 'POST /order',
    rawPath: '/order',
    rawQueryString: '',
    headers: {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      host: 'bench.local',
      'user-agent': 'bench-http',
    },
    requestContext: {
      accountId: '123456789012',
      apiId: 'bench',
      domainName: 'bench.local',
      domainPrefix: 'bench',
      http: { method: 'POST', path: '/order', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench-http' },
      requestId: `bench-${seq}`,
      routeKey: 'POST /order',
      stage: '$default',
      time: new Date(now).toISOString(),
      timeEpoch: now,
    },
    body,
    isBase64Encoded: false,
  };
}

function lambdaContext(seq: number): Context {
  const deadline = Date.now() + 30_000;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'bench-orderIntake',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:local-1:000000000000:function:bench-orderIntake',
    memoryLimitInMB: '512',
    awsRequestId: `bench-request-${seq}`,
    logGroupName: '/aws/lambda/bench-orderIntake',
    logStreamName: 'bench',
    getRemainingTimeInMillis: () => deadline - Date.now(),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

type LambdaHttpHandler = (event: APIGatewayProxyEventV2, context: Context) => Promise<{ statusCode?: number } | undefined>;

/** Runs each case under the V8 CPU profiler (node:inspector), writing `<name>.cpuprofile` into `dir`. */
const profiledIn =
  (dir: string) =>
  async <T>(name: string, run: () => Promise<T>): Promise<T> => {
    const { Session } = await import('node:inspector/promises');
    const session = new Session();
    session.connect();
    try {
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
      try {
        return await run();
      } finally {
        const { profile } = await session.post('Profiler.stop');
        await writeResultFile(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
      }
    } finally {
      session.disconnect();
    }
  };

async function runChild(options: Options, store: StoreKind, resultFile: string): Promise<void> {
  const [{ default: awsLambdaFastify }, { default: middy }, { default: fastify }] = await Promise.all([
    import('@fastify/aws-lambda'),
    import('@middy/core'),
    import('fastify'),
  ]);
  // The tables, made by our migrations (the real handler would make them on its first request; the baseline
  // needs them before its first).
  const cfg = loadConfig(process.env);
  const where: BaselineStore =
    store === 'postgres' ? { kind: 'postgres', url: cfg.databaseUrl! } : { kind: 'sqlite', path: cfg.sqlitePath };
  const { openStore } = await import('../shared/store');
  await (await openStore(where.kind === 'postgres' ? { databaseUrl: where.url } : { sqlitePath: where.path })).close();
  const intake = (await import('../handlers/order-intake')) as unknown as { handler: LambdaHttpHandler; app: { close(): Promise<void> } };
  const baseline = await createBaseline(where, cfg.amqpUrls[0]!);
  const tiny = fastify();
  tiny.post('/order', async (_request, reply) => reply.code(202).send({ order_id: 'trivial', status: 'accepted' }));
  await tiny.ready();
  const trivial = middy(awsLambdaFastify<APIGatewayProxyEventV2>(tiny)) as unknown as LambdaHttpHandler;
  let seq = 0;
  const invoke =
    (handler: LambdaHttpHandler): Send =>
    async () => {
      const n = ++seq;
      const result = await handler(apiEvent(ORDER_BODY(), n), lambdaContext(n));
      return result?.statusCode ?? 0;
    };
  try {
    const cases = await sideBySide(
      { real: invoke(intake.handler), trivial: invoke(trivial), baseline: invoke(baseline.handler) },
      options,
      (kind) => ({ mode: 'in-process', store: kind === 'trivial' ? 'none' : store, kind }),
      (line) => console.log(`[${store}] ${line}`),
      options.cpuProfileDir ? profiledIn(options.cpuProfileDir) : undefined,
    );
    await writeResultFile(resultFile, JSON.stringify(cases));
  } finally {
    await tiny.close().catch(() => undefined);
    await baseline.close();
    await intake.app.close().catch(() => undefined);
    const { closeMessaging } = await import('../shared/messaging');
    await closeMessaging().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Parent: vhost, schema, serverless offline, children.

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

interface Offline {
  url: string;
  process: ChildProcess;
  /** From the spawn to the first answer to the readiness probe, and that answer's status. */
  readyAfterMs: number;
  readyStatus: number;
  output(): string;
  stop(): Promise<void>;
}

interface ReadyOptions {
  path?: string;
  /** Any HTTP answer counts (as `npm start` waits for it), not only 200. */
  anyStatus?: boolean;
  /** Between probes (default 500 ms). */
  pollMs?: number;
  /** Every line the server prints, prefixed with the ms since the spawn, appended to this file. */
  logFile?: string;
}

/** `serverless offline start` in `dir` on free ports; resolves once `GET /health` answers (200, unless `anyStatus`). */
async function startOffline(dir: string, env: NodeJS.ProcessEnv, label: string, ready: ReadyOptions = {}): Promise<Offline> {
  const { path: readyPath = '/health', anyStatus = false, pollMs = 500, logFile } = ready;
  const [httpPort, lambdaPort] = [await freePort(), await freePort()];
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [join(serviceDir, 'node_modules/osls/bin/serverless.js'), 'offline', 'start'], {
    cwd: dir,
    env: { ...env, CI: 'true', HTTP_PORT: String(httpPort), LAMBDA_PORT: String(lambdaPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: false,
  });
  // Keep only the tail: serverless-offline prints a line per request.
  let output = '';
  const log = logFile ? createWriteStream(logFile, { flags: 'a' }) : undefined;
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
    const at = (performance.now() - spawnedAt).toFixed(0).padStart(6);
    log?.write(`${chunk.toString().replace(/\n$/, '').replaceAll('\n', `\n${at} `).replace(/^/, `${at} `)}\n`);
  };
  child.once('exit', () => log?.end());
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 180_000;
  let readyStatus = 0;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`serverless offline (${label}) exited with ${child.exitCode}:\n${output}`);
    try {
      // No timeout shorter than a cold start: the first answer is what a user sending requests then would see.
      const response = await fetch(`${url}${readyPath}`, { signal: AbortSignal.timeout(30_000) });
      await response.arrayBuffer();
      if (response.ok || anyStatus) {
        readyStatus = response.status;
        break;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`serverless offline (${label}) did not answer ${readyPath} within 180 s:\n${output}`);
    }
    await sleep(pollMs);
  }
  return {
    url,
    process: child,
    readyAfterMs: round(performance.now() - spawnedAt, 1),
    readyStatus,
    output: () => output,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const exited = once(child, 'exit');
      if (!(await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]))) child.kill('SIGKILL');
    },
  };
}

/** Declares the topology on the broker at `url`, as `npm start` does before it starts serverless offline. */
async function declareTopologyOnce(url: string): Promise<void> {
  const { Broker, declareTopology, topologyOptions } = await import('../shared/messaging');
  const cfg = loadConfig({ ...process.env, AMQP_URL: url, AMQP_URLS: undefined });
  const broker = new Broker({ urls: cfg.amqpUrls, connectionName: 'bench-http-topology', maxAttempts: 1, initialBackoffMs: 100 });
  try {
    await declareTopology(await broker.connect(), topologyOptions(cfg));
  } finally {
    await broker.close();
  }
}

interface ColdBurst {
  /** Concurrent POST /order sent at once. */
  concurrency: number;
  /** From spawning `serverless offline start` to the first answer to GET /health, and its status. */
  startupMs: number;
  healthStatus: number;
  /** Each request's latency, in the order sent. */
  latenciesMs: number[];
  /** Nearest rank: with 16 requests p99 is the slowest. */
  latencyMs: LatencySummary;
  statuses: Record<string, number>;
  failures: number;
  firstError?: string;
  /** p99 below TARGETS.coldBurstP99Ms. */
  meetsTarget: boolean;
}

/** `n` POST /order at once, each on a connection of its own, the moment `server` first answered. */
async function fireColdBurst(server: Offline, n: number): Promise<ColdBurst> {
  const poster = httpPoster(`${server.url}/order`, ORDER_BODY, n, 60_000);
  try {
    const results = await Promise.all(
      Array.from({ length: n }, async () => {
        const t0 = performance.now();
        try {
          const status = String(await poster.send());
          return { ms: performance.now() - t0, status, error: status === '202' ? undefined : `HTTP ${status}` };
        } catch (error) {
          return { ms: performance.now() - t0, status: 'error', error: error instanceof Error ? error.message : String(error) };
        }
      }),
    );
    const statuses: Record<string, number> = {};
    for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    const latencyMs = summarizeLatencies(results.map((r) => r.ms));
    const firstError = results.find((r) => r.error)?.error;
    return {
      concurrency: n,
      startupMs: server.readyAfterMs,
      healthStatus: server.readyStatus,
      latenciesMs: results.map((r) => round(r.ms, 1)),
      latencyMs,
      statuses,
      failures: results.filter((r) => r.error).length,
      ...(firstError ? { firstError } : {}),
      meetsTarget: latencyMs.p99 < TARGETS.coldBurstP99Ms,
    };
  } finally {
    poster.close();
  }
}

interface Results {
  benchmark: 'http';
  description: string;
  date: string;
  command: string;
  machine: ReturnType<typeof machineFacts> & { loadAverage: { atStart: number[]; atEnd: number[] } };
  parameters: Omit<Options, 'outDir' | 'child' | 'resultFile' | 'cpuProfileDir' | 'serverLog'> & {
    vhost: string;
    body: string;
    loadGenerator: string;
    inProcess: string;
    baseline: string;
    offline: string;
    coldBurst: string;
  };
  targets: typeof TARGETS;
  cases: Case[];
  ratios: Ratio[];
  /** Absent when the run had no cold-burst mode. */
  coldBurst?: ColdBurst;
  elapsedSeconds: number;
}

type RoundRatio = Omit<Ratio, 'rounds'>;

/** The ratios of each round (real against the trivial and baseline cases measured right next to it), then their medians. */
function ratios(cases: Case[], stores: StoreKind[]): Ratio[] {
  const perRound: RoundRatio[] = [];
  for (const mode of ['offline', 'in-process'] as const) {
    for (const store of stores) {
      for (const real of cases.filter((c) => c.mode === mode && c.kind === 'real' && c.store === store)) {
        // The trivial case measured next to it: in-process, the one from the same child (listed right before or after).
        const i = cases.indexOf(real);
        const beside = (kind: Kind) =>
          [cases[i - 1], cases[i + 1]].find(
            (c) => c && c.mode === mode && c.kind === kind && c.repeat === real.repeat && c.concurrency === real.concurrency,
          );
        const trivial = beside('trivial');
        if (!trivial) continue;
        // The baseline measured next to it (in-process only), same store and concurrency.
        const baseline = beside('baseline');
        perRound.push({
          mode,
          store,
          concurrency: real.concurrency,
          throughput: real.requestsPerSecond / trivial.requestsPerSecond,
          p50: real.latencyMs.p50 / trivial.latencyMs.p50,
          p99: real.latencyMs.p99 / trivial.latencyMs.p99,
          ...(baseline && baseline.store === store
            ? {
                vsBaseline: real.requestsPerSecond / baseline.requestsPerSecond,
                vsBaselineP50: real.latencyMs.p50 / baseline.latencyMs.p50,
                vsBaselineP99: real.latencyMs.p99 / baseline.latencyMs.p99,
              }
            : {}),
        });
      }
    }
  }
  const out: Ratio[] = [];
  for (const r of perRound) {
    if (out.some((o) => o.mode === r.mode && o.store === r.store && o.concurrency === r.concurrency)) continue;
    const group = perRound.filter((g) => g.mode === r.mode && g.store === r.store && g.concurrency === r.concurrency);
    const med = (pick: (g: RoundRatio) => number | undefined, digits: number) => {
      const values = group.map(pick).filter((v): v is number => v !== undefined);
      return values.length === group.length ? round(median(values), digits) : undefined;
    };
    const vsBaseline = med((g) => g.vsBaseline, 3);
    out.push({
      mode: r.mode,
      store: r.store,
      concurrency: r.concurrency,
      throughput: med((g) => g.throughput, 3)!,
      p50: med((g) => g.p50, 2)!,
      p99: med((g) => g.p99, 2)!,
      ...(vsBaseline === undefined
        ? {}
        : { vsBaseline, vsBaselineP50: med((g) => g.vsBaselineP50, 2)!, vsBaselineP99: med((g) => g.vsBaselineP99, 2)! }),
      rounds: {
        throughput: group.map((g) => round(g.throughput, 3)),
        ...(vsBaseline === undefined ? {} : { vsBaseline: group.map((g) => round(g.vsBaseline!, 3)) }),
      },
    });
  }
  return out;
}

async function runParent(options: Options): Promise<void> {
  const started = performance.now();
  const loadAtStart = loadavg().map((v) => round(v, 2));
  const baseUrl = loadConfig(process.env).amqpUrls[0]!;
  const pgBase = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const tmp = await mkdtemp(join(tmpdir(), 'bench-http-'));
  const vhost = await benchVhost(VHOST, baseUrl);
  const running = new Set<{ stop(): Promise<void> }>();
  let schema: Awaited<ReturnType<typeof postgresSchema>> | undefined;
  let offlineSchema: Awaited<ReturnType<typeof postgresSchema>> | undefined;
  const cleanup = async () => {
    for (const r of running) await r.stop().catch(() => undefined);
    await offlineSchema?.drop().catch((e: unknown) => console.error(`bench: could not drop schema ${offlineSchema?.schema}: ${String(e)}`));
    await schema?.drop().catch((e: unknown) => console.error(`bench: could not drop schema ${schema?.schema}: ${String(e)}`));
    await vhost.remove().catch((e: unknown) => console.error(`bench: could not delete vhost ${VHOST}: ${String(e)}`));
    await rm(tmp, { recursive: true, force: true });
  };
  const interrupt = (signal: NodeJS.Signals) => {
    console.error(`bench: ${signal}; stopping servers, deleting vhost ${VHOST}`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const baseEnv: NodeJS.ProcessEnv = { ...process.env, AMQP_URL: vhost.url, LOG_LEVEL: 'warn' };
  delete baseEnv.AMQP_URLS;
  delete baseEnv.DATABASE_URL;
  const cases: Case[] = [];
  let coldBurst: ColdBurst | undefined;
  let realServer: Offline | undefined;
  try {
    console.log(`vhost '${VHOST}', node ${process.version}, ${machineFacts().cpus} cpus`);
    const burst = options.modes.includes('cold-burst');
    // As `npm start` does: the topology first (the in-process cases too: without the queues every mandatory
    // publish comes back unroutable, which the real handler treats as a failed publish and the baseline ignores).
    await declareTopologyOnce(vhost.url);
    if (burst || options.modes.includes('offline')) {
      // Then serverless offline; the cold burst goes out at the first answer to GET /health (polled every 50 ms,
      // any status, as npm start waits for it).
      console.log(
        `starting serverless offline: the real service (esbuild bundles first)${burst ? `, ${options.burst} concurrent POST /order at its first answer` : ''} ...`,
      );
      if (options.offlineStore === 'postgres') offlineSchema = await postgresSchema(pgBase, 'bench_offline');
      const real = await startOffline(
        // A copy taken when the run starts: serverless-esbuild watches handlers/ and shared/ and, on any edit,
        // rebuilds and drops the warm function instances, so an edit in the checkout would land mid-measurement.
        await copyService(tmp),
        {
          ...baseEnv,
          ...(offlineSchema ? { DATABASE_URL: offlineSchema.url } : { SQLITE_PATH: join(tmp, 'offline.sqlite') }),
          ...(burst && options.serverLog ? { LOG_LEVEL: 'info' } : {}),
        },
        'real service',
        burst ? { anyStatus: true, pollMs: 50, ...(options.serverLog ? { logFile: options.serverLog } : {}) } : {},
      );
      running.add(real);
      realServer = real;
      if (burst) {
        coldBurst = await fireColdBurst(real, options.burst);
        console.log(
          `cold burst: GET /health answered ${coldBurst.healthStatus} ${fmt(coldBurst.startupMs / 1000, 1)} s after the spawn; ` +
            `${coldBurst.concurrency} x POST /order: p50/p99/max ${coldBurst.latencyMs.p50}/${coldBurst.latencyMs.p99}/${coldBurst.latencyMs.max} ms, ` +
            `statuses ${JSON.stringify(coldBurst.statuses)}${coldBurst.firstError ? ` (${coldBurst.firstError})` : ''}`,
        );
      }
      if (!options.modes.includes('offline')) {
        await real.stop();
        running.delete(real);
      }
    }
    if (options.modes.includes('offline') && realServer) {
      const real = realServer;
      console.log('starting serverless offline: the trivial service ...');
      const trivial = await startOffline(trivialServiceDir, baseEnv, 'trivial service');
      running.add(trivial);
      const maxSockets = Math.max(...options.concurrency);
      const posters = {
        real: httpPoster(`${real.url}/order`, ORDER_BODY, maxSockets),
        trivial: httpPoster(`${trivial.url}/order`, ORDER_BODY, maxSockets),
      };
      try {
        cases.push(
          ...(await sideBySide(
            { real: posters.real.send, trivial: posters.trivial.send },
            options,
            (kind) => ({ mode: 'offline', store: kind === 'real' ? options.offlineStore : 'none', kind }),
            (line) => console.log(line),
          )),
        );
      } finally {
        posters.real.close();
        posters.trivial.close();
        for (const server of [real, trivial]) {
          await server.stop();
          running.delete(server);
        }
      }
    }
    if (options.modes.includes('in-process')) {
      for (const store of options.stores) {
        const env: NodeJS.ProcessEnv = { ...baseEnv };
        if (store === 'postgres') {
          schema = await postgresSchema(pgBase, 'bench_http');
          env.DATABASE_URL = schema.url;
        } else {
          env.SQLITE_PATH = join(tmp, 'in-process.sqlite');
        }
        const resultFile = join(tmp, `${store}.json`);
        const args = ['--import', 'tsx', thisFile, '--child', store, '--result-file', resultFile];
        args.push(
          '--seconds',
          String(options.seconds),
          '--warmup',
          String(options.warmupSeconds),
          '--max-requests',
          String(options.maxRequests),
        );
        args.push('--concurrency', options.concurrency.join(','), '--repeats', String(options.repeats));
        if (options.cpuProfileDir) args.push('--cpu-profile', options.cpuProfileDir);
        const child = spawn(process.execPath, args, { env, stdio: 'inherit' });
        const handle = { stop: async () => void (child.exitCode === null && child.kill('SIGKILL')) };
        running.add(handle);
        const timer = setTimeout(
          () => child.kill('SIGKILL'),
          60_000 + options.repeats * options.concurrency.length * 3 * (options.seconds + options.warmupSeconds + 5) * 1000,
        );
        const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
        clearTimeout(timer);
        running.delete(handle);
        if (code !== 0) throw new Error(`the in-process ${store} run failed (exit ${code ?? signal})`);
        cases.push(...(JSON.parse(await readFile(resultFile, 'utf8')) as Case[]));
        await schema?.drop();
      }
    }
  } finally {
    await cleanup();
  }
  const { outDir, child: _c, resultFile: _r, cpuProfileDir: _p, serverLog: _s, ...parameters } = options;
  const results: Results = {
    benchmark: 'http',
    description:
      'POST /order beside a trivial 202 handler, through serverless offline (HTTP) and in-process (handler invoked with API Gateway v2 events), ' +
      'in-process also beside a hand-written baseline doing the same durable work; and a cold burst of concurrent orders at serverless offline start; one run',
    date: new Date().toISOString(),
    command: COMMAND,
    machine: { ...machineFacts(), loadAverage: { atStart: loadAtStart, atEnd: loadavg().map((v) => round(v, 2)) } },
    parameters: {
      ...parameters,
      vhost: VHOST,
      body: ORDER_BODY(),
      loadGenerator:
        'bench/http-load.ts: closed loop, one keep-alive socket per worker (node:http Agent), in the same process as nothing else',
      inProcess: 'the middy handler called directly with API Gateway v2 events, `concurrency` invocations in flight; no socket',
      baseline:
        'bench/http-baseline.ts: one fastify route, body checked by hand, order + outbox row in one transaction (better-sqlite3 begin immediate; ' +
        'pg: one data-modifying WITH), amqplib confirm-channel publish to orders/order.placed awaited, one UPDATE marking the row published; ' +
        'no middy, zod, pino or Kysely; invoked like the real handler with API Gateway v2 events through @fastify/aws-lambda (no middy)',
      offline:
        `serverless offline start (osls + serverless-offline), real service with its queue functions running, ${OFFLINE_STORE[options.offlineStore]}, run from a copy of the ` +
        "service's files taken at the start (the esbuild watch would reload it on any edit in the checkout); trivial service bench/offline-service",
      coldBurst:
        `topology declared, then serverless offline start for the real service (fresh ${OFFLINE_STORE[options.offlineStore]}, esbuild bundles built first, as npm start); ` +
        'GET /health polled every 50 ms, and at its first answer (any status) `burst` POST /order at once, each on a new connection',
    },
    targets: TARGETS,
    cases,
    ratios: ratios(
      cases,
      options.stores.concat(
        options.modes.includes('offline') && !options.stores.includes(options.offlineStore) ? [options.offlineStore] : [],
      ),
    ),
    ...(coldBurst ? { coldBurst } : {}),
    elapsedSeconds: round((performance.now() - started) / 1000, 1),
  };
  await writeResultFile(join(outDir, 'http.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeResultFile(join(outDir, 'http.md'), markdown(results));
  console.log(`wrote ${relative(process.cwd(), join(outDir, 'http.json'))} and http.md in ${results.elapsedSeconds} s`);
  for (const r of results.ratios)
    console.log(
      `${r.mode} ${r.store} c=${r.concurrency}: real/trivial throughput ${fmt(r.throughput, 3)}, p50 x${r.p50}, p99 x${r.p99}` +
        (r.vsBaseline === undefined ? '' : `; real/baseline throughput ${fmt(r.vsBaseline, 3)} (target >= ${TARGETS.vsBaseline})`),
    );
  if (coldBurst)
    console.log(
      `cold burst: p99 ${fmt(coldBurst.latencyMs.p99)} ms (target < ${fmt(TARGETS.coldBurstP99Ms)}: ${coldBurst.meetsTarget ? 'met' : 'missed'})`,
    );
  const failed = cases.filter((c) => c.failures > 0);
  if (failed.length) console.log(`WARNING: ${failed.length} case(s) had failed requests: see http.json`);
}

function markdown(r: Results): string {
  const { machine: m, parameters: p, targets: t } = r;
  const lat = (s: LatencySummary) => `${fmt(s.p50, 2)} / ${fmt(s.p95, 2)} / ${fmt(s.p99, 2)}`;
  const max = Math.max(...r.cases.map((c) => c.requestsPerSecond));
  const verdict = (met: boolean) => (met ? 'met' : '**missed**');
  /** The rounds behind a median, e.g. "(0.61, 0.68, 0.73)". */
  const spread = (values: number[]) => (values.length > 1 ? `(${values.map((v) => fmt(v, 3)).join(', ')})` : '');
  const offline = r.ratios.filter((x) => x.mode === 'offline');
  const vsBaseline = r.ratios.filter((x) => x.vsBaseline !== undefined);
  const burst = r.coldBurst;
  const figures = [
    ...offline
      .filter((x) => x.concurrency === t.offlineConcurrency)
      .map(
        (x) =>
          `| offline (serverless offline, HTTP): real / trivial req/s, ${x.store}, concurrency ${x.concurrency} | ${fmt(x.throughput, 3)} ${spread(x.rounds.throughput)} | >= ${t.offlineVsTrivial} | ${verdict(x.throughput >= t.offlineVsTrivial)} |`,
      ),
    ...vsBaseline.map(
      (x) =>
        `| in-process: real / hand-written baseline req/s, ${x.store}, concurrency ${x.concurrency} | ${fmt(x.vsBaseline!, 3)} ${spread(x.rounds.vsBaseline!)} | >= ${t.vsBaseline} | ${verdict(x.vsBaseline! >= t.vsBaseline)} |`,
    ),
    ...(burst
      ? [
          `| cold burst: p99 of ${burst.concurrency} concurrent POST /order at serverless offline's first answer | ${fmt(burst.latencyMs.p99)} ms | < ${fmt(t.coldBurstP99Ms)} ms | ${verdict(burst.meetsTarget)} |`,
        ]
      : []),
  ];
  const lines = [
    '# HTTP benchmark',
    '',
    '`POST /order` (validate, store the order and its outbox row in one transaction, publish OrderPlaced with confirms, ' +
      'answer 202) beside a trivial handler that answers 202 and does nothing, served the same way, side by side in one run:',
    '',
    `- **offline**: \`serverless offline start\` child processes, loaded over HTTP with keep-alive connections by bench/http-load.ts ` +
      `(closed loop: each of \`concurrency\` workers sends its next request when the answer is in). Real: this service (${OFFLINE_STORE[p.offlineStore]}; ` +
      'its queue functions run too, consuming what the orders produce, as with `npm start`; run from a copy of its files taken when the ' +
      "run starts, since serverless-esbuild's watch reloads it on any edit in the checkout). Trivial: bench/offline-service. " +
      'The load generator shares the 2 cores with the servers.',
    `- **in-process**: the Lambda handler called directly in a loop with API Gateway v2 events, \`concurrency\` invocations in flight, ` +
      'no socket. Real: handlers/order-intake.handler (middy + @fastify/aws-lambda + the intake app + its logging middleware). ' +
      'Trivial: a one-route fastify app wrapped by @fastify/aws-lambda + middy. **Baseline**: bench/http-baseline.ts, the same durable ' +
      "work written by hand without this repository's framework (no middy, zod, pino or Kysely): one fastify route, the body checked " +
      'by hand, order row + outbox row in one transaction (SQLite: better-sqlite3, `begin immediate`, two prepared inserts; ' +
      'PostgreSQL: pg, one data-modifying WITH, as the real store does), an amqplib confirm-channel publish to `orders`/`order.placed` ' +
      'awaited, one UPDATE marking the row published, 202; invoked the same way as the real handler (API Gateway v2 events through ' +
      '@fastify/aws-lambda, whose `inject` runs the route), minus middy. Same database (tables made by our migrations) and broker. ' +
      'One process per store.',
    `- **cold burst**: the topology declared, then \`serverless offline start\` of the real service as \`npm start\` runs it (fresh ` +
      `${OFFLINE_STORE[p.offlineStore]}; the esbuild bundles are built before it listens); \`GET /health\` polled every 50 ms, and at its first answer ` +
      `(any status, as npm start waits for it) ${burst?.concurrency ?? p.burst} \`POST /order\` at once, each on a new connection.`,
    '',
    `${p.seconds} s measured per case after ${p.warmupSeconds} s of warm-up; the handlers alternate which goes first (trivial, real, ` +
      `baseline at one concurrency, the reverse at the next); ${p.repeats} round(s) of every case, each starting the other way round: ` +
      'a ratio is the median of the ratios measured within each round (every round in brackets). RabbitMQ in a ' +
      `vhost of the run's own (\`${p.vhost}\`); handlers' LOG_LEVEL warn. Run ${r.date} on ${m.cpus} x ${m.cpuModel}, node ${m.node}; ` +
      `${r.elapsedSeconds} s in all; load average ${m.loadAverage.atStart[0]} at the start, ${m.loadAverage.atEnd[0]} at the end. ` +
      '**The machine is shared and noisy**: read the ratios, measured side by side, rather than the absolute rates.',
    '',
    '## The figures issue 12 asks for',
    '',
    '| figure | value | target | |',
    '| --- | ---: | ---: | --- |',
    ...figures,
    '',
    '## Every case',
    '',
    '"CPU ms / request": CPU time (user + system) of the process serving the case per request; in-process that is the handler ' +
      'and the load generator (database and broker are other processes), offline only the load generator.',
    '',
    '| round | mode | store | handler | concurrency | requests | req/s | latency ms p50 / p95 / p99 | CPU ms / request | failed |',
    '| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.cases.map(
      (c) =>
        `| ${c.repeat + 1} | ${c.mode} | ${c.store === 'none' ? '' : c.store} | ${c.kind} | ${c.concurrency} | ${fmt(c.requests)} | ${fmt(c.requestsPerSecond, 1)} | ${lat(c.latencyMs)} | ${c.cpuMsPerRequest === undefined ? '' : fmt(c.cpuMsPerRequest, 3)} | ${c.failures} |`,
    ),
    '',
    '## Real / trivial, real / baseline',
    '',
    'Medians over the rounds (each round in brackets).',
    '',
    `| mode | store | concurrency | throughput real / trivial | p50 real / trivial | p99 real / trivial | throughput real / baseline (target >= ${t.vsBaseline}) | p50 real / baseline | p99 real / baseline |`,
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.ratios.map(
      (x) =>
        `| ${x.mode} | ${x.store} | ${x.concurrency} | ${fmt(x.throughput, 3)} ${spread(x.rounds.throughput)} | x ${fmt(x.p50, 2)} | x ${fmt(x.p99, 2)} | ` +
        (x.vsBaseline === undefined
          ? '| | |'
          : `${fmt(x.vsBaseline, 3)} ${spread(x.rounds.vsBaseline!)} | x ${fmt(x.vsBaselineP50!, 2)} | x ${fmt(x.vsBaselineP99!, 2)} |`),
    ),
    '',
    '```',
    ...r.cases.map(
      (c) =>
        `${`${r.parameters.repeats > 1 ? `${c.repeat + 1} ` : ''}${c.mode} ${c.store === 'none' ? '' : `${c.store} `}${c.kind} c${c.concurrency}`.padEnd(34)} ${bar(c.requestsPerSecond, max)} ${fmt(c.requestsPerSecond)} req/s`,
    ),
    '```',
    '',
    ...(burst
      ? [
          '## Cold burst',
          '',
          `\`serverless offline start\` answered \`GET /health\` (${burst.healthStatus}) ${fmt(burst.startupMs / 1000, 1)} s after it was spawned; ` +
            `then ${burst.concurrency} concurrent \`POST /order\`: p50 ${fmt(burst.latencyMs.p50)} ms, p99 ${fmt(burst.latencyMs.p99)} ms, ` +
            `max ${fmt(burst.latencyMs.max)} ms (nearest rank: with ${burst.concurrency} requests p99 is the slowest); ` +
            `answers ${Object.entries(burst.statuses)
              .map(([status, n]) => `${n} x ${status}`)
              .join(', ')}${burst.firstError ? ` (first error: ${burst.firstError})` : ''}. ` +
            `Target p99 < ${fmt(t.coldBurstP99Ms)} ms: ${verdict(burst.meetsTarget)}.`,
          '',
          `Each latency in ms, in the order sent: ${burst.latenciesMs.map((v) => fmt(v)).join(', ')}.`,
          '',
        ]
      : []),
    'Reproduce (RabbitMQ at `AMQP_URL` with `rabbitmqctl` or its management API, PostgreSQL at `TEST_DATABASE_URL`; options: `npm run bench:http -- --help`):',
    '',
    '```sh',
    COMMAND,
    '```',
    '',
    'Every figure: `http.json`.',
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const options = parseOptions();
  if (options.child) {
    if (!options.resultFile) throw new Error('--child needs --result-file');
    await runChild(options, options.child, options.resultFile);
    process.exit(0);
  }
  await runParent(options);
}

main().catch((error: unknown) => {
  console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
});
