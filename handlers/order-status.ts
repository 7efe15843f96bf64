/**
 * Order-status projection (queue `order-status-events`): moves each order to `reserved` or `rejected` so
 * GET /orders/{id} tells the truth. An outcome that arrives before its order is retried, not lost.
 */
import { appQueueFunction, type QueueDeps } from '../shared/app/queue-function';
import { applyInventoryOutcome } from '../shared/domain/order-status';
import { InventoryOutcome } from '../shared/events';

/** The handler with its dependencies (tests and benches pass their own). */
export const createHandler = (deps: Partial<QueueDeps> = {}) =>
  appQueueFunction({
    name: 'order-status',
    consumer: 'order-status',
    schema: InventoryOutcome,
    deps,
    handle: async (record, { tx }) => (await applyInventoryOutcome(tx, record.payload)).status,
  });

export const handler = createHandler();
