/**
 * CloudWatch metrics of a deployed queue function (issue 14): the real inventoryReservation handler, its store an
 * in-memory SQLite database and its publisher a recorder, with METRICS_EMF on as in Lambda. Powertools writes
 * the embedded-metric-format JSON to standard output; the test reads it from there.
 */
import { randomUUID } from 'node:crypto';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import {
  type CloudWatchMetricsOptions,
  CloudWatchMetricsOptionsError,
  cloudWatchMetrics,
  rabbitMQEventFromBodies,
  structuredLogging,
} from 'middy-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHandler } from '../../handlers/inventory-reservation';
import { ConfigError, loadConfig } from '../../shared/config';
import { newEvent } from '../../shared/events';
import { createLogger } from '../../shared/logging';
import type { OutgoingMessage, Publisher } from '../../shared/messaging';
import { openStore, type Store } from '../../shared/store';
import { LogCapture } from '../support/runner';

// Read by the app's configuration at the handler's first invocation (this file runs in a process of its own).
process.env.METRICS_EMF = 'true';
process.env.POWERTOOLS_METRICS_NAMESPACE = 'test-orders';
process.env.POWERTOOLS_SERVICE_NAME = 'test-service';
// What Lambda sets in an on-demand execution environment: Powertools writes its ColdStart metric only then.
process.env.AWS_LAMBDA_INITIALIZATION_TYPE = 'on-demand';

const context = { awsRequestId: 'req-1', functionName: 'rabbit-functions-prod-inventoryReservation' } as Context;

interface EmfLine {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][]; Metrics: Array<{ Name: string; Unit: string }> }>;
  };
  [key: string]: unknown;
}

/** Runs `work` and returns the EMF lines it wrote to standard output (other output passes through). */
async function emfLinesOf(work: () => Promise<unknown>): Promise<EmfLine[]> {
  const lines: EmfLine[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    for (const line of chunk.toString().split('\n')) {
      if (line.startsWith('{') && line.includes('"_aws"')) lines.push(JSON.parse(line) as EmfLine);
    }
    return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  try {
    await work();
  } finally {
    process.stdout.write = write;
  }
  return lines;
}

describe('CloudWatch embedded metric format from a queue function (Powertools Metrics)', () => {
  let store: Store;
  const published: OutgoingMessage[] = [];
  let failPublishing = false;
  const publisher = {
    publish: async (message: OutgoingMessage) => {
      if (failPublishing) throw new Error('broker away');
      published.push(message);
    },
  } as unknown as Publisher;
  const handler = createHandler({
    store: async () => store,
    publisher: () => publisher,
    logger: () => createLogger({ level: 'silent' }),
    retryDelaysMs: () => [100],
  });

  beforeAll(async () => {
    store = await openStore({ sqlitePath: ':memory:' });
    await store.stock.upsert({ widget: 5 });
  });
  afterAll(async () => {
    await store.close();
  });

  it('writes one line per invocation: the batch report, duration, errors and each message’s age, by service, function and queue', async () => {
    const order = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'u-1', item: 'widget', quantity: 2 });
    const sentAt = Math.floor(Date.now() / 1000) - 90; // every message of the batch was published 90 s ago
    const event = rabbitMQEventFromBodies({
      queue: 'order-events',
      bodies: [order, order, '{not json'],
      properties: { timestamp: sentAt },
    });
    let report: unknown;
    const lines = await emfLinesOf(async () => {
      report = await handler(event, context);
    });
    expect(report).toEqual({ records: 3, processed: 1, duplicates: 1, retried: 0, deadLettered: 1 });

    const line = lines.find((l) => 'RecordsProcessed' in l)!;
    expect(line, JSON.stringify(lines)).toBeDefined();
    const [directive] = line._aws.CloudWatchMetrics;
    expect(directive!.Namespace).toBe('test-orders');
    expect(directive!.Dimensions).toEqual([['service', 'function', 'queue']]);
    expect(line).toMatchObject({
      service: 'test-service',
      function: 'rabbit-functions-prod-inventoryReservation',
      queue: 'order-events',
      Records: 3,
      RecordsProcessed: 1,
      RecordsDuplicate: 1,
      RecordsRetried: 0,
      RecordsDeadLettered: 1,
      InvocationErrors: 0,
    });
    const units = Object.fromEntries(directive!.Metrics.map((m) => [m.Name, m.Unit]));
    expect(units).toMatchObject({ BatchDuration: 'Milliseconds', MessageAge: 'Seconds', RecordsProcessed: 'Count' });
    expect(line.BatchDuration).toEqual(expect.any(Number));
    // The oldest record's age: at least the 90 s since it was sent (whole seconds: a little more by the time it runs).
    expect(line.MessageAge).toEqual(expect.any(Number));
    expect(line.MessageAge).toBeGreaterThanOrEqual(90);
    expect(line.MessageAge).toBeLessThan(3_600); // seconds, not milliseconds
    // Powertools' ColdStart metric, once per container.
    expect(lines.filter((l) => 'ColdStart' in l)).toHaveLength(1);
  });

  it('counts an invocation that throws as an error, with no record outcomes (the batch will be redelivered)', async () => {
    failPublishing = true; // the poison message cannot be dead-lettered: the batch fails
    try {
      const event = rabbitMQEventFromBodies({ queue: 'order-events', bodies: ['{not json'] });
      const lines = await emfLinesOf(() => expect(handler(event, context)).rejects.toThrow(/broker away/));
      expect(lines).toHaveLength(1); // no second ColdStart
      expect(lines[0]).toMatchObject({ InvocationErrors: 1, queue: 'order-events' });
      expect(lines[0]).not.toHaveProperty('RecordsProcessed');
      expect(lines[0]).not.toHaveProperty('MessageAge'); // this message had no timestamp
    } finally {
      failPublishing = false;
    }
  });
});

describe('METRICS_EMF: on in AWS Lambda, off locally unless asked for', () => {
  it('follows where the function runs, and the setting wins', () => {
    const lambda = { AWS_LAMBDA_FUNCTION_NAME: 'fn' };
    expect(loadConfig({}).cloudWatchMetrics).toEqual({ enabled: false, namespace: 'rabbit-functions', service: 'rabbit-functions' });
    expect(loadConfig(lambda).cloudWatchMetrics.enabled).toBe(true);
    expect(loadConfig({ ...lambda, IS_OFFLINE: 'true' }).cloudWatchMetrics.enabled).toBe(false); // serverless-offline
    expect(loadConfig({ ...lambda, IS_LOCAL: 'true' }).cloudWatchMetrics.enabled).toBe(false); // invoke local, npm run invoke
    expect(loadConfig({ ...lambda, METRICS_EMF: 'false' }).cloudWatchMetrics.enabled).toBe(false);
    expect(loadConfig({ METRICS_EMF: 'true', SERVICE_NAME: 'shop' }).cloudWatchMetrics).toEqual({
      enabled: true,
      namespace: 'rabbit-functions',
      service: 'shop',
    });
  });

  it('refuses a value that is neither true nor false, naming it', () => {
    expect(() => loadConfig({ METRICS_EMF: 'yes' })).toThrow(ConfigError);
    expect(() => loadConfig({ METRICS_EMF: 'yes' })).toThrow(/METRICS_EMF/);
  });
});

describe('the cloudWatchMetrics middleware on its own', () => {
  const run = async (options: CloudWatchMetricsOptions, logs: LogCapture) => {
    const handler = middy(async () => ({ records: 1, processed: 1, duplicates: 0, retried: 0, deadLettered: 0 }))
      .use(structuredLogging({ functionName: 'fn', logger: createLogger({ level: 'warn', destination: logs }) }))
      .use(cloudWatchMetrics(options));
    let result: unknown;
    const lines = await emfLinesOf(async () => {
      result = await handler(rabbitMQEventFromBodies({ queue: 'q', bodies: ['x'] }), context);
    });
    return { result, lines };
  };

  it('off, writes nothing and changes nothing', async () => {
    const logs = new LogCapture();
    const { result, lines } = await run({ enabled: false, namespace: 'ns', service: 'svc' }, logs);
    expect(result).toMatchObject({ processed: 1 });
    expect(lines).toEqual([]);
    expect(logs.lines).toEqual([]);
  });

  it('misconfigured, never costs the batch: the invocation succeeds and the logs say why there are no metrics', async () => {
    const logs = new LogCapture();
    const { result, lines } = await run({ enabled: true, namespace: ' ', service: 'svc' }, logs);
    expect(result).toMatchObject({ processed: 1 });
    expect(lines).toEqual([]);
    expect(logs.lines).toEqual([
      expect.objectContaining({
        level: 'warn',
        message: 'CloudWatch metrics unavailable for this invocation',
        err: expect.objectContaining({ type: 'CloudWatchMetricsOptionsError' }),
      }),
    ]);
    expect(CloudWatchMetricsOptionsError.name).toBe('CloudWatchMetricsOptionsError');
  });
});
