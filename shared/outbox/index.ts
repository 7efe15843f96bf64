/**
 * The outbox relay: publishes the events that state changes wrote to the outbox table, with confirms.
 *
 *   await publishPending(store, publisher, { limit: 100 });            // one round
 *   const stop = startOutboxRelay({ store, publisher, intervalMs, logger }); // a loop; await stop() to end it
 *   await publishEvent(store, publisher, eventId, { timeoutMs });      // one row, right after its commit
 */
export * from './message';
export * from './publish';
export * from './relay';
