/**
 * Inventory reservation, the domain step: reserve the order's stock with one conditional update (never
 * oversells, whatever the concurrency) and decide which event announces the outcome.
 */
import { type InventoryFailed, type InventoryReserved, newEvent, type OrderPlaced } from '../events';
import type { Tx } from '../store';

/** The service name on every message inventory emits (AMQP `appId`). */
export const INVENTORY_APP_ID = 'inventory-reservation';

/** The local catalog: seeded into an empty database so a fresh machine has something to order. */
export const SEED_CATALOG: Readonly<Record<string, number>> = {
  widget: 100,
  gadget: 50,
  gizmo: 10,
  doohickey: 0,
};

export async function reserveInventory(order: OrderPlaced, tx: Tx): Promise<InventoryReserved | InventoryFailed> {
  const result = await tx.stock.reserve(order.item, order.quantity);
  const fields = { order_id: order.order_id, user_id: order.user_id, item: order.item, quantity: order.quantity };
  return result === 'reserved' ? newEvent('InventoryReserved', fields) : newEvent('InventoryFailed', { ...fields, reason: result });
}
