/**
 * The base every HTTP function's fastify app is built on (`createHttpApp`): limits, problem+json errors, JSON
 * bodies, correlation id, a span and one log line per request, no schema compilers. Order intake's app
 * (shared/http/app.ts) and the DLQ reprocessor's (shared/http/dlq-app.ts) are built on it. Its own module, not
 * app.ts, so the DLQ reprocessor's bundle does not import intake's routes, services and store (their lazily
 * loaded parts would be chunks of its zip: scripts/esbuild-plugins.cjs, function-chunks).
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import { type Logger, logger as processLogger } from '../logging';
import { correlationPlugin } from './correlation';
import { jsonBodyPlugin } from './json-body';
import { BODY_LIMIT_BYTES } from './limits';
import { problemPlugin } from './problem-plugin';
import { tracingPlugin } from './tracing';

/** A route declared a JSON schema: this app validates with zod at the edge (shared/contract/validation.ts). */
class RouteSchemaError extends Error {
  override readonly name = 'RouteSchemaError';
  constructor(kind: 'validation' | 'serialization') {
    super(
      `Route schemas are not compiled here (${kind}): validate requests with zod (shared/contract/validation.ts), ` +
        "so fastify's schema compilers (ajv, fast-json-stringify) stay out of every HTTP function's cold start",
    );
  }
}

/**
 * fastify loads its schema compilers (ajv and fast-json-stringify, a quarter of the intake bundle) when an app is
 * created, unless given its own: these, which refuse a route schema at registration. serverless.yml leaves both
 * compiler packages out of the bundles.
 */
const noSchemaCompilers = {
  buildValidator: () => () => {
    throw new RouteSchemaError('validation');
  },
  buildSerializer: () => () => {
    throw new RouteSchemaError('serialization');
  },
};

/** The base of every HTTP function: `functionName` on every log line (default logger: the process's). */
export function createHttpApp(options: { functionName: string; logger?: Logger | undefined }): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger ?? processLogger().child({ function: options.functionName }),
    // One line per request comes from the onResponse hook below, with the correlation id.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    bodyLimit: BODY_LIMIT_BYTES,
    schemaController: { compilersFactory: noSchemaCompilers },
  });
  app.register(problemPlugin);
  // First of the hooks: a span per request, active for all that follows (W3C trace context in, see tracing.ts).
  app.register(tracingPlugin, { functionName: options.functionName });
  // JSON only, in UTF-8: a text/plain body is a 415, not a string for the schema to puzzle over.
  app.register(jsonBodyPlugin);
  app.register(correlationPlugin);
  app.addHook('onResponse', async (request, reply) => {
    const line = {
      method: request.method,
      path: request.url.split('?')[0],
      statusCode: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime),
    };
    if (reply.statusCode >= 500) request.log.error(line, 'request completed');
    else request.log.info(line, 'request completed');
  });
  return app as unknown as FastifyInstance;
}
