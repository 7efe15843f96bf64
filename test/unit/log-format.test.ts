/**
 * Readable local logs (issue 14): which format a process logs in, and what a readable line shows. Redaction
 * happens in pino before a line reaches the pretty printer, so it holds in both formats.
 */
import { PassThrough } from 'node:stream';
import { stripVTControlCharacters } from 'node:util';
import { TraceFlags, trace } from '@opentelemetry/api';
import { logFormat, readableMessage } from 'middy-rabbitmq/log-format';
import { loggerWithSpan } from 'middy-rabbitmq/tracing';
import { describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../shared/logging';

const LAMBDA = { AWS_LAMBDA_FUNCTION_NAME: 'rabbit-functions-prod-notification' };

describe('logFormat', () => {
  it('is readable on a terminal and JSON lines elsewhere', () => {
    expect(logFormat({}, true)).toBe('pretty');
    expect(logFormat({}, false)).toBe('json');
  });

  it('follows LOG_FORMAT when it is set', () => {
    expect(logFormat({ LOG_FORMAT: 'json' }, true)).toBe('json');
    expect(logFormat({ LOG_FORMAT: 'pretty' }, false)).toBe('pretty');
    expect(logFormat({ LOG_FORMAT: ' JSON ' }, true)).toBe('json');
  });

  it('is always JSON in AWS Lambda, whatever the terminal or LOG_FORMAT', () => {
    expect(logFormat(LAMBDA, true)).toBe('json');
    expect(logFormat({ ...LAMBDA, LOG_FORMAT: 'pretty' }, true)).toBe('json');
  });

  it('is not fooled by serverless-offline or invoke local, which set AWS_LAMBDA_FUNCTION_NAME for their handlers too', () => {
    expect(logFormat({ ...LAMBDA, IS_OFFLINE: 'true' }, true)).toBe('pretty');
    expect(logFormat({ ...LAMBDA, IS_LOCAL: 'true' }, true)).toBe('pretty');
    expect(logFormat({ ...LAMBDA, IS_OFFLINE: 'true' }, false)).toBe('json');
  });
});

/** A logger in `format` whose output the test reads back. */
function capture(format: 'json' | 'pretty'): { logger: Logger; output: () => Promise<string> } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const logger = createLogger({ level: 'info', format, destination: stream });
  // The pretty printer is a transform stream: its line arrives on a later tick.
  return { logger, output: () => new Promise((resolve) => setImmediate(() => resolve(stripVTControlCharacters(text)))) };
}

/** A record line as the queue middleware writes it (shared/middleware/records.ts), with personal data in it. */
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';

function logRecord(logger: Logger): void {
  // Bound to its record's span, as forEachRecord binds it: the line carries trace_id and span_id.
  const span = trace.wrapSpanContext({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: TraceFlags.SAMPLED });
  loggerWithSpan(logger.child({ function: 'inventoryReservation', requestId: 'req-1', coldStart: false }), span)
    .child({ messageId: 'msg-7f3a', queue: 'order-events', attempt: 1, correlationId: 'corr-1' })
    .info(
      { outcome: 'processed', durationMs: 4.2, result: { user_id: 'alice-secret', order: { email: 'alice@example.com' } } },
      'record handled',
    );
}

describe('readable lines', () => {
  it('shows a record as one line with time, function, outcome, message id and duration; redacted fields stay redacted', async () => {
    const { logger, output } = capture('pretty');
    logRecord(logger);
    const text = await output();
    const lines = text.trimEnd().split('\n');
    expect(lines, text).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: inventoryReservation \[order-events\] processed message msg-7f3a 4\.2 ms: record handled/,
    );
    expect(text).toContain('[redacted]');
    expect(text).not.toContain('alice');
    expect(text).not.toContain(TRACE_ID); // the ids are for JSON lines and trace viewers, not the readable line
  });

  it('redacts the same fields in JSON lines', async () => {
    const { logger, output } = capture('json');
    logRecord(logger);
    const line = JSON.parse(await output()) as Record<string, unknown>;
    expect(line).toMatchObject({
      function: 'inventoryReservation',
      outcome: 'processed',
      messageId: 'msg-7f3a',
      message: 'record handled',
      trace_id: TRACE_ID,
      span_id: SPAN_ID,
    });
    expect(line.result).toEqual({ user_id: '[redacted]', order: { email: '[redacted]' } });
  });

  it("gives an error's reason on the line, with URL passwords masked in its message and stack", async () => {
    const { logger, output } = capture('pretty');
    logger.child({ function: 'notification' }).error({ err: new Error('connect amqp://app:hunter2@mq:5672 refused') }, 'invocation failed');
    const text = await output();
    expect(text.split('\n')[0]).toContain('notification: invocation failed (Error: connect amqp://app:***@mq:5672 refused)');
    expect(text).not.toContain('hunter2');
  });

  it('words a request line and a dead-lettered record', () => {
    expect(
      readableMessage({
        function: 'order-intake',
        method: 'POST',
        path: '/order',
        statusCode: 202,
        durationMs: 12,
        message: 'request completed',
      }),
    ).toBe('order-intake POST /order 202 12 ms: request completed');
    expect(
      readableMessage({
        function: 'notification',
        queue: 'inventory-events',
        outcome: 'dead-lettered',
        messageId: 'm-1',
        attempt: 4,
        durationMs: 2,
        error: 'ContractViolationError: messageId is not event_id',
        message: 'record handled',
      }),
    ).toBe(
      'notification [inventory-events] dead-lettered message m-1 attempt 4 2 ms: record handled (ContractViolationError: messageId is not event_id)',
    );
  });
});
