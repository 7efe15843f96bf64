import middy from '@middy/core';
import {
  attemptOf,
  classifyError,
  idempotency,
  isLockContention,
  MalformedMessageError,
  PermanentError,
  parseBody,
  type QueueRecord,
  SchemaViolationError,
  structuredLogging,
  TransientError,
  UnknownEventTypeError,
} from 'middy-rabbitmq';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createLogger } from '../../shared/logging';
import { LogCapture } from '../support/runner';

const record = (body: string, overrides: Partial<QueueRecord> = {}): QueueRecord => ({
  index: 0,
  queue: 'q',
  vhost: '/',
  redelivered: false,
  attempt: 1,
  messageId: 'm-1',
  correlationId: undefined,
  properties: {},
  headers: {},
  body: Buffer.from(body),
  payload: undefined,
  ...overrides,
});

describe('error classification', () => {
  it('treats marked errors by their mark, library parse errors as permanent, and anything else as transient', () => {
    expect(classifyError(new MalformedMessageError('x'))).toBe('permanent');
    expect(classifyError(new (class extends PermanentError {})('domain rule'))).toBe('permanent');
    expect(classifyError(new TransientError('later'))).toBe('transient');
    expect(classifyError(new SyntaxError('bad json'))).toBe('permanent');
    expect(classifyError(new Error('connection reset'))).toBe('transient');
    expect(classifyError('a string')).toBe('transient');
  });

  it('tells database contention (deadlock, serialization, lock timeout), also wrapped, from failures', () => {
    const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code });
    for (const code of ['40P01', '40001', '55P03']) expect(isLockContention(pgError(code)), code).toBe(true);
    expect(isLockContention(new Error('wrapped', { cause: pgError('55P03') }))).toBe(true);
    expect(isLockContention(pgError('23505'))).toBe(false); // a unique violation is not contention
    expect(isLockContention(new Error('connection reset'))).toBe(false);
    expect(isLockContention(undefined)).toBe(false);
  });

  it('reads the attempt header, counting anything odd as a first delivery', () => {
    expect(attemptOf({ 'x-attempt': 3 })).toBe(3);
    expect(attemptOf({ 'x-attempt': 'nonsense' })).toBe(1);
    expect(attemptOf({ 'x-attempt': 0 })).toBe(1);
    expect(attemptOf(undefined)).toBe(1);
  });
});

describe('parseBody', () => {
  const schema = z.object({ event_type: z.literal('Ping'), n: z.number().int() });
  const run = (body: string) => {
    const handler = middy<QueueRecord<z.infer<typeof schema>>>()
      .use(parseBody({ schema, eventTypes: ['Ping'] }) as middy.MiddlewareObj<QueueRecord<z.infer<typeof schema>>>)
      .handler(async (r) => r.payload);
    return handler(record(body) as QueueRecord<z.infer<typeof schema>>, {} as never);
  };

  it('gives the handler the typed payload', async () => {
    await expect(run('{"event_type":"Ping","n":4}')).resolves.toEqual({ event_type: 'Ping', n: 4 });
  });

  it('names what is wrong: bad JSON, unknown event type, the field that breaks the schema', async () => {
    await expect(run('{nope')).rejects.toBeInstanceOf(MalformedMessageError);
    await expect(run('{"event_type":"Pong"}')).rejects.toThrow(UnknownEventTypeError);
    const error = (await run('{"event_type":"Ping","n":"four"}').then(
      () => undefined,
      (e: unknown) => e as SchemaViolationError,
    ))!;
    expect(error).toBeInstanceOf(SchemaViolationError);
    expect(error.issues.map((issue) => issue.path)).toEqual(['n']);
  });
});

describe('onError is safe when before never ran', () => {
  it('idempotency has nothing to roll back and lets the error through', async () => {
    const failing = middy<QueueRecord>()
      .use({
        before: () => {
          throw new MalformedMessageError('before idempotency');
        },
      })
      .use(
        idempotency({
          store: () => Promise.reject(new Error('store must not be opened')),
          consumer: 'c',
        }).record as middy.MiddlewareObj<QueueRecord>,
      )
      .handler(async () => 'never');
    await expect(failing(record('{}'), {} as never)).rejects.toBeInstanceOf(MalformedMessageError);
  });

  it('structured logging still writes the failure line', async () => {
    const logs = new LogCapture();
    const logger = createLogger({ level: 'info', destination: logs });
    const failing = middy()
      .use({
        before: () => {
          throw new Error('earlier middleware failed');
        },
      })
      .use(structuredLogging({ functionName: 'f', logger }))
      .handler(async () => 'never');
    await expect(failing({}, {} as never)).rejects.toThrow('earlier middleware failed');
    expect(logs.lines.at(-1)).toMatchObject({ level: 'error', function: 'f', message: 'invocation failed; the batch will be redelivered' });
  });
});
