/** The RabbitMQ-trigger runner: Lambda's Amazon MQ trigger, locally. */
export * from './batcher.js';
export * from './context.js';
export * from './definitions.js';
export { compileFilterPatterns, FilterPatternError } from './filters.js';
export * from './invokers.js';
export * from './lib/handler-ref.js';
export * from './mapping.js';
export * from './metrics.js';
/** The serverless-offline plugin, loaded by Serverless through the package name in `plugins:`. */
export { default } from './offline-plugin.js';
export * from './runner.js';
export * from './settings.js';
export * from './status-file.js';
export * from './trigger.js';
