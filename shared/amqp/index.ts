/**
 * AMQP plumbing with nothing of this app in it: one connection per process with failover and backoff
 * (Broker), publishing with confirms (Publisher), and the properties of a copy of a received message
 * (republishProperties). The trigger, the middleware and the app's messaging build on it.
 */
export * from './connection';
export * from './publisher';
export * from './republish';
