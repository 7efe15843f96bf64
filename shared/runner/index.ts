/** The RabbitMQ-trigger runner: Lambda's Amazon MQ trigger, locally. */
export * from './batcher';
export * from './context';
export * from './definitions';
export * from './invokers';
export * from './mapping';
export * from './metrics';
export * from './runner';
export * from './settings';
export * from './status-file';
export * from './trigger';
