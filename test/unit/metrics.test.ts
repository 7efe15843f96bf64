/** The runner's Prometheus text (issue 14): its format, METRICS_PORT, and a port already taken. */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/logging';
import { type EventSourceMappingStatus, metricsPort, prometheusText, serveMetrics, TriggerDefinitionError } from '../../shared/runner';
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
