/**
 * What runs when export is off (the default): a tracer provider that only makes ids. A span continues its
 * parent's trace (or starts a new one, sampled, so a function further down that does export records its part)
 * with a span id of its own, records nothing and costs one small random read. So trace context still flows
 * from the HTTP request through every message, and every log line names its trace and span, with no SDK
 * loaded. With export on, the SDK's provider (./export.ts) takes its place.
 */
import { randomFillSync } from 'node:crypto';
import {
  type Context,
  context as contextApi,
  isSpanContextValid,
  type Span,
  type SpanOptions,
  TraceFlags,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';

/** Random bytes drawn in blocks: one system call per 256 ids rather than one per id. */
const pool = Buffer.alloc(4096);
let used = pool.length;

function randomHex(bytes: number): string {
  for (;;) {
    if (used + bytes > pool.length) {
      randomFillSync(pool);
      used = 0;
    }
    const hex = pool.toString('hex', used, used + bytes);
    used += bytes;
    if (!/^0+$/.test(hex)) return hex; // all zeros is the invalid id
  }
}

class IdOnlyTracer implements Tracer {
  startSpan(_name: string, options: SpanOptions = {}, context: Context = contextApi.active()): Span {
    const parent = options.root ? undefined : trace.getSpanContext(context);
    const continues = parent !== undefined && isSpanContextValid(parent);
    return trace.wrapSpanContext({
      traceId: continues ? parent.traceId : randomHex(16),
      spanId: randomHex(8),
      traceFlags: continues ? parent.traceFlags : TraceFlags.SAMPLED,
      ...(continues && parent.traceState ? { traceState: parent.traceState } : {}),
    });
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: unknown[]): ReturnType<F> {
    const fn = rest.pop() as F;
    const [options, context = contextApi.active()] = rest as [SpanOptions | undefined, Context | undefined];
    const span = this.startSpan(name, options, context);
    return contextApi.with(trace.setSpan(context, span), () => fn(span)) as ReturnType<F>;
  }
}

/** The provider registered when nothing is exported. */
export class IdOnlyTracerProvider implements TracerProvider {
  private readonly tracer = new IdOnlyTracer();
  getTracer(): Tracer {
    return this.tracer;
  }
}
