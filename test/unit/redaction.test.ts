/**
 * Redaction of personal and secret fields in log lines (shared/logging): by field name at any depth of a line's
 * object, in errors' own fields, and in child loggers' bindings at the top level; the caller's objects unchanged.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/logging';
import { MAX_DEPTH, redactFields } from '../../shared/logging/redact';

const FIELDS = new Set(['password', 'email']);

/** The JSON lines a logger at info writes, read back. */
function lines(write: (logger: ReturnType<typeof createLogger>) => void): Record<string, unknown>[] {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  write(createLogger({ level: 'info', format: 'json', destination: stream }));
  return chunks
    .join('')
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('log lines', () => {
  it('redact a field at any depth, in arrays too, and leave the logged object as it was', () => {
    const order = { items: [{ sku: 'x', buyer: { email: 'alice@example.com' } }], deep: { a: { b: { c: { token: 't0k' } } } } };
    const [line] = lines((logger) => logger.info({ order, user_id: 'alice' }, 'placed'));
    expect(line).toMatchObject({
      user_id: '[redacted]',
      order: { items: [{ sku: 'x', buyer: { email: '[redacted]' } }], deep: { a: { b: { c: { token: '[redacted]' } } } } },
    });
    expect(order.items[0]!.buyer.email).toBe('alice@example.com');
    expect(JSON.stringify(line)).not.toContain('alice');
  });

  it("redact an error's own fields and keep its message and stack", () => {
    const error = Object.assign(new Error('connect refused'), { config: { databaseUrl: 'postgres://u:p@db/x', retries: 3 } });
    const [line] = lines((logger) => logger.error({ err: error }, 'failed'));
    expect(line!.err).toMatchObject({ type: 'Error', message: 'connect refused', config: { databaseUrl: '[redacted]', retries: 3 } });
    expect(String((line!.err as { stack: string }).stack)).toContain('connect refused');
    expect(error.config.databaseUrl).toBe('postgres://u:p@db/x');
  });

  it("redact a child logger's bindings by name", () => {
    const [line] = lines((logger) => logger.child({ userId: 'alice', requestId: 'r-1' }).info('hello'));
    expect(line).toMatchObject({ userId: '[redacted]', requestId: 'r-1' });
  });
});

describe('redactFields', () => {
  it('returns the same object when nothing is redacted', () => {
    const value = { a: 1, b: { c: [1, 2, { d: 'x' }] } };
    expect(redactFields(value, FIELDS, '*')).toBe(value);
  });

  it('copies a frozen object instead of failing on it', () => {
    const value = Object.freeze({ password: 'p', keep: Object.freeze({ email: 'e' }) });
    expect(redactFields(value, FIELDS, '*')).toEqual({ password: '*', keep: { email: '*' } });
  });

  it(`stops at depth ${MAX_DEPTH}, so a cyclic object is written, not walked for ever`, () => {
    const cyclic: Record<string, unknown> = { password: 'p' };
    cyclic.self = cyclic;
    const redacted = redactFields(cyclic, FIELDS, '*') as Record<string, unknown>;
    expect(redacted.password).toBe('*');
    expect((redacted.self as Record<string, unknown>).password).toBe('*');
  });
});
