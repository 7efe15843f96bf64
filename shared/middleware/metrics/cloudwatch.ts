/**
 * CloudWatch metrics for a deployed queue function, in the embedded metric format (EMF): one JSON line on
 * standard output per invocation that CloudWatch Logs turns into metrics, written by Powertools for AWS Lambda's
 * Metrics and its middy middleware (`logMetrics`). Off unless `enabled`; the app turns it on in Lambda.
 *
 * Per invocation, under the namespace and with the dimensions `service`, `function` and `queue`:
 *   Records, RecordsProcessed, RecordsDuplicate, RecordsRetried, RecordsDeadLettered   (Count, from the batch report)
 *   InvocationErrors   (Count: 1 when the invocation threw, its batch to be redelivered)
 *   BatchDuration      (Milliseconds, from the middleware's `before` to its `after` or `onError`)
 *   MessageAge         (Seconds: the age of the batch's oldest record when it began, from the AMQP timestamps;
 *                      absent when no record has one). One value per invocation, not per record, so a batch of
 *                      10,000 still writes one line (Powertools flushes a line at 100 values of one metric).
 * and Powertools' own ColdStart metric.
 *
 * Powertools is imported on the first invocation, not with the module: a function that keeps metrics off never
 * loads it, and one that has them on pays for it once, after its cold import.
 *
 * Put it outside the unit of work (right after the logging), so its `after` runs once the batch committed: a
 * record counts as processed only when its effects did.
 *
 *   middy(handler).use(structuredLogging()).use(cloudWatchMetrics({ enabled: true, namespace: 'orders', service: 'orders' }))
 */
import type middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { parseAmqpTimestamp } from '../rmq-event/timestamp.js';
import { readBatchReport } from './report.js';

export interface CloudWatchMetricsOptions {
  /** Write EMF lines at all. Off: the middleware does nothing and Powertools is never loaded. */
  enabled: boolean;
  /** The CloudWatch namespace of every metric. */
  namespace: string;
  /** The `service` dimension. */
  service: string;
  /** The `function` dimension (default: the Lambda context's function name). */
  functionName?: string;
}

/** Thrown at the first invocation when the options are not usable (an empty namespace or service). */
export class CloudWatchMetricsOptionsError extends Error {
  override readonly name = 'CloudWatchMetricsOptionsError';
}

/** The metric names written (the README lists them for dashboards and alarms). */
const CLOUDWATCH_METRICS = {
  records: 'Records',
  processed: 'RecordsProcessed',
  duplicates: 'RecordsDuplicate',
  retried: 'RecordsRetried',
  deadLettered: 'RecordsDeadLettered',
  errors: 'InvocationErrors',
  duration: 'BatchDuration',
  age: 'MessageAge',
} as const;

type Powertools = typeof import('@aws-lambda-powertools/metrics');
type MetricsInstance = InstanceType<Powertools['Metrics']>;
type Units = Powertools['MetricUnit'];
// Keys of its own in middy's shared `internal` (structured logging keeps its `startedAt` there).
type Internal = { metricsStartedAt?: number; metricsOldest?: number };
type Request = middy.Request<unknown, unknown, Error, Context, Internal>;

interface Loaded {
  metrics: MetricsInstance;
  units: Units;
  flush: middy.MiddlewareObj;
}

/** The queue name and the oldest record's age (seconds) of an `aws:rmq` event, read without decoding it all. */
function queueAndOldest(event: unknown, nowSeconds: number): { queue: string | undefined; oldest: number | undefined } {
  const byQueue = (event as { rmqMessagesByQueue?: unknown } | null)?.rmqMessagesByQueue;
  let oldest: number | undefined;
  let queue: string | undefined;
  if (typeof byQueue !== 'object' || byQueue === null) return { queue, oldest };
  for (const [key, messages] of Object.entries(byQueue)) {
    queue ??= key.split('::')[0];
    if (!Array.isArray(messages)) continue;
    for (const message of messages) {
      const text = (message as { basicProperties?: { timestamp?: unknown } } | null)?.basicProperties?.timestamp;
      const seconds = typeof text === 'string' ? parseAmqpTimestamp(text) : undefined;
      if (seconds !== undefined) oldest = Math.max(oldest ?? 0, nowSeconds - seconds);
    }
  }
  return { queue, oldest };
}

/** Warns on the invocation's logger (structured logging's), or on standard error without one. */
function warn(request: Request, error: unknown, message: string): void {
  const logger = (request.context as Context & { logger?: { warn(o: object, m: string): void } }).logger;
  if (logger) logger.warn({ err: error }, message);
  else console.warn(message, error);
}

export function cloudWatchMetrics(
  options: CloudWatchMetricsOptions | (() => CloudWatchMetricsOptions),
): middy.MiddlewareObj<unknown, unknown, Error, Context> {
  let resolved: CloudWatchMetricsOptions | undefined;
  let loading: Promise<Loaded> | undefined;
  let lastDimensions: string | undefined;
  const settings = () => (resolved ??= typeof options === 'function' ? options() : options);

  const load = (): Promise<Loaded> => {
    loading ??= (async () => {
      const { namespace, service } = settings();
      if (!namespace.trim() || !service.trim())
        throw new CloudWatchMetricsOptionsError(`namespace and service must not be empty (got '${namespace}', '${service}')`);
      const [{ Metrics, MetricUnit }, { logMetrics }] = await Promise.all([
        import('@aws-lambda-powertools/metrics'),
        import('@aws-lambda-powertools/metrics/middleware'),
      ]);
      const metrics = new Metrics({ namespace, serviceName: service });
      return { metrics, units: MetricUnit, flush: logMetrics(metrics, { captureColdStartMetric: true }) as middy.MiddlewareObj };
    })();
    loading.catch(() => (loading = undefined));
    return loading;
  };

  const before = async (request: Request): Promise<void> => {
    if (!settings().enabled) return;
    let loaded: Loaded;
    try {
      loaded = await load();
    } catch (error) {
      // No metrics for this invocation, but the batch runs: metrics must never cost a message.
      warn(request, error, 'CloudWatch metrics unavailable for this invocation');
      return;
    }
    const { metrics, flush } = loaded;
    request.internal.metricsStartedAt = performance.now();
    const { queue, oldest } = queueAndOldest(request.event, Date.now() / 1000);
    request.internal.metricsOldest = oldest;
    // Default dimensions, so they survive Powertools' flush at 100 values; set again only when they change
    // (Powertools warns on every overwrite).
    const dimensions = { function: settings().functionName ?? request.context.functionName, ...(queue ? { queue } : {}) };
    const key = JSON.stringify(dimensions);
    if (key !== lastDimensions) {
      metrics.setDefaultDimensions(dimensions);
      lastDimensions = key;
    }
    await flush.before?.(request as middy.Request);
  };

  /** Adds what every invocation reports, then lets Powertools' middleware write the line. */
  const finish = async (request: Request, failed: boolean): Promise<void> => {
    if (!settings().enabled || request.internal.metricsStartedAt === undefined) return;
    const { metrics, units, flush } = await load();
    const names = CLOUDWATCH_METRICS;
    metrics.addMetric(names.duration, units.Milliseconds, Math.round((performance.now() - request.internal.metricsStartedAt) * 10) / 10);
    metrics.addMetric(names.errors, units.Count, failed ? 1 : 0);
    const oldest = request.internal.metricsOldest;
    if (oldest !== undefined) metrics.addMetric(names.age, units.Seconds, Math.round(oldest * 10) / 10);
    const report = failed ? undefined : readBatchReport(request.response);
    if (report) {
      metrics.addMetric(names.records, units.Count, report.records);
      metrics.addMetric(names.processed, units.Count, report.processed);
      metrics.addMetric(names.duplicates, units.Count, report.duplicates);
      metrics.addMetric(names.retried, units.Count, report.retried);
      metrics.addMetric(names.deadLettered, units.Count, report.deadLettered);
    }
    await (failed ? flush.onError : flush.after)?.(request as middy.Request);
  };

  // Metrics must never turn into the invocation's error: after `after` the batch has committed, and in `onError`
  // the batch's own error is what counts.
  const settle = (request: Request, failed: boolean) =>
    finish(request, failed).catch((error: unknown) => warn(request, error, 'could not write the CloudWatch metrics'));
  return {
    before,
    after: (request) => settle(request as Request, false),
    onError: (request) => settle(request as Request, true),
  } as middy.MiddlewareObj<unknown, unknown, Error, Context>;
}
