/**
 * `serverless offline start` (what `npm start` runs) as a child in its own process group, for tests that drive
 * the whole service over HTTP: waits until the three queue triggers consume, and stops the group afterwards.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cp, mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports';
import { waitFor } from './runner';
import { groupAlive } from './worker-process';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface Offline {
  /** http://localhost:<port> */
  api: string;
  process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts it with `env` on top of this process's environment (AMQP_URL, SQLITE_PATH, ...) and free ports; in `cwd`
 * when given (a copy of the service: see copyService), else in the checkout.
 */
export async function startOffline(env: NodeJS.ProcessEnv, options: { cwd?: string } = {}): Promise<Offline> {
  const httpPort = await freePort();
  let output = '';
  const child = spawn(process.execPath, [join(root, 'node_modules/osls/bin/serverless.js'), 'offline', 'start'], {
    cwd: options.cwd ?? root,
    detached: true,
    env: {
      ...process.env,
      CI: 'true',
      LOG_FORMAT: 'json',
      HTTP_PORT: String(httpPort),
      LAMBDA_PORT: String(await freePort()),
      METRICS_PORT: 'off',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const stop = async () => {
    if (!child.pid || !groupAlive(child.pid)) return;
    process.kill(-child.pid, 'SIGINT');
    await waitFor(() => !groupAlive(child.pid!), 'serverless offline to stop', 30_000).catch(() => process.kill(-child.pid!, 'SIGKILL'));
  };
  try {
    await waitFor(
      () => (output.match(/"message":"consuming"/g) ?? []).length >= 3 || child.exitCode !== null,
      'the three queue triggers to consume',
      150_000,
    );
    if (child.exitCode !== null) throw new Error(`serverless offline exited with ${child.exitCode}`);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}. Output:\n${output.slice(-6_000)}`);
  }
  return { api: `http://localhost:${httpPort}`, process: child, output: () => output, stop };
}

/**
 * A copy of what `serverless offline start` needs of this service in a new directory under `parent` (its
 * node_modules linked), for a test that changes a function's settings without touching the checkout.
 */
export async function copyService(parent: string): Promise<string> {
  const dir = join(parent, 'service');
  await mkdir(dir, { recursive: true });
  for (const entry of ['serverless.yml', 'package.json', 'tsconfig.json', 'functions', 'handlers', 'shared', 'scripts'])
    await cp(join(root, entry), join(dir, entry), { recursive: true });
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return dir;
}
