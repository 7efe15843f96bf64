/**
 * A span per HTTP request (SERVER), continuing the client's W3C `traceparent`/`tracestate` when it sent a
 * valid one, else a new trace (an invalid header is ignored, as the specification asks: never a 4xx). The
 * request runs with the span active, so the order's transaction and the event it stores (its outbox row keeps
 * the trace context) belong to it; the request's log lines carry its trace and span ids.
 */
import { SpanStatusCode } from '@opentelemetry/api';
import type { FastifyRequest } from 'fastify';
import {
  bindSpanToLogger,
  extractTraceContext,
  loggerWithSpan,
  runInContext,
  type Span,
  SpanKind,
  startSpan,
  startTracing,
  withSpan,
} from 'middy-rabbitmq/tracing';
import { expose } from './expose';

const spans = new WeakMap<FastifyRequest, Span>();

export const tracingPlugin = expose<{ functionName: string }>('tracing', async (app, options) => {
  app.addHook('onRequest', (request, _reply, done) => {
    startTracing().then(() => {
      const parent = extractTraceContext(request.headers);
      const route = request.routeOptions.url;
      const span = startSpan(
        `${request.method} ${route ?? '(no route)'}`,
        {
          kind: SpanKind.SERVER,
          attributes: {
            'http.request.method': request.method,
            'url.path': request.url.split('?')[0] ?? '',
            ...(route ? { 'http.route': route } : {}),
            'faas.name': options.functionName,
          },
        },
        parent,
      );
      spans.set(request, span);
      // fastify's logger for this request alone (a child per request, as createHttpApp configures it): the span
      // is bound to it in place; the app's own logger would get a child instead.
      if (request.log === app.log) request.log = loggerWithSpan(request.log, span);
      else bindSpanToLogger(request.log, span);
      // The rest of the request (hooks, body, handler) runs inside this call, so with the span active.
      runInContext(withSpan(span, parent), () => done());
    }, done);
  });
  app.addHook('onResponse', async (request, reply) => {
    const span = spans.get(request);
    spans.delete(request);
    span?.setAttribute('http.response.status_code', reply.statusCode);
    if (reply.statusCode >= 500) span?.setStatus({ code: SpanStatusCode.ERROR });
    span?.end();
  });
});
