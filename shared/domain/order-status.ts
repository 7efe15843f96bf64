/**
 * Order-status projection, the domain step: move the order to `reserved` or `rejected` (with the reason)
 * so that GET /orders/{id} tells the truth. An outcome that arrives before its order is stored is a
 * transient failure: it is retried later, not lost.
 */

import { TransientError } from '../contract/errors';
import type { Order, Tx } from '../store';
import type { InventoryOutcome } from './notifications';

/** The order is not (yet) in the database: retry later; after the last retry the event waits in the DLQ. */
class OrderNotYetStoredError extends TransientError {
  override readonly name = 'OrderNotYetStoredError';
}

export async function applyInventoryOutcome(tx: Tx, event: InventoryOutcome): Promise<Order> {
  const [status, reason] = event.event_type === 'InventoryReserved' ? (['reserved', null] as const) : (['rejected', event.reason] as const);
  const order = await tx.orders.setStatus(event.order_id, status, reason ?? undefined);
  if (!order) throw new OrderNotYetStoredError(`Order ${event.order_id} is not stored yet`);
  return order;
}
