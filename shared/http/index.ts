/** The order-intake HTTP API: the fastify app, its plugins and the Lambda logging middleware. */

export { authorizationFailure } from './admin-auth';
export { buildApp, FUNCTION_NAME } from './app';
export { saneCorrelationId, uniqueApiRequestId } from './correlation';
export { httpLogging } from './lambda-logging';
export * from './limits';
export { idempotencyKey } from './orders-routes';
export * from './problem';
