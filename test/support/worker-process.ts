/**
 * The real standalone worker (`npm run worker`, i.e. shared/runner/worker.ts) as a child process: one
 * process (`node --import tsx`), so a SIGKILL sent to it is the crash the product must survive, with no
 * wrapper process in between. Its output is kept (the last 64 KiB) to explain a failure.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  /** Resolves when the process has ended, with how it ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last lines it printed (stdout and stderr together). */
  output(): string;
  /** How many lines it printed that contain each of the `count` strings given to spawnWorker. */
  counts: Record<string, number>;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const KEEP = 4 * 1024 * 1024;

export function spawnWorker(
  env: NodeJS.ProcessEnv,
  options: {
    args?: string[];
    count?: string[] /** Instead of the worker, another script run the same way (relative to the repository). */;
    script?: string;
  } = {},
): WorkerProcess {
  const args = options.args ?? [];
  const counts: Record<string, number> = Object.fromEntries((options.count ?? []).map((needle) => [needle, 0]));
  // The worker is the trigger package's `bin` (npm run worker), plain JavaScript; another script is TypeScript.
  const command = options.script
    ? ['--import', 'tsx', resolve(ROOT, options.script)]
    : [resolve(ROOT, 'node_modules/.bin/rabbitmq-trigger-worker')];
  const child = spawn(process.execPath, [...command, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let partial = '';
  const keep = (chunk: Buffer) => {
    const text = chunk.toString();
    out += text;
    if (out.length > KEEP) out = out.slice(-KEEP);
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) for (const needle of Object.keys(counts)) if (line.includes(needle)) counts[needle]!++;
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once('exit', (code, signal) => done({ code, signal })),
  );
  return {
    child,
    pid: child.pid!,
    exited,
    output: () => out,
    counts,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Kills every worker still running (afterAll, also after a failure); SIGKILL, so none lingers. */
export async function killAll(workers: Iterable<WorkerProcess>): Promise<void> {
  await Promise.all([...workers].map((worker) => worker.kill('SIGKILL')));
}

/** True while any process of the group `pgid` is alive (signal 0 probes without killing). */
export const groupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
};
