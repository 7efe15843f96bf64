/**
 * The batch report: what a queue function's middleware decided for each record of one invocation, returned as
 * the function's result. AWS ignores the result of a function invoked by an Amazon MQ event source mapping, so
 * returning it costs nothing there; locally it is how the RabbitMQ trigger learns the per-record outcomes,
 * whether the function ran in-process (`npm run worker`) or in serverless-offline's worker threads (`npm start`,
 * where the result comes back as the Lambda Invoke API's JSON payload).
 */

/** The whole invocation's report, returned by the handler. */
export interface BatchReport {
  /** Records the function was given. */
  records: number;
  /** Handled and committed (their effects are in the database). */
  processed: number;
  /** Already processed before (a redelivery or a duplicate): skipped. */
  duplicates: number;
  /** Failed with a passing error: republished to the retry path. */
  retried: number;
  /** Failed for good, or too often: published to the queue's DLQ. */
  deadLettered: number;
}

const OUTCOMES = ['processed', 'duplicates', 'retried', 'deadLettered'] as const;

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/**
 * A function's result read as a BatchReport, or undefined when it is not one: any function can return anything
 * (or a JSON payload from serverless-offline), so only a report whose counts are whole, not negative, and add up
 * to its records at most is believed.
 */
export function readBatchReport(result: unknown): BatchReport | undefined {
  if (typeof result !== 'object' || result === null || Array.isArray(result)) return undefined;
  const report = result as Record<string, unknown>;
  if (!isCount(report.records) || !OUTCOMES.every((key) => isCount(report[key]))) return undefined;
  const counts = report as unknown as BatchReport;
  const outcomes = counts.processed + counts.duplicates + counts.retried + counts.deadLettered;
  if (outcomes > counts.records) return undefined;
  return {
    records: counts.records,
    processed: counts.processed,
    duplicates: counts.duplicates,
    retried: counts.retried,
    deadLettered: counts.deadLettered,
  };
}
