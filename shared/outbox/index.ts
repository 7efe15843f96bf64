/**
 * The outbox relay: publishes the events that state changes wrote to the outbox table, with confirms.
 *
 *   await publishPending(store, publisher, { limit: 100 });            // one round
 *   const stop = startOutboxRelay({ store, publisher, intervalMs, logger }); // a loop; await stop() to end it
 *   await publishCommitted(store, publisher, messages, { timeoutMs }); // just committed, from memory
 */
export * from './message';
export * from './publish';
export * from './relay';
