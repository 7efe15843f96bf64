/**
 * W3C trace context with the OpenTelemetry API: one trace from the HTTP request through every message an
 * order causes (outbox, retries, dead letters, redrives), a span per HTTP request, batch invocation, record,
 * publish and transaction, and the trace and span ids on every log line.
 *
 * Only @opentelemetry/api (and this folder) is on the cold path. `startTracing()`, which every entry awaits
 * before its first span, decides once per process: export off (the default) registers a provider that only
 * makes ids (./ids.ts); export on (OTEL_* variables, ./settings.ts) loads the SDK and the OTLP/HTTP exporter
 * with dynamic imports (./export.ts). Spans are ended by whoever started them; a function that ends its
 * invocation calls `flushTracing()` so nothing waits in a buffer while Lambda freezes the process.
 *
 *   await startTracing();
 *   await traced('orders publish', { kind: SpanKind.PRODUCER }, async (span) => ...);
 *   const parent = extractTraceContext(message.properties.headers);   // a new trace when absent or invalid
 *   const headers = { ...headers, ...traceHeaders(spanContext) };     // traceparent and tracestate
 */
import {
  type Attributes,
  type Context,
  context,
  defaultTextMapGetter,
  type Link,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  type SpanOptions,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { AsyncLocalStorageContextManager } from './context-manager.js';
import { type Exporting, startExport } from './export.js';
import { IdOnlyTracerProvider } from './ids.js';
import { exportWanted } from './settings.js';
import { TRACEPARENT, TRACESTATE, W3CTraceContextPropagator } from './w3c.js';

export { type Span, SpanKind } from '@opentelemetry/api';
export { TracingConfigError } from './settings.js';

/** The instrumentation scope of every span this system makes. */
const SCOPE = 'rabbit-functions';

const propagator = new W3CTraceContextPropagator();

// The active span follows every await (ALS). Registered once per process; a manager someone else registered
// first is kept.
context.setGlobalContextManager(new AsyncLocalStorageContextManager());

export interface StartTracingOptions {
  /**
   * `service.name` of exported spans, unless OTEL_SERVICE_NAME says otherwise (default SERVICE_NAME, else
   * rabbit-functions): one per process, and `npm run worker` runs every function in one, so spans name their
   * function in `faas.name` instead.
   */
  serviceName?: string;
  /** Export to this exporter instead of OTLP, whatever the environment says (tests: an InMemorySpanExporter). */
  exporter?: SpanExporter;
  /** Where the OTEL_* variables are read (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
}

let started: Promise<void> | undefined;
let exporting: Exporting | undefined;

/**
 * Sets tracing up for the process, once: the first call decides (later calls share its promise). Export off:
 * resolves at once, nothing loaded. Throws TracingConfigError for an OTEL_* value it cannot honour (and
 * tries again on the next call).
 */
export function startTracing(options: StartTracingOptions = {}): Promise<void> {
  started ??= (async () => {
    if (!options.exporter && !exportWanted(options.env)) {
      trace.setGlobalTracerProvider(new IdOnlyTracerProvider());
      return;
    }
    const serviceName = options.serviceName ?? process.env.SERVICE_NAME ?? SCOPE;
    let started: Exporting;
    try {
      started = await startExport({ serviceName, exporter: options.exporter });
    } catch (error) {
      // The SDK is not where this bundle runs (a deployment packaged without the tracing param): ids only, said once.
      process.emitWarning(
        `OpenTelemetry export is configured but cannot start, spans are not exported (a deployed function needs the SDK in its zip: package with --param="tracing=true"): ${String(error)}`,
        { code: 'TRACING_EXPORT_UNAVAILABLE' },
      );
      trace.setGlobalTracerProvider(new IdOnlyTracerProvider());
      return;
    }
    trace.setGlobalTracerProvider(started.provider);
    exporting = started;
  })();
  started.catch(() => {
    started = undefined;
  });
  return started;
}

/** Hands every ended span to the exporter now (a no-op without export); never throws. */
export async function flushTracing(): Promise<void> {
  await exporting?.flush().catch(() => undefined);
}

/** Ends tracing for the process (exports what is left); the next startTracing() decides again. */
export async function stopTracing(): Promise<void> {
  const ending = exporting;
  exporting = undefined;
  started = undefined;
  await ending?.shutdown().catch(() => undefined);
  trace.disable();
}

/** The tracer of this system (asked each time: the provider is registered on the first startTracing()). */
const tracer = () => trace.getTracer(SCOPE);

/** Starts a span under `parent` (default: the active context); the caller ends it. */
export const startSpan = (name: string, options: SpanOptions = {}, parent: Context = context.active()): Span =>
  tracer().startSpan(name, options, parent);

/** `parent` with `span` as its active span. */
export const withSpan = (span: Span, parent: Context = context.active()): Context => trace.setSpan(parent, span);

/** Runs `fn` with `ctx` as the active context (its spans and log lines belong to it). */
export const runInContext = <T>(ctx: Context, fn: () => T): T => context.with(ctx, fn);

/** The span attribute naming the order a request or record is about: search a trace viewer by it. */
export const ORDER_ID_ATTRIBUTE = 'app.order_id';

/** Sets attributes on the active span (e.g. the order id, so a trace viewer finds an order's trace by it). */
export const tagActiveSpan = (attributes: Attributes): void => {
  trace.getActiveSpan()?.setAttributes(attributes);
};

/** Marks `span` failed with `error` (status and exception event). */
export function recordFailure(span: Span, error: unknown): void {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: message.slice(0, 1_000) });
  if (error instanceof Error) span.recordException(error);
}

export interface TracedOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  links?: Link[];
  /** The parent (default: the active context). */
  parent?: Context;
}

/** Runs `fn` in a new span (active while it runs), ended when `fn` settles, failed when it throws. */
export async function traced<T>(name: string, options: TracedOptions, fn: (span: Span) => Promise<T>): Promise<T> {
  const parent = options.parent ?? context.active();
  const { parent: _parent, ...spanOptions } = options;
  const span = tracer().startSpan(name, spanOptions, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (error) {
    recordFailure(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** The trace context a set of headers (HTTP or AMQP) carries, on `base`; `base` itself when there is none or it is invalid. */
export const extractTraceContext = (headers: unknown, base: Context = ROOT_CONTEXT): Context =>
  headers !== null && typeof headers === 'object' ? propagator.extract(base, headers, defaultTextMapGetter) : base;

/** `traceparent` and `tracestate` for `ctx`'s span (default: the active one); a key is absent when it has no value. */
export interface TraceHeaders {
  traceparent?: string;
  tracestate?: string;
}

export function traceHeaders(ctx: Context = context.active()): TraceHeaders {
  const carrier: TraceHeaders = {};
  propagator.inject(ctx, carrier, { set: (target, key, value) => Object.assign(target as object, { [key]: value }) });
  return carrier;
}

/**
 * `headers` with `trace` in place of any trace headers they carried (a copy of a received message gets the
 * context of the span that sends it: a stale `tracestate` must not ride along with a new `traceparent`).
 */
export function withTraceHeaders<H extends Record<string, unknown>>(headers: H, trace: TraceHeaders): H {
  const { [TRACEPARENT]: _parent, [TRACESTATE]: _state, ...rest } = headers;
  return { ...rest, ...trace } as unknown as H;
}

/**
 * Runs `send` inside a PRODUCER span for one message, giving it the trace headers the message must carry
 * (that span's context, so the consumer's span is its child). `parent`: where the message was caused (default:
 * the active context; an outbox row's stored context when the relay sends it later).
 */
export function publishSpan<T>(
  target: { exchange: string; routingKey: string; messageId?: string | undefined },
  parent: Context | undefined,
  send: (headers: TraceHeaders) => Promise<T>,
): Promise<T> {
  const attributes: Attributes = {
    'messaging.system': 'rabbitmq',
    'messaging.operation.type': 'send',
    'messaging.destination.name': target.exchange,
    'messaging.rabbitmq.destination.routing_key': target.routingKey,
  };
  if (target.messageId) attributes['messaging.message.id'] = target.messageId;
  return traced(
    `${target.exchange || '(default)'} publish`,
    { kind: SpanKind.PRODUCER, attributes, ...(parent ? { parent } : {}) },
    (span) => send(traceHeaders(trace.setSpan(ROOT_CONTEXT, span))),
  );
}

/** What a log line carries of a span (W3C ids, as OpenTelemetry's log data model names them). */
function traceFields(span: Span | undefined): { trace_id?: string; span_id?: string } {
  const ids = span?.spanContext();
  return ids?.traceId && ids.traceId !== '00000000000000000000000000000000' ? { trace_id: ids.traceId, span_id: ids.spanId } : {};
}

const LOGGER_SPAN = Symbol('tracing.span');

/**
 * Binds `span` to `logger` itself instead of to a child: for a logger that serves one request or one record
 * only (fastify's per-request child, a record's child), where a further child would cost a pino child's setup
 * for no new field.
 */
export function bindSpanToLogger(logger: object, span: Span): void {
  (logger as Record<symbol, Span>)[LOGGER_SPAN] = span;
}

/**
 * `logger` (a pino logger) bound to `span`: its lines, and its children's, carry the span's ids through the
 * logger's mixin (`traceMixin`), whatever context they are written from. Returns a child; the parent is untouched.
 */
export function loggerWithSpan<L extends { child(bindings: Record<string, never>): L }>(logger: L, span: Span): L {
  const child = logger.child({});
  (child as unknown as Record<symbol, Span>)[LOGGER_SPAN] = span;
  return child;
}

/**
 * The pino `mixin` that puts `trace_id` and `span_id` on every line: the span the logger was bound to
 * (loggerWithSpan; pino children inherit it), else the active span.
 */
export function traceMixin(_object: object, _level: number, logger?: unknown): { trace_id?: string; span_id?: string } {
  const bound = logger ? (logger as Record<symbol, Span | undefined>)[LOGGER_SPAN] : undefined;
  return traceFields(bound ?? trace.getSpan(context.active()));
}

export { exportWanted } from './settings.js';
export { formatTraceparent, parseTraceparent } from './w3c.js';
