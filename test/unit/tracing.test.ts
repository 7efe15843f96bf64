/** W3C trace context: what is accepted from the wire, what is written, when export is on, and the log fields. */

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { context, ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import {
  exportWanted,
  extractTraceContext,
  flushTracing,
  formatTraceparent,
  loggerWithSpan,
  parseTraceparent,
  startSpan,
  startTracing,
  stopTracing,
  TracingConfigError,
  traceHeaders,
  withTraceHeaders,
} from 'middy-rabbitmq/tracing';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../shared/config';
import { createLogger } from '../../shared/logging';
import { LogCapture } from '../support/runner';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${SPAN}-01`;

describe('traceparent from the wire', () => {
  it('takes a valid one, with its sampled flag, and writes it back the same', () => {
    const context = parseTraceparent(VALID);
    expect(context).toEqual({ traceId: TRACE, spanId: SPAN, traceFlags: TraceFlags.SAMPLED, isRemote: true });
    expect(formatTraceparent(context!)).toBe(VALID);
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`)?.traceFlags).toBe(TraceFlags.NONE);
    // A later version is read as 00, fields after the fourth ignored (the specification's forward compatibility).
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01-later`)).toMatchObject({ traceId: TRACE, spanId: SPAN });
  });

  it.each([
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['all-zero span id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['version 00 with a fifth field', `${VALID}-extra`],
    ['upper-case hex', VALID.toUpperCase()],
    ['short trace id', `00-${TRACE.slice(1)}-${SPAN}-01`],
    ['a number', 42],
    ['a table', { traceparent: VALID }],
    ['bytes', Buffer.from(VALID)],
    ['10 kB of text', `${VALID}${'x'.repeat(10_000)}`],
  ])('ignores %s: the receiver starts a new trace', (_what, value) => {
    expect(parseTraceparent(value)).toBeUndefined();
    expect(extractTraceContext({ traceparent: value })).toBe(ROOT_CONTEXT);
  });

  it('keeps the well-formed tracestate members of a valid traceparent only', () => {
    const context = extractTraceContext({ traceparent: VALID, tracestate: 'a=1, bad key=2,b=two' });
    expect(trace.getSpanContext(context)?.traceState?.serialize()).toBe('a=1,b=two');
    expect(extractTraceContext({ tracestate: 'a=1' })).toBe(ROOT_CONTEXT);
    expect(trace.getSpanContext(extractTraceContext({ traceparent: VALID, tracestate: 'a=1'.repeat(1_000) }))?.traceState).toBeUndefined();
  });
});

describe('spans and headers without export (the default)', () => {
  afterEach(() => stopTracing());

  it('continues a trace with a new span id, or starts a new sampled trace', async () => {
    await startTracing({ env: {} });
    const child = startSpan('child', {}, extractTraceContext({ traceparent: VALID, tracestate: 'v=1' }));
    expect(child.spanContext()).toMatchObject({ traceId: TRACE, traceFlags: TraceFlags.SAMPLED });
    expect(child.spanContext().spanId).not.toBe(SPAN);
    const headers = traceHeaders(trace.setSpan(ROOT_CONTEXT, child));
    expect(headers).toEqual({ traceparent: `00-${TRACE}-${child.spanContext().spanId}-01`, tracestate: 'v=1' });

    const root = startSpan('root', {}, ROOT_CONTEXT);
    expect(root.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(root.spanContext().traceId).not.toBe(TRACE);
    expect(traceHeaders(trace.setSpan(ROOT_CONTEXT, root))).toEqual({
      traceparent: `00-${root.spanContext().traceId}-${root.spanContext().spanId}-01`,
    });
  });

  it('replaces a copy’s trace headers, a stale tracestate included', () => {
    expect(withTraceHeaders({ traceparent: VALID, tracestate: 'old=1', 'x-attempt': 2 }, { traceparent: 'new' })).toEqual({
      'x-attempt': 2,
      traceparent: 'new',
    });
  });

  it('puts on every log line the ids of the span its logger is bound to, else of the active span', async () => {
    await startTracing({ env: {} });
    const lines = new LogCapture();
    const logger = createLogger({ level: 'info', service: 'test', destination: lines });
    const bound = startSpan('bound', {}, ROOT_CONTEXT);
    const active = startSpan('active', {}, ROOT_CONTEXT);
    const ids = (span: typeof bound) => ({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId });
    loggerWithSpan(logger, bound).child({ more: 1 }).info('bound child');
    context.with(trace.setSpan(ROOT_CONTEXT, active), () => logger.info('in a span'));
    logger.info('outside');
    expect(lines.lines[0]).toMatchObject({ message: 'bound child', more: 1, ...ids(bound) });
    expect(lines.lines[1]).toMatchObject({ message: 'in a span', ...ids(active) });
    expect(lines.lines[2]).not.toHaveProperty('trace_id');
  });
});

describe('export over OTLP/HTTP', () => {
  afterEach(() => stopTracing());

  it('sends ended spans as OTLP JSON to OTEL_EXPORTER_OTLP_ENDPOINT, named by OTEL_SERVICE_NAME, when flushed', async () => {
    const received: Array<{ path: string | undefined; body: string }> = [];
    const collector = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      request.on('end', () => {
        received.push({ path: request.url, body });
        response.setHeader('content-type', 'application/json');
        response.end('{}');
      });
    });
    await new Promise<void>((done) => collector.listen(0, '127.0.0.1', done));
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`,
      OTEL_SERVICE_NAME: 'tracing-unit-test',
    };
    const saved = { ...process.env };
    Object.assign(process.env, env); // the exporter and the resource read the process's own variables
    try {
      await startTracing({ env });
      const span = startSpan('exported', {}, ROOT_CONTEXT);
      span.end();
      await flushTracing();
      expect(received).toHaveLength(1);
      expect(received[0]!.path).toBe('/v1/traces');
      const sent = JSON.stringify(JSON.parse(received[0]!.body));
      expect(sent).toContain(span.spanContext().traceId);
      expect(sent).toContain('"name":"exported"');
      expect(sent).toContain('tracing-unit-test');
    } finally {
      process.env = saved;
      collector.close();
    }
  });
});

describe('export settings (OTEL_*)', () => {
  it('is off by default, on for an OTLP endpoint or OTEL_TRACES_EXPORTER=otlp, off again for none or a disabled SDK', () => {
    expect(exportWanted({})).toBe(false);
    expect(exportWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://localhost:4318' })).toBe(true);
    expect(exportWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://jaeger:4318/v1/traces' })).toBe(true);
    expect(exportWanted({ OTEL_TRACES_EXPORTER: 'otlp' })).toBe(true);
    expect(exportWanted({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://localhost:4318' })).toBe(false);
    expect(exportWanted({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://localhost:4318' })).toBe(false);
  });

  it.each([
    [{ OTEL_TRACES_EXPORTER: 'zipkin' }, 'OTEL_TRACES_EXPORTER'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318' }, 'OTEL_EXPORTER_OTLP_ENDPOINT'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://localhost:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'OTEL_EXPORTER_OTLP_PROTOCOL'],
  ])('refuses %o, naming %s, and so does the configuration at startup', (env, setting) => {
    expect(() => exportWanted(env)).toThrow(TracingConfigError);
    expect(() => exportWanted(env)).toThrow(setting);
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(setting);
  });
});
