/**
 * Middy middleware for queue functions: records, parse body, idempotency, poison messages, structured
 * logging, and `queueFunction`, which stacks them in the right order (see queue-function.ts for why).
 */
export * from './errors.js';
// The wire headers of retries and dead letters.
export * from './headers.js';
export * from './idempotency.js';
export { takeColdStart } from './lib/cold-start.js';
export * from './logging.js';
export * from './memory-inbox.js';
// The batch report a queue function returns, and the CloudWatch (embedded metric format) middleware.
export * from './metrics/index.js';
export * from './parse-body.js';
export * from './poison-messages.js';
export * from './queue-function.js';
export * from './records.js';
// The `aws:rmq` event: types, runtime check, decoder, builder, size and timestamp helpers.
export * from './rmq-event/index.js';
export * from './types.js';
