/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) as an OpenTelemetry TextMapPropagator, written here
 * rather than taken from @opentelemetry/core so that nothing but @opentelemetry/api is loaded on a cold start.
 *
 * What arrives is hostile until checked: a `traceparent` is taken only when it is a string of the exact form
 * (version 00, or a later version read as 00 as the specification asks), with a trace id and a span id that
 * are not all zeros; anything else is ignored and the receiver starts a new trace, as the specification says
 * (never an error: a client's broken tracing must not cost it its order). A `tracestate` is taken only with a
 * valid `traceparent`, only when it is text of sane length, and only its well-formed members (the API's parser
 * drops the others and keeps at most 32).
 */
import {
  type Context,
  createTraceState,
  isSpanContextValid,
  type SpanContext,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
  TraceFlags,
  trace,
} from '@opentelemetry/api';

/** The W3C header names (lower case, as in HTTP and as this system writes them in AMQP headers). */
export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';

/** Longest tracestate read; the specification lets a vendor cut it at 512 characters, we read a little more. */
const MAX_TRACESTATE_LENGTH = 1024;

const TRACEPARENT_FORM = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** The span context a `traceparent` value names, or undefined when it is not a valid one. */
export function parseTraceparent(value: unknown): SpanContext | undefined {
  const text = firstText(value);
  if (text === undefined || text.length > 512) return undefined;
  const match = TRACEPARENT_FORM.exec(text.trim());
  if (!match) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string | undefined];
  // Version ff is invalid; version 00 has exactly four fields; a later version may add fields after a dash.
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  const context: SpanContext = { traceId, spanId, traceFlags: Number.parseInt(flags, 16) & TraceFlags.SAMPLED, isRemote: true };
  return isSpanContextValid(context) ? context : undefined;
}

/** The `traceparent` value for a span context (version 00). */
export const formatTraceparent = (context: SpanContext): string =>
  `00-${context.traceId}-${context.spanId}-0${(context.traceFlags & TraceFlags.SAMPLED).toString(16)}`;

/** A header as text: a string, or the first string of a repeated HTTP header; anything else is not one. */
function firstText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  return undefined;
}

/** Extracts and injects `traceparent` / `tracestate`. */
export class W3CTraceContextPropagator implements TextMapPropagator {
  inject(context: Context, carrier: unknown, setter: TextMapSetter): void {
    const spanContext = trace.getSpanContext(context);
    if (!spanContext || !isSpanContextValid(spanContext)) return;
    setter.set(carrier, TRACEPARENT, formatTraceparent(spanContext));
    const state = spanContext.traceState?.serialize();
    if (state) setter.set(carrier, TRACESTATE, state);
  }

  extract(context: Context, carrier: unknown, getter: TextMapGetter): Context {
    const spanContext = parseTraceparent(getter.get(carrier, TRACEPARENT));
    if (!spanContext) return context;
    const state = firstText(getter.get(carrier, TRACESTATE));
    if (state !== undefined && state.length <= MAX_TRACESTATE_LENGTH) {
      const traceState = createTraceState(state);
      if (traceState.serialize()) spanContext.traceState = traceState;
    }
    return trace.setSpanContext(context, spanContext);
  }

  fields(): string[] {
    return [TRACEPARENT, TRACESTATE];
  }
}
