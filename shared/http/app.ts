/**
 * The HTTP functions' apps: fastify, built from plugins that each own one concern. `createHttpApp` is the base
 * every HTTP function shares (limits, problem+json errors, JSON bodies, correlation id, one log line per
 * request); `buildApp` is order intake on it, and the DLQ reprocessor's app is built on it too
 * (shared/http/dlq-app.ts). Works the same through @fastify/aws-lambda (API Gateway HTTP API v2 events) and
 * with `app.inject()`.
 *
 *   const app = buildApp();                                   // process-wide store and broker, opened lazily
 *   const app = buildApp({ store, broker, publisher, config }); // tests: inject their own
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import { type Logger, logger as processLogger } from '../logging';
import { adminRoutes } from './admin-routes';
import { correlationPlugin } from './correlation';
import { healthRoutes } from './health-routes';
import { jsonBodyPlugin } from './json-body';
import { BODY_LIMIT_BYTES } from './limits';
import { ordersRoutes } from './orders-routes';
import { problemPlugin } from './problem-plugin';
import { resolveServices, type ServiceOptions, servicesPlugin } from './services';
import { tracingPlugin } from './tracing';

export const FUNCTION_NAME = 'order-intake';

export interface AppOptions extends ServiceOptions {
  /** Default: the process logger, with `function: order-intake`. */
  logger?: Logger;
}

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

export function buildApp(options: AppOptions = {}): FastifyInstance {
  const app = createHttpApp({ functionName: FUNCTION_NAME, logger: options.logger });
  app.register(servicesPlugin, { services: resolveServices(options) });
  app.register(ordersRoutes);
  app.register(healthRoutes);
  app.register(adminRoutes, { prefix: '/admin' });
  return app;
}
