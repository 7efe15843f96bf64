/**
 * Inventory reservation, the domain step: reserve the order's stock with one conditional update (never
 * oversells, whatever the concurrency) and decide which event announces the outcome.
 */
import { type InventoryFailed, type InventoryReserved, newEvent, type OrderPlaced } from '../events';
import type { Tx } from '../store';

/** The service name on every message inventory emits (AMQP `appId`). */
export const INVENTORY_APP_ID = 'inventory-reservation';

/**
 * The local demo catalog, a campus food menu: added (missing items only) to the database when SEED_CATALOG is
 * on, as it is locally and never in a deployment, so a fresh machine can take the reference system's own
 * example order, `{"user_id": "user123", "item": "Burger", "quantity": 2}`. Item names match exactly, case
 * included. `Sushi` is the one item sold out: an order for it is rejected with `out_of_stock`.
 */
export const SEED_CATALOG: Readonly<Record<string, number>> = {
  Burger: 100,
  Pizza: 60,
  Salad: 40,
  Sandwich: 50,
  Coffee: 200,
  Fries: 120,
  Burrito: 40,
  Smoothie: 30,
  Muffin: 25,
  Sushi: 0,
};

export async function reserveInventory(order: OrderPlaced, tx: Tx): Promise<InventoryReserved | InventoryFailed> {
  const result = await tx.stock.reserve(order.item, order.quantity);
  const fields = { order_id: order.order_id, user_id: order.user_id, item: order.item, quantity: order.quantity };
  return result === 'reserved' ? newEvent('InventoryReserved', fields) : newEvent('InventoryFailed', { ...fields, reason: result });
}
