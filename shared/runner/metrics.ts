/**
 * The runner's metrics for Prometheus: `GET /metrics` answers the text exposition format (version 0.0.4) with
 * the counts every trigger already keeps (TriggerCounts, the same numbers `npm run status` shows), one series
 * per function and queue, and each mapping's state. Served by the runner of `npm start` (serverless-offline)
 * and of `npm run worker` on METRICS_PORT (default 9464, Prometheus's customary exporter port; `off`: none).
 *
 * Beside them, each trigger's FunctionMetrics: what the function did with the records (processed, duplicates,
 * retried, dead-lettered: decided by its middleware and learnt from the batch report the function returns, see
 * middy-rabbitmq's metrics/report.ts), how long its invocations took, how they failed, and how old each message was when
 * it was delivered (from its AMQP timestamp).
 *
 * Written out by hand rather than through prom-client: the counts live in the triggers, a scrape only reads
 * them, and the format is a few lines of text.
 */
import { createServer, type Server } from 'node:http';
import { type BatchReport, readBatchReport } from 'middy-rabbitmq';
import type { Logger } from 'pino';
import { TriggerDefinitionError } from './definitions.js';
import type { EventSourceMappingStatus, MappingState, TriggerCounts } from './mapping.js';

const DEFAULT_METRICS_PORT = 9464;

const COUNTERS: ReadonlyArray<{ key: keyof TriggerCounts; name: string; help: string }> = [
  { key: 'invocations', name: 'rabbitmq_trigger_invocations_total', help: 'Invocations of the function by this trigger.' },
  {
    key: 'failedInvocations',
    name: 'rabbitmq_trigger_failed_invocations_total',
    help: 'Invocations that threw, timed out or did not load; their batch was requeued.',
  },
  {
    key: 'received',
    name: 'rabbitmq_trigger_records_received_total',
    help: 'Deliveries taken from the queue, redeliveries included.',
  },
  {
    key: 'acked',
    name: 'rabbitmq_trigger_records_acked_total',
    help: 'Deliveries acknowledged (processed, filtered out or dead-lettered).',
  },
  { key: 'requeued', name: 'rabbitmq_trigger_records_requeued_total', help: 'Deliveries returned to the queue (a failed batch, a stop).' },
  {
    key: 'deadLettered',
    name: 'rabbitmq_trigger_records_dead_lettered_total',
    help: 'Deliveries the trigger dead-lettered itself (no aws:rmq form, too large), never shown to the function.',
  },
  {
    key: 'filtered',
    name: 'rabbitmq_trigger_records_filtered_total',
    help: 'Deliveries that matched none of the filter criteria: acknowledged, never invoked.',
  },
  {
    key: 'rejected',
    name: 'rabbitmq_trigger_records_rejected_total',
    help: "Deliveries rejected without requeue to the queue's own dead-lettering.",
  },
];

const STATES: readonly MappingState[] = ['Creating', 'Enabling', 'Enabled', 'Disabling', 'Disabled', 'Updating', 'Deleting', 'Failed'];

/** A label value, escaped as the text format asks (backslash, double quote, newline). */
const label = (value: string) => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

const series = (mapping: EventSourceMappingStatus) =>
  `function="${label(mapping.Local.functionKey)}",queue="${label(mapping.Queues[0] ?? '')}"`;

/** A cumulative histogram with fixed upper bounds, as Prometheus's text format writes one. */
export class Histogram {
  /** Observations at or under each bound (not yet cumulative). */
  private readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }

  observe(value: number): void {
    // A loop, not findIndex: every delivery is observed, and a closure per call shows in the runner's profile.
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }

  /** `le` -> observations at or under it, `+Inf` last. */
  cumulative(): Array<[string, number]> {
    let total = 0;
    const buckets: Array<[string, number]> = [];
    for (let i = 0; i < this.bounds.length; i++) {
      total += this.counts[i]!;
      buckets.push([String(this.bounds[i]), total]);
    }
    buckets.push(['+Inf', this.count]);
    return buckets;
  }
}

/** Invocation durations, seconds: from a few ms (a small batch) to the 15 minutes a Lambda may run. */
const DURATION_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];
/** Message ages at delivery, seconds (AMQP timestamps are whole seconds): from at once to a day behind. */
const AGE_BOUNDS = [1, 2, 5, 10, 30, 60, 300, 900, 3_600, 21_600, 86_400];
/** How far in the future a timestamp may be (another machine's clock) and still count, as age 0. */
const CLOCK_SKEW_SECONDS = 300;

/** Why an invocation failed, as `rabbitmq_function_errors_total` labels it. */
export type InvocationErrorKind = 'error' | 'timeout' | 'not_loaded';

/**
 * What one trigger's function did, beyond what the trigger itself counts: the per-record outcomes its middleware
 * reported, its invocations' durations and failures, and the age of the messages delivered to it.
 */
export class FunctionMetrics {
  /** Per-record outcomes from the functions' batch reports. */
  readonly records = { processed: 0, duplicates: 0, retried: 0, deadLettered: 0 };
  /** Invocations that succeeded without returning a batch report (a function without the queue middleware). */
  unreported = 0;
  readonly errors: Record<InvocationErrorKind, number> = { error: 0, timeout: 0, not_loaded: 0 };
  readonly duration = new Histogram(DURATION_BOUNDS);
  readonly age = new Histogram(AGE_BOUNDS);

  /** A message was delivered: its age, when its AMQP timestamp (whole seconds) is a believable one. */
  delivered(timestamp: unknown, nowMs = Date.now()): void {
    if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < 0) return;
    const age = nowMs / 1000 - timestamp;
    if (age < -CLOCK_SKEW_SECONDS) return; // not a time this message could have been sent at
    this.age.observe(Math.max(0, age));
  }

  /** An invocation of `records` records succeeded in `ms` with `result`, the function's return value. */
  succeeded(ms: number, records: number, result: unknown): BatchReport | undefined {
    this.duration.observe(ms / 1000);
    const report = readBatchReport(result);
    if (!report || report.records !== records) {
      this.unreported++;
      return undefined;
    }
    this.records.processed += report.processed;
    this.records.duplicates += report.duplicates;
    this.records.retried += report.retried;
    this.records.deadLettered += report.deadLettered;
    return report;
  }

  /** An invocation failed after `ms`: it threw, timed out, or its handler did not load. */
  failed(ms: number, kind: InvocationErrorKind): void {
    this.duration.observe(ms / 1000);
    this.errors[kind]++;
  }
}

/** One trigger's function metrics, with the function and queue they are labelled by. */
export interface FunctionSeries {
  functionKey: string;
  queue: string;
  metrics: FunctionMetrics;
}

const OUTCOME_LABELS: ReadonlyArray<[keyof FunctionMetrics['records'], string]> = [
  ['processed', 'processed'],
  ['duplicates', 'duplicate'],
  ['retried', 'retried'],
  ['deadLettered', 'dead_lettered'],
];

function functionLines(functions: readonly FunctionSeries[]): string[] {
  const lines: string[] = [];
  const labels = (f: FunctionSeries) => `function="${label(f.functionKey)}",queue="${label(f.queue)}"`;
  const records = 'rabbitmq_function_records_total';
  lines.push(
    `# HELP ${records} Records by what the function's middleware did with them (its batch report): processed, duplicate (already processed: skipped), retried (republished to the retry path), dead_lettered (to the DLQ). Counted once the invocation succeeded.`,
    `# TYPE ${records} counter`,
  );
  for (const f of functions) {
    for (const [key, outcome] of OUTCOME_LABELS) lines.push(`${records}{${labels(f)},outcome="${outcome}"} ${f.metrics.records[key]}`);
  }
  const unreported = 'rabbitmq_function_unreported_invocations_total';
  lines.push(
    `# HELP ${unreported} Invocations that succeeded without returning a batch report: their records are in no outcome.`,
    `# TYPE ${unreported} counter`,
  );
  for (const f of functions) lines.push(`${unreported}{${labels(f)}} ${f.metrics.unreported}`);
  const errors = 'rabbitmq_function_errors_total';
  lines.push(
    `# HELP ${errors} Invocations that failed, by kind: error (the handler threw), timeout, not_loaded (the handler did not load). Each batch was requeued.`,
    `# TYPE ${errors} counter`,
  );
  for (const f of functions) {
    for (const kind of Object.keys(f.metrics.errors) as InvocationErrorKind[])
      lines.push(`${errors}{${labels(f)},kind="${kind}"} ${f.metrics.errors[kind]}`);
  }
  const histograms: Array<[string, string, (m: FunctionMetrics) => Histogram]> = [
    [
      'rabbitmq_function_batch_duration_seconds',
      'Duration of each invocation (one batch) as the trigger saw it, failed ones included.',
      (m) => m.duration,
    ],
    [
      'rabbitmq_trigger_message_age_seconds',
      'Age of each delivered message (redeliveries included) when the trigger received it, from its AMQP timestamp (whole seconds); messages without one are not counted.',
      (m) => m.age,
    ],
  ];
  for (const [name, help, of] of histograms) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    for (const f of functions) {
      const histogram = of(f.metrics);
      for (const [le, count] of histogram.cumulative()) lines.push(`${name}_bucket{${labels(f)},le="${le}"} ${count}`);
      lines.push(`${name}_sum{${labels(f)}} ${histogram.sum}`, `${name}_count{${labels(f)}} ${histogram.count}`);
    }
  }
  return lines;
}

/** The mappings' counts and states, and the functions' metrics, in Prometheus's text format. */
export function prometheusText(mappings: readonly EventSourceMappingStatus[], functions: readonly FunctionSeries[] = []): string {
  const lines: string[] = [];
  for (const { key, name, help } of COUNTERS) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
    for (const mapping of mappings) lines.push(`${name}{${series(mapping)}} ${mapping.Local.counts[key]}`);
  }
  const state = 'rabbitmq_trigger_state';
  lines.push(`# HELP ${state} The mapping's State as AWS names it (1 for the current one).`, `# TYPE ${state} gauge`);
  for (const mapping of mappings) {
    for (const name of STATES) lines.push(`${state}{${series(mapping)},state="${name}"} ${mapping.State === name ? 1 : 0}`);
  }
  lines.push(...functionLines(functions));
  return `${lines.join('\n')}\n`;
}

/** METRICS_PORT: a port (0 for any free one), `off` for no endpoint; unset: 9464. A bad value: TriggerDefinitionError naming it. */
export function metricsPort(env: Readonly<Record<string, string | undefined>>): number | undefined {
  const raw = env.METRICS_PORT?.trim();
  if (!raw) return DEFAULT_METRICS_PORT;
  if (/^(off|false|none|disabled?)$/i.test(raw)) return undefined;
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65_535)
    throw new TriggerDefinitionError(`METRICS_PORT must be a port number (0-65535) or off, got '${raw}'`);
  return port;
}

export interface MetricsServer {
  /** The port it listens on. */
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` on `port` (every interface, as Prometheus exporters do). A port already taken (another
 * runner on this machine, say) is logged and leaves the runner without an endpoint: it never stops the triggers.
 */
export async function serveMetrics(options: {
  port: number;
  mappings: () => readonly EventSourceMappingStatus[];
  /** The running triggers' function metrics. */
  functions?: () => readonly FunctionSeries[];
  logger: Logger;
}): Promise<MetricsServer | undefined> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      let body: string;
      try {
        body = prometheusText(options.mappings(), options.functions?.() ?? []);
      } catch (error) {
        options.logger.warn({ err: error }, 'could not render the metrics');
        response.writeHead(500).end();
        return;
      }
      response
        .writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
        .end(request.method === 'HEAD' ? undefined : body);
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: the metrics are at /metrics\n');
    }
  });
  const listening = await new Promise<Error | undefined>((resolve) => {
    server.once('error', resolve);
    server.listen(options.port, () => resolve(undefined));
  });
  if (listening) {
    options.logger.warn(
      { err: listening, port: options.port },
      `no metrics endpoint: port ${options.port} is not free (another runner?); set METRICS_PORT to another port, or off`,
    );
    return undefined;
  }
  server.on('error', (error) => options.logger.warn({ err: error }, 'metrics endpoint error'));
  const { port } = server.address() as { port: number };
  options.logger.info({ url: `http://localhost:${port}/metrics` }, 'serving metrics');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
