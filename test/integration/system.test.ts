/**
 * The whole system the way a user runs it: `npm start` (in its own process group, as a terminal runs it),
 * an order placed over HTTP, followed through inventory, notification and the status projection to
 * GET /orders/{id}, then Ctrl-C (SIGINT to the process group) and a clean exit. Plus what `npm start` says
 * when it cannot start.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redactUrl } from '../../shared/config';
import { AMQP_URL } from '../support/amqp';
import { freePort } from '../support/ports';
import { waitFor } from '../support/runner';
import { createVhost } from '../support/vhost';
import { groupAlive } from '../support/worker-process';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');

async function portIsFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, () => server.close(() => resolve(true)));
  });
}

interface Order {
  order_id: string;
  status: string;
  notified_at: string | null;
  reason: string | null;
}

interface System {
  process: ChildProcess;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  api: string;
  httpPort: number;
  metricsPort: number;
}

/** Runs `npm start` in its own process group (like a job in a terminal) and waits for its banner. */
async function startSystem(dir: string, amqpUrl: string): Promise<System> {
  const httpPort = await freePort();
  const lambdaPort = await freePort();
  const closed = await freePort();
  const metricsPort = await freePort();
  let output = '';
  const child = spawn('npm', ['start'], {
    cwd: root,
    detached: true,
    env: {
      ...process.env,
      AMQP_URL: amqpUrl,
      SQLITE_PATH: join(dir, 'app.sqlite'),
      HTTP_PORT: String(httpPort),
      LAMBDA_PORT: String(lambdaPort),
      // The banner's management line is then the same on every machine.
      MANAGEMENT_URL: `http://127.0.0.1:${closed}`,
      METRICS_PORT: String(metricsPort),
      CI: 'true',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  await waitFor(
    () => /rabbit-functions is running/.test(output) || child.exitCode !== null,
    `npm start to print its URLs. Output so far:\n${output}`,
    150_000,
  );
  expect(child.exitCode, output).toBeNull();
  const api = /^\s+API\s+(http:\/\/\S+)$/m.exec(output)?.[1] ?? '';
  return { process: child, output: () => output, exit, api, httpPort, metricsPort };
}

/** After a stop: npm exited 0, every process of the group is gone and the HTTP port is free again. */
async function expectCleanStop(system: System): Promise<void> {
  const { code, signal } = await system.exit;
  expect({ code, signal }, system.output()).toEqual({ code: 0, signal: null });
  expect(system.output()).toContain('"message":"stopped"'); // the RabbitMQ triggers finished their batches and stopped
  expect(system.output()).toContain('[start] stopped.');
  expect(system.output()).not.toContain('killing serverless offline');
  await waitFor(() => !groupAlive(system.process.pid!), 'every process of npm start to end', 10_000);
  expect(await portIsFree(system.httpPort)).toBe(true);
}

describe('npm start: the whole system on this machine', () => {
  const dir = mkdtempSync(join(tmpdir(), 'system-test-'));
  let vhost: Awaited<ReturnType<typeof createVhost>>;
  let system: System;

  beforeAll(async () => {
    vhost = await createVhost('system');
    system = await startSystem(dir, vhost.url);
  }, 240_000);

  afterAll(async () => {
    if (system?.process.pid && groupAlive(system.process.pid)) process.kill(-system.process.pid, 'SIGKILL');
    await vhost?.remove();
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('declares the topology, then prints the API URL, the management UI hint and a curl line for an order', () => {
    const output = system.output();
    const { api } = system;
    expect(output).toContain(`[start] RabbitMQ answers at ${redactUrl(vhost.url)}; topology declared`);
    expect(api).toBe(`http://localhost:${system.httpPort}`);
    // Printed once the queue functions consume (every trigger queue has a consumer).
    expect(output).toMatch(
      /Queue triggers order-events -> inventoryReservation, inventory-events -> notification, order-status-events -> orderStatus, dlq-redrive-jobs -> dlqRedriveJob\n/,
    );
    expect(output).toMatch(
      /Management UI\s+not answering at http:\/\/127\.0\.0\.1:\d+: enable it with `rabbitmq-plugins enable rabbitmq_management`/,
    );
    expect(output).toMatch(/Database\s+SQLite at .*app\.sqlite/);
    expect(output).toContain(`  Metrics        http://localhost:${system.metricsPort}/metrics (Prometheus text`);
    expect(output).toMatch(new RegExp(`  Console        ${api}/console  \\((sign in with ADMIN_TOKEN|set ADMIN_TOKEN to sign in)`));
    expect(output).toContain(
      `curl -s -X POST ${api}/order -H 'content-type: application/json' -d '{"user_id":"user123","item":"Burger","quantity":2}'`,
    );
    expect(output).toContain(`curl -s ${api}/orders/<order_id>`);
  });

  it('takes an order over HTTP and carries it through inventory, notification and the status projection', async () => {
    const { api } = system;
    const placed = await fetch(`${api}/order`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      // The reference system's own example order: reserved from the catalog npm start seeds into its fresh database.
      body: JSON.stringify({ user_id: 'user123', item: 'Burger', quantity: 2 }),
    });
    expect(placed.status).toBe(202);
    const { order_id: orderId, status } = (await placed.json()) as { order_id: string; status: string };
    expect(status).toBe('accepted');

    let order: Order | undefined;
    let last = '';
    await waitFor(
      async () => {
        const response = await fetch(`${api}/orders/${orderId}`);
        last = `${response.status} ${await response.text()}`;
        if (response.status !== 200) return false;
        order = JSON.parse(last.slice(4)) as Order;
        return order.status !== 'accepted' && order.notified_at !== null;
      },
      `order ${orderId} to be reserved and notified`,
      45_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; GET /orders/${orderId} last answered ${last}\n${system.output().slice(-4_000)}`);
    });
    expect(order).toMatchObject({ order_id: orderId, status: 'reserved', reason: null });
    expect(Date.parse(order!.notified_at!)).not.toBeNaN();
  }, 60_000);

  it('stops everything cleanly on Ctrl-C (SIGINT to the process group)', async () => {
    process.kill(-system.process.pid!, 'SIGINT');
    await expectCleanStop(system);
  }, 60_000);
});

describe('npm start and SIGTERM', () => {
  const dir = mkdtempSync(join(tmpdir(), 'system-test-'));
  let vhost: Awaited<ReturnType<typeof createVhost>>;
  let system: System;

  afterAll(async () => {
    if (system?.process.pid && groupAlive(system.process.pid)) process.kill(-system.process.pid, 'SIGKILL');
    await vhost?.remove();
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('stops everything cleanly when only npm gets SIGTERM (as a process manager sends it)', async () => {
    vhost = await createVhost('system');
    system = await startSystem(dir, vhost.url);
    system.process.kill('SIGTERM');
    await expectCleanStop(system);
    expect(system.output()).toContain('[start] SIGTERM: stopping serverless offline');
  }, 180_000);
});

describe('npm start when it cannot start', () => {
  /** Runs scripts/start.ts with `env` on top of a PATH that has node and nothing else (no docker, no rabbitmq-server). */
  async function runStart(env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
    const bin = mkdtempSync(join(tmpdir(), 'start-path-'));
    mkdirSync(bin, { recursive: true });
    symlinkSync(process.execPath, join(bin, 'node'));
    try {
      const child = spawn(process.execPath, [tsx, 'scripts/start.ts'], {
        cwd: root,
        env: { HOME: process.env.HOME, PATH: bin, HTTP_PORT: String(await freePort()), LAMBDA_PORT: String(await freePort()), ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      clearTimeout(timer);
      return { code, output };
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  }

  it('names an invalid setting and stops before touching anything', async () => {
    const run = await runStart({ AMQP_URL: 'http://localhost:5672' });
    expect(run.code).toBe(2);
    expect(run.output).toContain('[start] Invalid configuration: AMQP_URL must be an amqp:// or amqps:// URL');
    expect(run.output).toContain('Fix that variable');
  });

  it('says exactly what to do when RabbitMQ is down here and neither Docker nor rabbitmq-server is available', async () => {
    const port = await freePort();
    const run = await runStart({ AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}` });
    expect(run.code).toBe(1);
    expect(run.output).toContain(`RabbitMQ is not running at amqp://guest:***@127.0.0.1:${port}`);
    expect(run.output).toContain('no Docker engine answers (`docker info` failed) and rabbitmq-server is not installed');
    expect(run.output).toContain('docker compose up -d rabbitmq');
    expect(run.output).toContain('install RabbitMQ');
    expect(run.output).toContain('point AMQP_URL at a RabbitMQ that runs elsewhere');
  });

  it('does not try to start a broker that is not on this machine', async () => {
    const run = await runStart({ AMQP_URL: 'amqp://guest:guest@broker.invalid:5672' });
    expect(run.code).toBe(1);
    expect(run.output).toContain('RabbitMQ unreachable at amqp://guest:***@broker.invalid:5672');
    expect(run.output).toContain('That broker is not on this machine');
  });

  it('says which port is taken', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, resolve));
    const { port } = busy.address() as { port: number };
    try {
      const run = await runStart({ AMQP_URL, HTTP_PORT: String(port) });
      expect(run.code).toBe(1);
      expect(run.output).toContain(`Port ${port} is in use`);
      expect(run.output).toContain('HTTP_PORT=<port>');
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });
});
