/**
 * Order-status projection (queue `order-status-events`): moves each order to `reserved` or `rejected` so
 * GET /orders/{id} tells the truth. An outcome that arrives before its order is retried, not lost.
 */
import { applyInventoryOutcome } from '../shared/domain/order-status';
import { eventIdentity, InventoryOutcome } from '../shared/events';
import { queueFunction } from '../shared/middleware';

export const handler = queueFunction({
  name: 'order-status',
  schema: InventoryOutcome,
  eventTypes: ['InventoryReserved', 'InventoryFailed'],
  identity: eventIdentity,
  handle: async (record, { tx }) => (await applyInventoryOutcome(tx, record.payload)).status,
});
