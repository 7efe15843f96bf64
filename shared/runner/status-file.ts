/**
 * How `npm run status` (or anything else on this machine) learns what the runners are doing: each runner
 * process keeps one JSON file, `<pid>.json`, in the service's status directory (custom.rabbitmqTrigger.statusDir,
 * default `.build/rabbitmq-trigger`): its mappings as AWS describes event source mappings, its broker connection,
 * when it last wrote. Written atomically (a temporary file renamed over it), on every state change and every
 * few seconds; removed when the runner stops cleanly. A file whose process is gone (SIGKILL, a crash) is skipped
 * by readers and deleted by the next runner that starts in the directory.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { EventSourceMappingStatus } from './mapping.js';

/** Where a runner keeps its status file unless custom.rabbitmqTrigger.statusDir says otherwise (relative to the service). */
export const DEFAULT_STATUS_DIR = '.build/rabbitmq-trigger';

/** One runner process, as its status file holds it. */
export interface RunnerProcessStatus {
  pid: number;
  hostname: string;
  /** What runs the triggers: `worker` (npm run worker) or `serverless-offline` (npm start). */
  label: string;
  service?: string;
  stage?: string;
  startedAt: string;
  /** When the runner last wrote the file; it rewrites it every few seconds while it runs. */
  updatedAt: string;
  /** The runner's broker connection (connected, connecting, down, closed) and the last error, if any. */
  broker: { state: string; since: string; lastError?: string };
  /** ListEventSourceMappings' name for the list. */
  EventSourceMappings: EventSourceMappingStatus[];
}

/** A status file as a reader found it. */
export interface FoundRunnerStatus extends RunnerProcessStatus {
  /** Not rewritten for this long although its process lives: the process may be stuck (a blocked event loop). */
  staleForMs?: number;
}

/** How often a runner rewrites its file while it runs (a reader calls it stale after three missed writes). */
export const STATUS_REFRESH_MS = 2_000;

const fileOf = (directory: string, pid: number) => join(directory, `${pid}.json`);

/** Whether a process with this pid runs on this machine (one of another user counts: it runs). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The status files of living runner processes in `directory` (none if it does not exist), oldest process first. */
export function readRunnerStatus(directory: string, now = Date.now()): FoundRunnerStatus[] {
  let names: string[];
  try {
    names = readdirSync(directory).filter((name) => /^\d+\.json$/.test(name));
  } catch {
    return [];
  }
  const found: FoundRunnerStatus[] = [];
  for (const name of names) {
    const pid = Number(name.slice(0, -'.json'.length));
    if (!alive(pid)) continue;
    let status: RunnerProcessStatus;
    try {
      status = JSON.parse(readFileSync(join(directory, name), 'utf8')) as RunnerProcessStatus;
    } catch {
      continue; // removed while listing, or not ours
    }
    if (status.pid !== pid || !Array.isArray(status.EventSourceMappings)) continue;
    const age = now - Date.parse(status.updatedAt);
    found.push(age > STATUS_REFRESH_MS * 3 ? { ...status, staleForMs: age } : status);
  }
  return found.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.pid - b.pid);
}

/** Deletes the status files of processes that are gone (a runner killed without a clean stop left them). */
export function pruneRunnerStatus(directory: string): void {
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch {
    return;
  }
  for (const name of names) {
    const match = /^(\d+)\.json(?:\.[\w-]+\.tmp)?$/.exec(name);
    if (match && !alive(Number(match[1]))) rmSync(join(directory, name), { force: true });
  }
}

/** One process's status file: written atomically, removed on a clean stop. */
export class RunnerStatusFile {
  readonly path: string;

  constructor(
    private readonly directory: string,
    private readonly pid = process.pid,
  ) {
    this.path = fileOf(directory, pid);
  }

  /** Writes the status; a failure (read-only directory, disk full) is returned, never thrown. */
  write(status: Omit<RunnerProcessStatus, 'pid' | 'hostname' | 'updatedAt'>): Error | undefined {
    const full: RunnerProcessStatus = { pid: this.pid, hostname: hostname(), ...status, updatedAt: new Date().toISOString() };
    const temporary = `${this.path}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      mkdirSync(this.directory, { recursive: true });
      writeFileSync(temporary, `${JSON.stringify(full, null, 2)}\n`);
      renameSync(temporary, this.path);
      return undefined;
    } catch (error) {
      rmSync(temporary, { force: true });
      return error as Error;
    }
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}
