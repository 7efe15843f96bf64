/** The order-intake HTTP API: the fastify app, its plugins and the Lambda logging middleware. */

export { authorizationFailure } from './admin-auth';
export { type AppOptions, buildApp, FUNCTION_NAME } from './app';
export { CORRELATION_HEADER, saneCorrelationId } from './correlation';
export type { HealthBody } from './health-routes';
export { type HttpLoggingOptions, httpLogging } from './lambda-logging';
export * from './limits';
export { acceptedBody, idempotencyKey, type OrderView, toOrderView } from './orders-routes';
export * from './problem';
export { resolveServices, type ServiceOptions, type Services } from './services';
