/** The order-intake HTTP API: the fastify app, its plugins and the Lambda logging middleware. */
export { buildApp, FUNCTION_NAME, type AppOptions } from './app';
export { httpLogging, type HttpLoggingOptions } from './lambda-logging';
export { resolveServices, type ServiceOptions, type Services } from './services';
export { CORRELATION_HEADER, saneCorrelationId } from './correlation';
export { acceptedBody, idempotencyKey, toOrderView, type OrderView } from './orders-routes';
export { authorizationFailure } from './admin-auth';
export type { HealthBody } from './health-routes';
export * from './limits';
export * from './problem';
