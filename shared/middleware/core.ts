/**
 * `middy-rabbitmq/core`: the parts that import nothing (no zod, no middy, no amqplib), for code that must stay
 * light, such as an HTTP function that publishes to RabbitMQ or classifies its errors with the same vocabulary:
 * the retry and dead-letter headers, the two failure classes, and the cold-start flag the logging middleware uses.
 */

export { PermanentError, TransientError } from './failure.js';
export * from './headers.js';
export { takeColdStart } from './lib/cold-start.js';
