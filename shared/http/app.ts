/**
 * Order intake's HTTP app: fastify, built from plugins that each own one concern, on `createHttpApp`
 * (shared/http/base-app.ts), the base every HTTP function shares (limits, problem+json errors, JSON bodies,
 * correlation id, one log line per request); the DLQ reprocessor's app is built on it too
 * (shared/http/dlq-app.ts). Works the same through @fastify/aws-lambda (API Gateway HTTP API v2 events) and
 * with `app.inject()`.
 *
 *   const app = buildApp();                                   // process-wide store and broker, opened lazily
 *   const app = buildApp({ store, broker, publisher, config }); // tests: inject their own
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../logging';
import { adminRoutes } from './admin-routes';
import { createHttpApp } from './base-app';
import { healthRoutes } from './health-routes';
import { ordersRoutes } from './orders-routes';
import { resolveServices, type ServiceOptions, servicesPlugin } from './services';

export const FUNCTION_NAME = 'order-intake';

export interface AppOptions extends ServiceOptions {
  /** Default: the process logger, with `function: order-intake`. */
  logger?: Logger;
}

export function buildApp(options: AppOptions = {}): FastifyInstance {
  const app = createHttpApp({ functionName: FUNCTION_NAME, logger: options.logger });
  app.register(servicesPlugin, { services: resolveServices(options) });
  app.register(ordersRoutes);
  app.register(healthRoutes);
  app.register(adminRoutes, { prefix: '/admin' });
  return app;
}
