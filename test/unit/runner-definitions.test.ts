import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { Batcher } from '../../shared/runner/batcher';
import { AWS_MQ_DEFAULTS, loadService, TriggerDefinitionError, triggersFromFunctions } from '../../shared/runner/definitions';

const serviceDir = fileURLToPath(new URL('../..', import.meta.url));

describe('trigger definitions from serverless.yml', () => {
  it('reads every queue function of the project with its queue and batch settings', () => {
    const { info, functions } = loadService(serviceDir);
    const triggers = triggersFromFunctions(functions, info);
    expect(triggers.map((t) => [t.functionKey, t.queue])).toEqual([
      ['inventoryReservation', 'order-events'],
      ['notification', 'inventory-events'],
      ['orderStatus', 'order-status-events'],
    ]);
    for (const t of triggers) {
      expect(t).toMatchObject({ batchSize: 100, maximumBatchingWindow: 0.5, enabled: true, virtualHost: '/', timeout: 30 });
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
    expect(() => triggersFromFunctions(bad, { service: 's', stage: 'dev' })).toThrow(/Function 'f', event 2 \(rabbitmq\): batchSize/);
    expect(() => triggersFromFunctions({ g: { handler: 'nodot' } }, { service: 's', stage: 'dev' })).toThrow(/Function 'g': handler/);
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
