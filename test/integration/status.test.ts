/**
 * `npm run status` as a user runs it (a child process), against the real broker over AMQP, and against a
 * management API: a real HTTP server started here that answers /api/queues the way RabbitMQ's management
 * plugin does (its fields as RabbitMQ 3.10-4.x return them with the same `columns`), so the management path
 * is tested on every machine, with or without the plugin. And the RabbitMQ triggers of real `npm run worker`
 * processes, as their status files report them, with AWS's field names.
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { connect, createServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Channel } from 'amqplib';
import { readRunnerStatus } from 'serverless-offline-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { managementTarget } from '../../scripts/lib/management';
import type { StatusReport, TriggersReport } from '../../scripts/status';
import { loadConfig } from '../../shared/config';
import { declareTopology, retryQueueName, topology, topologyOptions } from '../../shared/messaging';
import { AMQP_URL, openTestAmqp, type TestAmqp } from '../support/amqp';
import { uniqueQueue, waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';
import { killAll, spawnWorker, type WorkerProcess } from '../support/worker-process';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsx = fileURLToPath(new URL('../../node_modules/tsx/dist/cli.mjs', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runStatus(env: NodeJS.ProcessEnv, args: string[] = []): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsx, 'scripts/status.ts', ...args], {
      cwd: root,
      env: { ...process.env, LOG_LEVEL: 'silent', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A port nothing listens on: taken from the OS, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// Retry queues with delays of their own make this test's queues: one holds messages, one has a consumer, one
// is never declared. Everything else in the report is the shared contract topology.
const holdingDelay = 3_600_000 + randomInt(1_000_000);
const consumedDelay = holdingDelay + 1;
const missingDelay = holdingDelay + 2;
const env = { AMQP_URL, RETRY_DELAYS_MS: `${holdingDelay},${consumedDelay},${missingDelay}` };
const cfg = loadConfig(env);
const holding = retryQueueName(holdingDelay);
const consumed = retryQueueName(consumedDelay);
const missing = retryQueueName(missingDelay);

describe('npm run status', () => {
  let amqp: TestAmqp;
  let consumerChannel: Channel;
  let unreachable: number;

  beforeAll(async () => {
    amqp = await openTestAmqp();
    unreachable = await closedPort();
    // Everything but the "missing" queue, declared exactly as the topology module declares it.
    await declareTopology(amqp.connection, topologyOptions(loadConfig({ ...env, RETRY_DELAYS_MS: `${holdingDelay},${consumedDelay}` })));
    for (let i = 0; i < 3; i++) amqp.channel.sendToQueue(holding, Buffer.from(`held ${i}`), { persistent: true });
    consumerChannel = await amqp.connection.createChannel();
    await consumerChannel.consume(consumed, () => undefined, { noAck: false });
    // Quorum queues confirm enqueues asynchronously: wait until the broker counts all three.
    const deadline = Date.now() + 10_000;
    while ((await amqp.channel.checkQueue(holding)).messageCount < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  });

  afterAll(async () => {
    await consumerChannel?.close().catch(() => undefined);
    for (const queue of [holding, consumed, missing]) await amqp.channel.deleteQueue(queue).catch(() => undefined);
    await amqp.close();
  });

  describe('over AMQP, when the management API does not answer', () => {
    let report: StatusReport;
    let text: Run;

    beforeAll(async () => {
      const json = await runStatus({ ...env, MANAGEMENT_URL: `http://127.0.0.1:${unreachable}` }, ['--json']);
      expect(json.code, json.stderr).toBe(0);
      report = JSON.parse(json.stdout) as StatusReport;
      text = await runStatus({ ...env, MANAGEMENT_URL: `http://127.0.0.1:${unreachable}` });
    }, 60_000);

    it('says it used AMQP and why, and that rates need the management API', () => {
      expect(report.source).toBe('amqp');
      expect(report.detail).toContain(`the management API at http://127.0.0.1:${unreachable} did not answer`);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain('from AMQP at amqp://guest:***@');
      expect(text.stdout).toContain('Rates need the management API');
      expect(text.stdout).not.toContain('guest:guest');
    });

    it('covers every queue of the topology: work queues, their DLQs, the retry queues and the parking lot', () => {
      expect(report.queues.map((q) => q.name)).toEqual(topology(topologyOptions(cfg)).queues.map((q) => q.name));
      const kinds = Object.fromEntries(report.queues.map((q) => [q.name, q.kind]));
      expect(kinds).toMatchObject({
        'order-events': 'work',
        'inventory-events': 'work',
        'order-status-events': 'work',
        'order-events-dlq': 'dead letters',
        'inventory-events-dlq': 'dead letters',
        'order-status-events-dlq': 'dead letters',
        [holding]: 'retry',
        'parking-lot': 'parking lot',
      });
      for (const q of report.queues.filter((q) => q.kind === 'dead letters' || q.kind === 'work')) {
        expect(q.exists).toBe(true);
        expect(q.messages).toBeTypeOf('number');
        expect(q.consumers).toBeTypeOf('number');
      }
    });

    it("reports a queue's depth and consumers as the broker counts them, without rates", () => {
      const byName = new Map(report.queues.map((q) => [q.name, q]));
      expect(byName.get(holding)).toMatchObject({ exists: true, messages: 3, ready: 3, consumers: 0, rates: null });
      expect(byName.get(consumed)).toMatchObject({ exists: true, messages: 0, consumers: 1, rates: null });
      expect(text.stdout).toMatch(new RegExp(`${holding}\\s+retry\\s+3\\s+0`));
    });

    it('names a queue that is not declared instead of failing', () => {
      expect(report.queues.find((q) => q.name === missing)).toMatchObject({ exists: false, messages: null });
      expect(text.stdout).toMatch(new RegExp(`${missing}\\s+retry\\s+missing: not declared`));
    });
  });

  describe('through the management API when it answers', () => {
    let server: Server;
    let url: string;
    const requests: IncomingMessage[] = [];
    let password = 'guest';

    /** What /api/queues/%2F?columns=... answers, in the management plugin's shape. */
    const listing = () => [
      ...topology(topologyOptions(cfg))
        .queues.filter((q) => ![missing, holding, 'parking-lot'].includes(q.name))
        .map((q) => ({
          name: q.name,
          type: 'quorum',
          state: 'running',
          messages: 0,
          messages_ready: 0,
          messages_unacknowledged: 0,
          consumers: 0,
        })),
      {
        name: holding,
        type: 'quorum',
        state: 'running',
        messages: 12,
        messages_ready: 9,
        messages_unacknowledged: 3,
        consumers: 2,
        message_stats: {
          ack: 40,
          ack_details: { rate: 1.5 },
          deliver_get: 45,
          deliver_get_details: { rate: 2.5 },
          publish: 57,
          publish_details: { rate: 4.2 },
          redeliver: 0,
          redeliver_details: { rate: 0.0 },
        },
      },
      // The plugin lists a queue whose stats are not collected yet without the figures.
      { name: 'parking-lot', type: 'quorum' },
      // Other queues of the virtual host are not the topology's and stay out of the report.
      { name: 'someone-elses-queue', type: 'classic', messages: 5, consumers: 0 },
    ];

    beforeAll(async () => {
      server = createHttpServer((request, response) => {
        requests.push(request);
        const expected = `Basic ${Buffer.from(`guest:${password}`).toString('base64')}`;
        if (request.headers.authorization !== expected) {
          response.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"not_authorised","reason":"Login failed"}');
          return;
        }
        if (request.url?.startsWith('/api/queues/%2F?')) {
          response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(listing()));
          return;
        }
        response.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Object Not Found","reason":"Not Found"}');
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    });

    afterAll(async () => {
      await new Promise((resolve) => server.close(resolve));
    });

    it("asks /api/queues for the broker URL's virtual host with the broker URL's credentials", async () => {
      password = 'guest';
      requests.length = 0;
      const run = await runStatus({ ...env, MANAGEMENT_URL: url }, ['--json']);
      expect(run.code, run.stderr).toBe(0);
      expect(requests).toHaveLength(1);
      const asked = new URL(requests[0]!.url!, url);
      expect(asked.pathname).toBe('/api/queues/%2F');
      expect(asked.searchParams.get('columns')?.split(',')).toEqual(
        expect.arrayContaining(['name', 'messages', 'messages_ready', 'messages_unacknowledged', 'consumers', 'message_stats']),
      );
      const report = JSON.parse(run.stdout) as StatusReport;
      expect(report.source).toBe('management');
      expect(report.detail).toBe(`the management API at ${url}`);
    });

    it('reports depth split into ready and unacknowledged, consumers and rates', async () => {
      password = 'guest';
      const run = await runStatus({ ...env, MANAGEMENT_URL: url }, ['--json']);
      const report = JSON.parse(run.stdout) as StatusReport;
      expect(report.queues.find((q) => q.name === holding)).toEqual({
        name: holding,
        kind: 'retry',
        exists: true,
        messages: 12,
        ready: 9,
        unacknowledged: 3,
        consumers: 2,
        rates: { publish: 4.2, deliver: 2.5, ack: 1.5 },
      });
      expect(report.queues.find((q) => q.name === 'order-events-dlq')).toMatchObject({
        exists: true,
        messages: 0,
        rates: { publish: 0, deliver: 0, ack: 0 },
      });
      expect(report.queues.find((q) => q.name === missing)).toMatchObject({ exists: false });
      expect(report.queues.find((q) => q.name === 'parking-lot')).toMatchObject({ exists: true, messages: null, consumers: null });
      expect(report.queues.map((q) => q.name)).not.toContain('someone-elses-queue');
      const text = await runStatus({ ...env, MANAGEMENT_URL: url });
      expect(text.stdout).toContain(`from the management API at ${url}`);
      expect(text.stdout).toMatch(new RegExp(`${holding}\\s+retry\\s+12\\s+9\\s+3\\s+2\\s+4\\.2\\s+2\\.5\\s+1\\.5`));
    });

    it('falls back to AMQP, saying why, when the management API refuses the credentials', async () => {
      password = 'something-else';
      const run = await runStatus({ ...env, MANAGEMENT_URL: url }, ['--json']);
      expect(run.code, run.stderr).toBe(0);
      const report = JSON.parse(run.stdout) as StatusReport;
      expect(report.source).toBe('amqp');
      expect(report.detail).toContain("refused user 'guest' (401)");
      expect(report.queues.find((q) => q.name === holding)).toMatchObject({ messages: 3, rates: null });
    });
  });

  it("does not guess the management API of a broker on another port (15672 there may be another broker's)", async () => {
    // The real broker behind a TCP proxy on a port of its own: no MANAGEMENT_URL, so only AMQP may be asked.
    const proxy: NetServer = createServer((client) => {
      const upstream = connect(Number(new URL(AMQP_URL).port || 5672), new URL(AMQP_URL).hostname);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as { port: number }).port;
    try {
      const url = new URL(AMQP_URL);
      url.port = String(port);
      const run = await runStatus({ ...env, AMQP_URL: url.toString(), MANAGEMENT_URL: '' }, ['--json']);
      expect(run.code, run.stderr).toBe(0);
      const report = JSON.parse(run.stdout) as StatusReport;
      expect(report.source).toBe('amqp');
      expect(report.detail).toContain(`MANAGEMENT_URL is not set and the broker is not on its default port (${port})`);
      expect(report.queues.find((q) => q.name === holding)).toMatchObject({ messages: 3 });
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('derives the management address from the broker URL, or takes MANAGEMENT_URL', () => {
    const local = managementTarget(loadConfig({ AMQP_URL: 'amqp://app:s%40cret@127.0.0.1:5672' }), {});
    expect(local).toEqual({ url: 'http://127.0.0.1:15672', username: 'app', password: 's@cret', vhost: '/' });
    // Amazon MQ serves the management API over https on the broker's host.
    const amazon = managementTarget(loadConfig({ AMQP_URL: 'amqps://fn:pw@b-1234.mq.eu-west-1.amazonaws.com:5671/orders' }), {});
    expect(amazon).toEqual({ url: 'https://b-1234.mq.eu-west-1.amazonaws.com', username: 'fn', password: 'pw', vhost: 'orders' });
    const configured = managementTarget(loadConfig({ AMQP_URL: 'amqp://guest:guest@10.0.0.5:5672/%2F' }), {
      MANAGEMENT_URL: 'http://admin:adm@10.0.0.5:15673/',
    });
    expect(configured).toEqual({ url: 'http://10.0.0.5:15673', username: 'admin', password: 'adm', vhost: '/' });
    expect(managementTarget(loadConfig({ AMQP_URL: 'amqp://guest:guest@127.0.0.1:5673' }), {}).unknown).toContain(
      'not on its default port (5673)',
    );
  });

  it('fails with a clear message when neither the broker nor the management API can be reached', async () => {
    const run = await runStatus({
      ...env,
      AMQP_URL: `amqp://guest:secret@127.0.0.1:${unreachable}`,
      MANAGEMENT_URL: `http://127.0.0.1:${unreachable}`,
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`status: RabbitMQ unreachable at amqp://guest:***@127.0.0.1:${unreachable}`);
    expect(run.stderr).toContain(`the management API at http://127.0.0.1:${unreachable} did not answer`);
    expect(run.stderr).toContain('Is RabbitMQ running?');
    expect(run.stderr).not.toContain('secret');
  });

  it('names a bad setting instead of trying anything', async () => {
    const run = await runStatus({ AMQP_URL: 'http://not-a-broker' });
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe('status: Invalid configuration: AMQP_URL must be an amqp:// or amqps:// URL');
  });
});

describe('npm run status: the RabbitMQ triggers of every runner process on this machine', () => {
  // Two `npm run worker` processes on a service of their own (no code of this app), in a vhost of the test's own.
  const serviceDir = join(root, 'test/fixtures/offline-service');
  const statusDir = join(serviceDir, '.build/rabbitmq-trigger');
  const queues = { record: uniqueQueue('status-record'), flaky: uniqueQueue('status-flaky'), broken: uniqueQueue('status-broken') };
  const workers: WorkerProcess[] = [];
  let vhost: TestVhost;
  let amqp: VhostAmqp;

  beforeAll(async () => {
    vhost = await createVhost('status-runners');
    amqp = await openAmqp(vhost.url);
    for (const queue of Object.values(queues)) await amqp.channel.assertQueue(queue, { durable: true });
    const workerEnv = {
      AMQP_URL: vhost.url,
      AMQP_URLS: '',
      LOG_LEVEL: 'info',
      RECORD_FILE: join(mkdtempSync(join(tmpdir(), 'status-runners-')), 'records.jsonl'),
      E2E_QUEUE: queues.record,
      E2E_FLAKY_QUEUE: queues.flaky,
      E2E_BROKEN_QUEUE: queues.broken,
    };
    for (let i = 0; i < 2; i++) workers.push(spawnWorker(workerEnv, { args: ['--service-dir', serviceDir] }));
    for (const worker of workers) {
      await waitFor(
        () => (worker.output().match(/"message":"consuming"/g) ?? []).length === 3,
        `a worker's three triggers to consume. Output:\n${worker.output()}`,
        60_000,
      );
    }
  }, 90_000);

  afterAll(async () => {
    await killAll(workers);
    await amqp?.close();
    await vhost?.remove();
  });

  const mappingsOf = (report: TriggersReport, pid: number) => report.EventSourceMappings.filter((m) => m.Local.pid === pid);

  it("shows a Failed trigger with its reason and a healthy one Enabled, OK after a batch; --json with AWS's field names", async () => {
    await amqp.channel.sendToQueue(queues.record, Buffer.from('{"order_id":"o-status"}'), { messageId: 'status-1' });
    // Whichever worker takes it cannot load the handler and gives it back; then the other one cannot either.
    await amqp.channel.sendToQueue(queues.broken, Buffer.from('for nobody'), { messageId: 'status-2' });
    const pids = workers.map((w) => w.pid);
    await waitFor(
      () => {
        const found = readRunnerStatus(statusDir).filter((r) => pids.includes(r.pid));
        const all = found.flatMap((r) => r.EventSourceMappings);
        return (
          found.length === 2 &&
          all.filter((m) => m.Local.functionKey === 'broken' && m.State === 'Failed').length === 2 &&
          all.some((m) => m.Local.functionKey === 'recorder' && m.LastProcessingResult === 'OK')
        );
      },
      'both workers to report the broken trigger Failed and one the recorder OK',
      30_000,
    );

    const json = await runStatus(env, ['--json', '--service-dir', serviceDir]);
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as StatusReport & TriggersReport;
    // Listed oldest process first, whichever of the two started first.
    const runners = report.runners.filter((r) => pids.includes(r.pid));
    expect(runners.map((r) => r.pid).sort()).toEqual([...pids].sort());
    for (const runner of runners) {
      expect(runner).toMatchObject({ label: 'worker', service: 'offline-e2e', stage: 'local', broker: { state: 'connected' } });
    }
    for (const pid of pids) {
      const mine = mappingsOf(report, pid);
      expect(mine.map((m) => [m.Local.functionKey, m.State, m.StateTransitionReason])).toEqual([
        ['recorder', 'Enabled', 'USER_INITIATED'],
        ['flaky', 'Enabled', 'USER_INITIATED'],
        ['broken', 'Failed', 'FUNCTION_CONFIG_NOT_VALID'],
      ]);
      const broken = mine[2]!;
      expect(broken.LastProcessingResult).toMatch(
        /^PROBLEM: Runtime\.HandlerNotFound: Handler 'handler\.missing' of function 'broken' does not export a function named 'missing'$/,
      );
      expect(broken.Local).toMatchObject({
        process: 'worker',
        consumer: 'failed',
        counts: { received: 3, invocations: 3, requeued: 3, acked: 0 },
      });
    }
    // The recorder as GetEventSourceMapping would describe it, from the worker that processed the batch.
    const recorder = report.EventSourceMappings.find((m) => m.Local.functionKey === 'recorder' && m.LastProcessingResult === 'OK')!;
    expect(recorder).toEqual({
      UUID: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      FunctionArn: 'arn:aws:lambda:local-1:000000000000:function:offline-e2e-local-recorder',
      EventSourceArn: 'arn:aws:mq:local-1:000000000000:broker:e2e:b-00000000-0000-0000-0000-000000000000',
      Queues: [queues.record],
      SourceAccessConfigurations: [{ Type: 'VIRTUAL_HOST', URI: '/' }],
      BatchSize: 10,
      MaximumBatchingWindowInSeconds: 0.1,
      FilterCriteria: { Filters: [{ Pattern: '{"data":{"order_id":[{"prefix":"o-"}]}}' }, { Pattern: '{"data":[{"prefix":"plain:"}]}' }] },
      State: 'Enabled',
      StateTransitionReason: 'USER_INITIATED',
      LastModified: expect.any(String),
      LastProcessingResult: 'OK',
      Local: expect.objectContaining({
        functionKey: 'recorder',
        functionName: 'offline-e2e-local-recorder',
        process: 'worker',
        lastProcessingResultAt: expect.any(String),
        counts: expect.objectContaining({ received: 1, acked: 1, filtered: 0, requeued: 0, deadLettered: 0 }),
      }),
    });
    // The same mapping has the same UUID in every process that runs it.
    expect(new Set(report.EventSourceMappings.filter((m) => m.Local.functionKey === 'recorder').map((m) => m.UUID)).size).toBe(1);

    const text = await runStatus(env, ['--service-dir', serviceDir]);
    expect(text.code, text.stderr).toBe(0);
    for (const pid of pids) {
      expect(text.stdout).toContain(`worker pid ${pid}, offline-e2e local`);
      expect(text.stdout).toMatch(
        new RegExp(
          `broken\\s+${queues.broken}\\s+worker ${pid}\\s+Failed\\s+FUNCTION_CONFIG_NOT_VALID\\s+PROBLEM: Runtime\\.HandlerNotFound`,
        ),
      );
    }
    expect(text.stdout).toMatch(
      new RegExp(
        `recorder\\s+${queues.record}\\s+worker \\d+\\s+Enabled\\s+USER_INITIATED\\s+OK \\(\\d\\d:\\d\\d:\\d\\d\\)\\s+1\\s+0\\s+1\\s+0\\s+0`,
      ),
    );
    expect(text.stdout).toContain('Stopped for good');
  }, 60_000);

  it('forgets a runner once it stops: a clean stop removes its file, a killed one is skipped', async () => {
    const [stopped, killed] = workers;
    expect(await stopped!.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(await killed!.kill('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    expect(existsSync(join(statusDir, `${stopped!.pid}.json`))).toBe(false);
    expect(existsSync(join(statusDir, `${killed!.pid}.json`))).toBe(true); // left behind, but its process is gone
    const json = await runStatus(env, ['--json', '--service-dir', serviceDir]);
    const report = JSON.parse(json.stdout) as TriggersReport;
    expect(report.runners.map((r) => r.pid)).not.toContain(killed!.pid);
    expect(report.runners.map((r) => r.pid)).not.toContain(stopped!.pid);
  }, 60_000);
});
