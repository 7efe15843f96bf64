/** Small utilities with one home each, free of this app: every other folder may use them. */
export * from './cold-start';
export * from './handler-ref';
export * from './lazy';
export * from './redact-url';
export * from './usage-error';
export * from './within';
