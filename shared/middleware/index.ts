/**
 * Middy middleware for queue functions: records, parse body, idempotency, poison messages, structured
 * logging, and `queueFunction`, which stacks them in the right order (see queue-function.ts for why).
 */
export * from './errors';
export * from './idempotency';
export * from './logging';
export * from './parse-body';
export * from './poison-messages';
export * from './queue-function';
export * from './records';
export * from './types';
