/** Helpers every benchmark shares: statistics, machine facts, and writing result files atomically. */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { arch, cpus, platform, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { brokerControl } from '../test/support/broker-control';

/** The middle value (mean of the two middle values for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of `sorted`, which must be sorted ascending; NaN for none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export interface LatencySummary {
  samples: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** p50/p95/p99, mean, min and max of latencies in milliseconds, rounded to microseconds. */
export function summarizeLatencies(values: readonly number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((sum, v) => sum + v, 0) / (sorted.length || 1);
  return {
    samples: sorted.length,
    p50: round(percentile(sorted, 50), 3),
    p95: round(percentile(sorted, 95), 3),
    p99: round(percentile(sorted, 99), 3),
    mean: round(mean, 3),
    min: round(sorted[0] ?? Number.NaN, 3),
    max: round(sorted[sorted.length - 1] ?? Number.NaN, 3),
  };
}

export const round = (value: number, digits = 0): number => {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
};

export interface MachineFacts {
  node: string;
  platform: string;
  arch: string;
  osRelease: string;
  cpus: number;
  cpuModel: string;
  totalMemoryMiB: number;
}

export function machineFacts(): MachineFacts {
  const list = cpus();
  return {
    node: process.version,
    platform: platform(),
    arch: arch(),
    osRelease: release(),
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    totalMemoryMiB: Math.round(totalmem() / 2 ** 20),
  };
}

/** Writes `content` to `file` through a `.tmp` sibling and a rename, so a reader never sees half a file. */
export async function writeResultFile(file: string, content: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, content);
  await rename(temporary, file);
}

/** Rejects with `what` after `ms`, unless `promise` settles first; the timer never keeps the process alive. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A number for a report: thousands separators, `digits` decimals, 'n/a' for NaN/Infinity. */
export const fmt = (value: number, digits = 0): string =>
  Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a';

/** An ASCII bar of `value` against `max`, `width` characters at most (for Markdown reports, inside a code block). */
export function bar(value: number, max: number, width = 40): string {
  if (!(value > 0) || !(max > 0)) return '';
  return '#'.repeat(Math.max(1, Math.round((Math.min(value, max) / max) * width)));
}

/**
 * A RabbitMQ virtual host of the benchmark's own, so that it neither disturbs nor is disturbed by whatever else
 * uses the broker: created afresh, through the tests' broker control (rabbitmqctl or the management API), with
 * every right for the URL's user; `url` is `baseUrl` with the vhost
 * as its path (the code's configuration takes the vhost from AMQP_URL's path). `remove()` deletes it with
 * every queue and exchange in it; safe to call twice.
 */
export async function benchVhost(name: string, baseUrl: string): Promise<{ name: string; url: string; remove(): Promise<void> }> {
  const url = new URL(baseUrl);
  const user = decodeURIComponent(url.username || 'guest');
  const control = await brokerControl();
  // A vhost left behind by an interrupted run is replaced, so every run starts empty.
  await control.deleteVhost(name).catch(() => undefined);
  await control.addVhost(name);
  await control.setPermissions(name, user, '.*', '.*', '.*');
  url.pathname = `/${encodeURIComponent(name)}`;
  let removed = false;
  return {
    name,
    url: url.toString(),
    remove: async () => {
      if (removed) return;
      removed = true;
      await control.deleteVhost(name);
    },
  };
}

/** Sorted queue names in a vhost, to check where a topology was declared. */
export async function vhostQueues(vhost: string): Promise<string[]> {
  return (await brokerControl()).listQueues(vhost);
}

/**
 * A PostgreSQL schema of the benchmark's own (`?options=-c search_path=<schema>`, as the tests do): `url` is
 * `baseUrl` pointed at it; `drop()` removes it with everything in it. Safe to call twice.
 */
export async function postgresSchema(baseUrl: string, prefix: string): Promise<{ schema: string; url: string; drop(): Promise<void> }> {
  const { randomBytes } = await import('node:crypto');
  const { default: pg } = await import('pg');
  const schema = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  try {
    await admin.query(`create schema ${schema}`);
  } finally {
    await admin.end();
  }
  const url = new URL(baseUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  let dropped = false;
  return {
    schema,
    url: url.toString(),
    drop: async () => {
      if (dropped) return;
      dropped = true;
      const client = new pg.Client({ connectionString: baseUrl });
      await client.connect();
      try {
        await client.query(`drop schema if exists ${schema} cascade`);
      } finally {
        await client.end();
      }
    },
  };
}

/** A command-line option that must be an integer in min..max; the error names the flag. */
export function integerOption(name: string, raw: string, min: number, max: number): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new Error(`--${name} must be an integer in ${min}..${max}, got '${raw}'`);
  return value;
}
