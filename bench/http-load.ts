/**
 * A small, bounded, closed-loop load generator (no dependency): `concurrency` workers, each sending one
 * request at a time and the next as soon as the answer is in, for `seconds` or `maxRequests`, whichever comes
 * first; per-request latency from send to the last byte of the answer. Used over HTTP (keep-alive
 * `http.Agent`, one socket per worker) or in-process (any async function standing in for a request).
 */
import { Agent, request } from 'node:http';
import { type LatencySummary, round, summarizeLatencies } from './support';

export interface LoadResult {
  concurrency: number;
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  latencyMs: LatencySummary;
  /** Answers by status code ('error' for a request that failed without one). */
  statuses: Record<string, number>;
  /** Requests not answered with the expected status. */
  failures: number;
  firstError?: string;
  /**
   * CPU time (user + system) of this process per measured request, ms: in-process, the handler's own cost
   * plus the load generator's (the database and the broker run elsewhere). Less noisy than a rate on a shared machine.
   */
  cpuMsPerRequest: number;
}

export interface LoadOptions {
  concurrency: number;
  /** Measured time; a warm-up of `warmupSeconds` (not measured) runs first. */
  seconds: number;
  warmupSeconds?: number;
  /** Upper bound on measured requests (default unbounded within `seconds`). */
  maxRequests?: number;
  /** Status that counts as success (default 202). */
  expectStatus?: number;
}

/** One request: resolves to the status (or throws). */
export type Send = () => Promise<number>;

/** Runs `send` closed-loop at `concurrency` for the warm-up, then measures for `seconds`. */
export async function runLoad(send: Send, options: LoadOptions): Promise<LoadResult> {
  const expect = options.expectStatus ?? 202;
  const phase = async (seconds: number, maxRequests: number, record: boolean) => {
    const latencies: number[] = [];
    const statuses: Record<string, number> = {};
    let failures = 0;
    let firstError: string | undefined;
    let started = 0;
    const start = performance.now();
    const cpuAtStart = process.cpuUsage();
    const end = start + seconds * 1000;
    const worker = async () => {
      while (performance.now() < end && started < maxRequests) {
        started++;
        const t0 = performance.now();
        let status: string;
        try {
          status = String(await send());
        } catch (error) {
          status = 'error';
          firstError ??= error instanceof Error ? error.message : String(error);
        }
        if (!record) continue;
        latencies.push(performance.now() - t0);
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status !== String(expect)) {
          failures++;
          if (status !== 'error') firstError ??= `HTTP ${status}`;
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, worker));
    const elapsed = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpuAtStart);
    return { latencies, statuses, failures, firstError, elapsed, cpuMs: (cpu.user + cpu.system) / 1000 };
  };
  if (options.warmupSeconds) await phase(options.warmupSeconds, Number.POSITIVE_INFINITY, false);
  const m = await phase(options.seconds, options.maxRequests ?? Number.POSITIVE_INFINITY, true);
  return {
    concurrency: options.concurrency,
    requests: m.latencies.length,
    seconds: round(m.elapsed, 3),
    requestsPerSecond: round(m.latencies.length / m.elapsed, 1),
    latencyMs: summarizeLatencies(m.latencies),
    cpuMsPerRequest: round(m.cpuMs / Math.max(1, m.latencies.length), 3),
    statuses: m.statuses,
    failures: m.failures,
    ...(m.firstError ? { firstError: m.firstError } : {}),
  };
}

/**
 * A `Send` that POSTs `body()` as JSON to `url` over keep-alive connections (at most `sockets` open), reading
 * the whole answer. Each request is bounded by `timeoutMs`.
 */
export function httpPoster(url: string, body: () => string, sockets: number, timeoutMs = 10_000): { send: Send; close(): void } {
  const agent = new Agent({ keepAlive: true, maxSockets: sockets });
  const target = new URL(url);
  const send: Send = () =>
    new Promise<number>((resolve, reject) => {
      const payload = body();
      const req = request(
        {
          agent,
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
          timeout: timeoutMs,
        },
        (res) => {
          res.on('data', () => undefined);
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  return { send, close: () => agent.destroy() };
}
