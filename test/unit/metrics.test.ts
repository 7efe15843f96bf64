/** The runner's Prometheus text (issue 14): its format, METRICS_PORT, and a port already taken. */
import { createServer } from 'node:net';
import { readBatchReport } from 'middy-rabbitmq';
import {
  type EventSourceMappingStatus,
  FunctionMetrics,
  metricsPort,
  prometheusText,
  serveMetrics,
  TriggerDefinitionError,
} from 'serverless-offline-rabbitmq';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/logging';
import { LogCapture } from '../support/runner';

const counts = { received: 7, invocations: 3, failedInvocations: 1, acked: 6, requeued: 1, deadLettered: 0, filtered: 2, rejected: 0 };
const mapping = (functionKey: string, queue: string, State: EventSourceMappingStatus['State'] = 'Enabled') =>
  ({ Queues: [queue], State, Local: { functionKey, counts } }) as unknown as EventSourceMappingStatus;

describe('prometheusText', () => {
  it('writes HELP, TYPE and one sample per function and queue for every count, and the state', () => {
    const text = prometheusText([mapping('notification', 'inventory-events'), mapping('orderStatus', 'order-status-events', 'Failed')]);
    expect(text.endsWith('\n')).toBe(true);
    expect(text).toContain('# TYPE rabbitmq_trigger_records_received_total counter\n');
    expect(text).toContain('rabbitmq_trigger_records_received_total{function="notification",queue="inventory-events"} 7\n');
    expect(text).toContain('rabbitmq_trigger_failed_invocations_total{function="orderStatus",queue="order-status-events"} 1\n');
    expect(text).toContain('rabbitmq_trigger_records_filtered_total{function="notification",queue="inventory-events"} 2\n');
    expect(text).toContain('rabbitmq_trigger_state{function="orderStatus",queue="order-status-events",state="Failed"} 1\n');
    expect(text).toContain('rabbitmq_trigger_state{function="orderStatus",queue="order-status-events",state="Enabled"} 0\n');
    // Every non-comment line is `name{labels} value`.
    for (const line of text
      .trimEnd()
      .split('\n')
      .filter((l) => !l.startsWith('#')))
      expect(line).toMatch(/^[a-z_]+\{[^}]*\} \d+$/);
  });

  it('escapes label values as the text format asks', () => {
    expect(prometheusText([mapping('fn', 'odd"queue\\with\nnewline')])).toContain('queue="odd\\"queue\\\\with\\nnewline"');
  });
});

describe('METRICS_PORT', () => {
  it('defaults to 9464, takes a port or 0, and off', () => {
    expect(metricsPort({})).toBe(9464);
    expect(metricsPort({ METRICS_PORT: ' ' })).toBe(9464);
    expect(metricsPort({ METRICS_PORT: '9100' })).toBe(9100);
    expect(metricsPort({ METRICS_PORT: '0' })).toBe(0);
    expect(metricsPort({ METRICS_PORT: 'off' })).toBeUndefined();
  });

  it('refuses anything else, naming the setting', () => {
    for (const bad of ['-1', '65536', '9464x', 'on', '1.5']) {
      expect(() => metricsPort({ METRICS_PORT: bad })).toThrow(TriggerDefinitionError);
      expect(() => metricsPort({ METRICS_PORT: bad })).toThrow(`METRICS_PORT must be a port number (0-65535) or off, got '${bad}'`);
    }
  });
});

describe('serveMetrics', () => {
  it('on a port already taken, says so and serves nothing, without throwing', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, resolve));
    const { port } = busy.address() as { port: number };
    const logs = new LogCapture();
    try {
      const server = await serveMetrics({ port, mappings: () => [], logger: createLogger({ level: 'info', destination: logs }) });
      expect(server).toBeUndefined();
      expect(logs.lines).toEqual([expect.objectContaining({ level: 'warn', port, message: expect.stringContaining('set METRICS_PORT') })]);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });
});

describe('the batch report a function returns, as the trigger reads it', () => {
  const report = { records: 4, processed: 1, duplicates: 1, retried: 1, deadLettered: 1 };

  it('believes a whole, consistent report, and keeps only its counts', () => {
    expect(readBatchReport({ ...report, extra: 'x' })).toEqual(report);
    expect(readBatchReport({ ...report, processed: 0 })).toEqual({ ...report, processed: 0 }); // one record not reported
  });

  it('refuses anything else: not an object, a missing, negative, fractional or huge count, outcomes beyond the records', () => {
    for (const bad of [
      undefined,
      null,
      'ok',
      42,
      [report],
      { ...report, retried: undefined },
      { ...report, duplicates: -1 },
      { ...report, processed: 1.5 },
      { ...report, processed: '1' },
      { ...report, records: 2 ** 60 },
      { ...report, records: 3 },
    ])
      expect(readBatchReport(bad), JSON.stringify(bad)).toBeUndefined();
  });
});

describe('FunctionMetrics', () => {
  it('counts a report only for the batch it was invoked with; anything else is an unreported invocation', () => {
    const metrics = new FunctionMetrics();
    metrics.succeeded(12, 3, { records: 3, processed: 2, duplicates: 1, retried: 0, deadLettered: 0 });
    metrics.succeeded(5, 2, { records: 3, processed: 3, duplicates: 0, retried: 0, deadLettered: 0 }); // not this batch's
    metrics.succeeded(5, 1, undefined);
    metrics.failed(30_000, 'timeout');
    expect(metrics.records).toEqual({ processed: 2, duplicates: 1, retried: 0, deadLettered: 0 });
    expect(metrics.unreported).toBe(2);
    expect(metrics.errors).toEqual({ error: 0, timeout: 1, not_loaded: 0 });
    expect(metrics.duration.count).toBe(4);
    expect(metrics.duration.sum).toBeCloseTo(30.022, 6);
  });

  it('takes a message age from a believable AMQP timestamp only', () => {
    const metrics = new FunctionMetrics();
    const now = 1_800_000_000_000;
    metrics.delivered(now / 1000 - 42, now); // 42 s old
    metrics.delivered(now / 1000 + 60, now); // a minute ahead (another clock): age 0
    for (const odd of [undefined, '1800000000', Number.NaN, -1, 10 ** 13, now / 1000 + 3_600]) metrics.delivered(odd, now);
    expect(metrics.age.count).toBe(2);
    expect(metrics.age.sum).toBe(42);
    expect(metrics.age.cumulative().slice(0, 6)).toEqual([
      ['1', 1],
      ['2', 1],
      ['5', 1],
      ['10', 1],
      ['30', 1],
      ['60', 2],
    ]);
  });

  it('writes them in the text format: outcomes, errors, and cumulative histograms with +Inf, _sum and _count', () => {
    const metrics = new FunctionMetrics();
    metrics.succeeded(20, 2, { records: 2, processed: 1, duplicates: 0, retried: 0, deadLettered: 1 });
    metrics.succeeded(2_000, 1, { records: 1, processed: 1, duplicates: 0, retried: 0, deadLettered: 0 });
    const text = prometheusText([], [{ functionKey: 'notification', queue: 'inventory-events', metrics }]);
    const at = 'function="notification",queue="inventory-events"';
    expect(text).toContain('# TYPE rabbitmq_function_records_total counter\n');
    expect(text).toContain(`rabbitmq_function_records_total{${at},outcome="processed"} 2\n`);
    expect(text).toContain(`rabbitmq_function_records_total{${at},outcome="dead_lettered"} 1\n`);
    expect(text).toContain(`rabbitmq_function_errors_total{${at},kind="not_loaded"} 0\n`);
    expect(text).toContain('# TYPE rabbitmq_function_batch_duration_seconds histogram\n');
    expect(text).toContain(`rabbitmq_function_batch_duration_seconds_bucket{${at},le="0.025"} 1\n`);
    expect(text).toContain(`rabbitmq_function_batch_duration_seconds_bucket{${at},le="1"} 1\n`);
    expect(text).toContain(`rabbitmq_function_batch_duration_seconds_bucket{${at},le="2.5"} 2\n`);
    expect(text).toContain(`rabbitmq_function_batch_duration_seconds_bucket{${at},le="+Inf"} 2\n`);
    expect(text).toContain(`rabbitmq_function_batch_duration_seconds_sum{${at}} 2.02\n`);
    expect(text).toContain(`rabbitmq_function_batch_duration_seconds_count{${at}} 2\n`);
    expect(text).toContain(`rabbitmq_trigger_message_age_seconds_count{${at}} 0\n`);
    for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) expect(line).toMatch(/^[a-z_]+\{[^}]*\} [\d.]+$/);
  });
});
