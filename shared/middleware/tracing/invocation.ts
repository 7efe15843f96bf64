/**
 * Spans of a queue function: one per batch invocation (`invocationTracing`, middy middleware) and one per
 * record (`startRecordSpan`). Each record continues the trace its message carries (`traceparent`, else a new
 * trace); the invocation, which serves records of many traces, is a root of its own, and each record span
 * links to it (and it to each record's sender), as OpenTelemetry's messaging conventions do for batches.
 *
 *   middy(handler).use(structuredLogging(...)).use(invocationTracing({ functionName: 'notification' }))
 */
import type middy from '@middy/core';
import { type Context as OtelContext, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Context } from 'aws-lambda';
import type { Logger } from 'pino';
import { extractTraceContext, flushTracing, loggerWithSpan, recordFailure, startSpan, startTracing } from './index.js';

/** Each invocation's span, by its Lambda context (what batch-level middleware keys its state by). */
const invocations = new WeakMap<Context, Span>();
/** Each invocation's function name, for its records' spans. */
const batchFunction = new WeakMap<Context, string>();

/** The invocation's context (its span active), for work of the batch as a whole: its transaction. */
export const invocationContext = (invocation: Context): OtelContext => {
  const span = invocations.get(invocation);
  return span ? trace.setSpan(ROOT_CONTEXT, span) : ROOT_CONTEXT;
};

type Request = middy.Request<unknown, unknown, Error, Context & { logger?: Logger }>;

export interface InvocationTracingOptions {
  /** The function's name: the invocation span's name, and `faas.name` on it and on its records' spans. */
  functionName: string;
}

export function invocationTracing(
  options: InvocationTracingOptions,
): middy.MiddlewareObj<unknown, unknown, Error, Context & { logger?: Logger }> {
  const end = async (request: Request, error?: unknown) => {
    const span = invocations.get(request.context);
    invocations.delete(request.context);
    if (!span) return;
    if (error !== undefined) recordFailure(span, error);
    span.end();
    await flushTracing();
  };
  return {
    before: async (request: Request) => {
      await startTracing();
      const { context } = request;
      const span = startSpan(
        options.functionName,
        {
          kind: SpanKind.CONSUMER,
          root: true,
          attributes: {
            'faas.name': options.functionName,
            'faas.trigger': 'pubsub',
            'faas.invocation_id': context.awsRequestId,
            'messaging.system': 'rabbitmq',
            'messaging.operation.type': 'process',
          },
        },
        ROOT_CONTEXT,
      );
      invocations.set(context, span);
      batchFunction.set(context, options.functionName);
      if (context.logger) context.logger = loggerWithSpan(context.logger, span);
    },
    after: (request: Request) => end(request),
    onError: (request: Request) => end(request, request.error),
  };
}

/** What a record span is made of: the record's queue and properties, as the records middleware decoded them. */
export interface TracedRecord {
  queue: string;
  messageId: string | undefined;
  correlationId: string | undefined;
  attempt: number;
  redelivered: boolean;
  headers: Readonly<Record<string, unknown>>;
}

/**
 * Starts the span of one record: child of the context its message carries (a new trace when it carries none
 * or an invalid one), linked to the invocation's span. Run the record in `context`; end with `endRecordSpan`.
 */
export function startRecordSpan(record: TracedRecord, invocation: Context): { span: Span; context: OtelContext } {
  const parent = extractTraceContext(record.headers);
  const batch = invocations.get(invocation);
  const span = startSpan(
    `${record.queue} process`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.system': 'rabbitmq',
        'messaging.operation.type': 'process',
        'messaging.destination.name': record.queue,
        ...(batchFunction.get(invocation) ? { 'faas.name': batchFunction.get(invocation) } : {}),
        ...(record.messageId ? { 'messaging.message.id': record.messageId } : {}),
        ...(record.correlationId ? { 'messaging.message.conversation_id': record.correlationId } : {}),
        'messaging.rabbitmq.attempt': record.attempt,
        'messaging.rabbitmq.redelivered': record.redelivered,
      },
      ...(batch ? { links: [{ context: batch.spanContext() }] } : {}),
    },
    parent,
  );
  const sender = trace.getSpanContext(parent);
  if (batch && sender) batch.addLink({ context: sender });
  return { span, context: trace.setSpan(parent, span) };
}

/** Ends a record's span with what happened to it: retried and dead-lettered records are failures. */
export function endRecordSpan(span: Span, outcome: { outcome: string; error?: string } | undefined, thrown?: unknown): void {
  if (thrown !== undefined) recordFailure(span, thrown);
  else if (outcome) {
    span.setAttribute('app.record.outcome', outcome.outcome);
    if (outcome.error) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error.slice(0, 1_000) });
  }
  span.end();
}
