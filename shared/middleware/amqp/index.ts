/**
 * AMQP plumbing, nothing application-specific: one connection per process with failover and backoff
 * (Broker), publishing with confirms (Publisher), and the properties of a copy of a received message
 * (republishProperties). The trigger, the middleware and the app's messaging build on it.
 */

export { redactUrl } from '../lib/redact-url.js';
export * from './connection.js';
export * from './publisher.js';
export * from './republish.js';
