import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AWS_MQ_DEFAULTS,
  Batcher,
  checkRabbitmqLimits,
  classifyConnectError,
  type EventSourceMappingStatus,
  loadService,
  localTriggers,
  mappingConfiguration,
  mappingUuid,
  pruneRunnerStatus,
  RunnerStatusFile,
  readRunnerStatus,
  TriggerDefinitionError,
  triggerSettings,
  triggersFromFunctions,
} from 'serverless-offline-rabbitmq';
import { describe, expect, it, vi } from 'vitest';

const serviceDir = fileURLToPath(new URL('../..', import.meta.url));

describe('trigger definitions from serverless.yml', () => {
  it('reads every queue function of the project with its queue and batch settings', () => {
    const { info, functions } = loadService(serviceDir);
    const triggers = triggersFromFunctions(functions, info);
    expect(triggers.map((t) => [t.functionKey, t.queue])).toEqual([
      ['inventoryReservation', 'order-events'],
      ['notification', 'inventory-events'],
      ['orderStatus', 'order-status-events'],
      ['dlqRedriveJob', 'dlq-redrive-jobs'],
    ]);
    for (const t of triggers) {
      const redriveJobs = t.functionKey === 'dlqRedriveJob';
      expect(t).toMatchObject({
        // One redrive job per invocation, with Lambda's longest timeout (functions/dlq-redrive-job.yml).
        batchSize: redriveJobs ? 1 : 100,
        maximumBatchingWindow: 0.5,
        enabled: true,
        virtualHost: '/',
        timeout: redriveJobs ? 900 : 30,
      });
      expect(t.functionName).toBe(`rabbit-functions-local-${t.functionKey}`);
      expect(t.brokerArn).toMatch(/^arn:aws:mq:/);
    }
  });

  it('applies AWS defaults when the event leaves them out', () => {
    const [t] = triggersFromFunctions(
      { f: { handler: 'h/f.handler', events: [{ rabbitmq: { queue: 'q' } }] } },
      { service: 's', stage: 'dev' },
    );
    expect(t).toMatchObject({
      batchSize: AWS_MQ_DEFAULTS.batchSize,
      maximumBatchingWindow: 0.5,
      timeout: 6,
      enabled: true,
      functionName: 's-dev-f',
    });
  });

  it('names the function and field of a bad definition', () => {
    const bad = { f: { handler: 'h/f.handler', events: [{ httpApi: {} }, { rabbitmq: { queue: 'q', batchSize: 20_000 } }] } };
    expect(() => triggersFromFunctions(bad, { service: 's', stage: 'dev' })).toThrow(TriggerDefinitionError);
    expect(() => triggersFromFunctions(bad, { service: 's', stage: 'dev' })).toThrow(/Function 'f', event 2 \(rabbitmq\): .*'batchSize'/);
    expect(() => triggersFromFunctions({ g: { handler: 'nodot' } }, { service: 's', stage: 'dev' })).toThrow(/Function 'g': handler/);
    expect(() => triggersFromFunctions({ h: { handler: 'h.h', events: [{ rabbitmq: { queue: 'q', batchSize: 1.5 } }] } }, info)).toThrow(
      /Function 'h', event 1 \(rabbitmq\): batchSize/,
    );
  });
});

const info = { service: 's', stage: 'dev' };
const withEvent = (rabbitmq: Record<string, unknown>) => ({
  fn: { handler: 'h/fn.handler', events: [{ rabbitmq: { queue: 'q', ...rabbitmq } }] },
});
const refusal = (rabbitmq: Record<string, unknown>): string => {
  try {
    triggersFromFunctions(withEvent(rabbitmq), info);
  } catch (error) {
    expect(error).toBeInstanceOf(TriggerDefinitionError);
    return (error as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(rabbitmq)}`);
};

describe("configuration limits, with CreateEventSourceMapping's ValidationException", () => {
  const prefix =
    "Function 'fn', event 1 (rabbitmq): AWS would refuse this event source mapping (CreateEventSourceMapping: ValidationException): ";

  it('refuses a batchSize under 1', () => {
    expect(refusal({ batchSize: 0 })).toBe(
      `${prefix}1 validation error detected: Value '0' at 'batchSize' failed to satisfy constraint: Member must have value greater than or equal to 1`,
    );
    expect(refusal({ batchSize: -5 })).toContain(
      "Value '-5' at 'batchSize' failed to satisfy constraint: Member must have value greater than or equal to 1",
    );
  });

  it('refuses a batchSize over 10000', () => {
    expect(refusal({ batchSize: 10_001 })).toBe(
      `${prefix}1 validation error detected: Value '10001' at 'batchSize' failed to satisfy constraint: Member must have value less than or equal to 10000`,
    );
  });

  it('refuses a maximumBatchingWindow under 0 s', () => {
    expect(refusal({ maximumBatchingWindow: -1 })).toBe(
      `${prefix}1 validation error detected: Value '-1' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value greater than or equal to 0`,
    );
  });

  it('refuses a maximumBatchingWindow over 300 s', () => {
    expect(refusal({ maximumBatchingWindow: 301 })).toBe(
      `${prefix}1 validation error detected: Value '301' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value less than or equal to 300`,
    );
  });

  it('lists every violation at once, as AWS does', () => {
    expect(refusal({ batchSize: 0, maximumBatchingWindow: 301 })).toBe(
      `${prefix}2 validation errors detected: Value '0' at 'batchSize' failed to satisfy constraint: Member must have value greater than or equal to 1; ` +
        "Value '301' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value less than or equal to 300",
    );
  });

  it('checks a disabled event too (AWS validates it before it stores it)', () => {
    expect(refusal({ batchSize: 0, enabled: false })).toContain("Value '0' at 'batchSize'");
  });

  it('accepts the bounds themselves', () => {
    for (const [batchSize, maximumBatchingWindow] of [
      [1, 0],
      [10_000, 300],
    ] as const) {
      const [t] = triggersFromFunctions(withEvent({ batchSize, maximumBatchingWindow }), info);
      expect(t).toMatchObject({ batchSize, maximumBatchingWindow });
    }
  });
});

describe('batching windows AWS takes (whole seconds), and the local-only window', () => {
  it("refuses a fractional maximumBatchingWindow with CloudFormation's message, and says where a local-only one goes", () => {
    for (const window of [0.5, 0.05, 1.25]) {
      expect(refusal({ maximumBatchingWindow: window })).toBe(
        "Function 'fn', event 1 (rabbitmq): AWS would refuse this event source mapping (CloudFormation: Properties validation failed " +
          'for AWS::Lambda::EventSourceMapping): #/MaximumBatchingWindowInSeconds: expected type: Integer, found: Number ' +
          `(maximumBatchingWindow ${window}: AWS takes whole seconds; a shorter window for the local trigger only is ` +
          'custom.rabbitmqTrigger.localBatchingWindow)',
      );
    }
    // The same check for the plugin, which sees the configuration before osls does.
    expect(() => checkRabbitmqLimits(withEvent({ maximumBatchingWindow: 0.2 }))).toThrow(/expected type: Integer, found: Number/);
    expect(() => checkRabbitmqLimits(withEvent({ maximumBatchingWindow: 2 }))).not.toThrow();
  });

  it('runs every trigger with custom.rabbitmqTrigger.localBatchingWindow when set, fractions allowed; the events as written otherwise', () => {
    const triggers = triggersFromFunctions(
      {
        a: { handler: 'h/a.handler', events: [{ rabbitmq: { queue: 'qa', maximumBatchingWindow: 2 } }] },
        b: { handler: 'h/b.handler', events: [{ rabbitmq: { queue: 'qb' } }] },
      },
      info,
    );
    expect(localTriggers(triggers, triggerSettings({})).map((t) => t.maximumBatchingWindow)).toEqual([2, 0.5]);
    const local = triggerSettings({ rabbitmqTrigger: { localBatchingWindow: 0.1 } });
    expect(localTriggers(triggers, local).map((t) => t.maximumBatchingWindow)).toEqual([0.1, 0.1]);
    expect(() => triggerSettings({ rabbitmqTrigger: { localBatchingWindow: 301 } })).toThrow(
      /custom\.rabbitmqTrigger: localBatchingWindow: /,
    );
  });
});

describe('mappings as AWS describes them', () => {
  const [definition] = triggersFromFunctions(
    withEvent({ arn: 'arn:aws:mq:eu-west-1:123456789012:broker:b:b-1', filterPatterns: [{ data: { kind: ['order'] } }] }),
    info,
  );

  it('gives a mapping a UUID of its own, the same in every process and run', () => {
    const uuid = mappingUuid(definition!);
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(mappingUuid({ ...definition! })).toBe(uuid);
    expect(mappingUuid({ ...definition!, queue: 'other' })).not.toBe(uuid);
  });

  it("lists the configuration under AWS's field names", () => {
    expect(mappingConfiguration(definition!, 'arn:aws:mq:eu-west-1:123456789012:broker:b:b-1')).toEqual({
      UUID: mappingUuid(definition!),
      FunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:s-dev-fn',
      EventSourceArn: 'arn:aws:mq:eu-west-1:123456789012:broker:b:b-1',
      Queues: ['q'],
      SourceAccessConfigurations: [{ Type: 'VIRTUAL_HOST', URI: '/' }],
      BatchSize: 100,
      MaximumBatchingWindowInSeconds: 0.5,
      FilterCriteria: { Filters: [{ Pattern: '{"data":{"kind":["order"]}}' }] },
    });
  });

  it('tells a broker that refuses us for good from one that is away', () => {
    const url = 'amqp://fn:secret@127.0.0.1:5672/orders';
    const login = new Error(
      'Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN."',
    );
    expect(classifyConnectError(login, url)).toMatchObject({
      reason: 'EVENT_SOURCE_AUTHN_ERROR',
      detail: expect.stringContaining("user 'fn'"),
    });
    expect(classifyConnectError(new Error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>'), url)).toMatchObject({
      reason: 'EVENT_SOURCE_AUTHZ_ERROR',
      detail: expect.stringContaining("virtual host 'orders'"),
    });
    expect(
      classifyConnectError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5672'), { code: 'ECONNREFUSED' }), url),
    ).toBeUndefined();
    expect(classifyConnectError(new Error('Socket closed abruptly during opening handshake'), url)).toBeUndefined();
  });
});

describe('runner status files', () => {
  const directory = mkdtempSync(join(tmpdir(), 'runner-status-'));
  const mapping = (State: 'Enabled' | 'Failed') => ({ State }) as unknown as EventSourceMappingStatus;

  it('writes atomically, reads back the files of living processes only, and prunes the others', async () => {
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
    const base = { label: 'worker', startedAt: new Date().toISOString(), broker: { state: 'connected', since: new Date().toISOString() } };
    const mine = new RunnerStatusFile(directory);
    expect(mine.write({ ...base, EventSourceMappings: [mapping('Enabled')] })).toBeUndefined();
    expect(new RunnerStatusFile(directory, gone).write({ ...base, EventSourceMappings: [mapping('Failed')] })).toBeUndefined();
    expect(readdirSync(directory).sort()).toEqual([`${gone}.json`, `${process.pid}.json`].sort());

    const found = readRunnerStatus(directory);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ pid: process.pid, label: 'worker', EventSourceMappings: [{ State: 'Enabled' }] });
    expect(found[0]!.staleForMs).toBeUndefined();
    // Not rewritten for three refresh periods: reported as stale, not hidden.
    expect(readRunnerStatus(directory, Date.now() + 60_000)[0]!.staleForMs).toBeGreaterThan(50_000);

    pruneRunnerStatus(directory);
    expect(readdirSync(directory)).toEqual([`${process.pid}.json`]);
    mine.remove();
    expect(readRunnerStatus(directory)).toEqual([]);
    expect(readRunnerStatus(join(directory, 'nothing-here'))).toEqual([]);
  });
});

describe('Batcher', () => {
  it('hands on a full batch at once and the rest when the window ends', () => {
    vi.useFakeTimers();
    try {
      const batches: number[][] = [];
      const batcher = new Batcher<number>({ batchSize: 3, windowMs: 500, onBatch: (b) => batches.push(b) });
      for (const n of [1, 2, 3, 4]) batcher.add(n);
      expect(batches).toEqual([[1, 2, 3]]);
      vi.advanceTimersByTime(499);
      expect(batches).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(batches).toEqual([[1, 2, 3], [4]]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('starts a new batch when the next item would push it over maxBytes (an oversized item still gets one)', () => {
    const batches: number[][] = [];
    const batcher = new Batcher<number>({
      batchSize: 100,
      windowMs: 1_000,
      maxBytes: 10,
      sizeOf: (n) => n,
      onBatch: (b) => batches.push(b),
    });
    for (const n of [4, 5, 1, 2, 30, 3]) batcher.add(n);
    expect(batches).toEqual([[4, 5, 1], [2], [30]]);
    expect(batcher.drain()).toEqual([3]);
  });

  it('gives back what it holds on drain without handing it on', () => {
    const batches: number[][] = [];
    const batcher = new Batcher<number>({ batchSize: 10, windowMs: 1_000, onBatch: (b) => batches.push(b) });
    batcher.add(1);
    batcher.add(2);
    expect(batcher.drain()).toEqual([1, 2]);
    expect(batches).toEqual([]);
    expect(batcher.size).toBe(0);
  });

  it('refuses nonsense settings', () => {
    expect(() => new Batcher({ batchSize: 0, windowMs: 0, onBatch: () => undefined })).toThrow(RangeError);
    expect(() => new Batcher({ batchSize: 1, windowMs: -1, onBatch: () => undefined })).toThrow(RangeError);
  });
});
