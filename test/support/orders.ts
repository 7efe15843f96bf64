/** Orders for the fault suites: a seeded mix of items, stored as intake stores them, published as the contract says. */
import { randomUUID } from 'node:crypto';
import type { ConfirmChannel } from 'amqplib';
import { eventProperties, newEvent, type OrderPlaced, ROUTES } from '../../shared/events';
import type { Store } from '../../shared/store';
import type { PlacedOrder } from './outcomes';

/** A small seeded PRNG (mulberry32), so a run's order mix can be reproduced from the seed it prints. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The stock the suites start from. `gizmo` runs out part-way (out_of_stock after that), `doohickey` has none,
 * and `unobtainium` is not in the catalog (unknown_item); `widget` never runs out.
 */
export const FAULT_STOCK: Readonly<Record<string, number>> = { widget: 1_000_000, gizmo: 150, doohickey: 0 };

/** `count` orders with a mix of items and quantities 1-3: mostly reservable, some rejected for each reason. */
export function makeOrders(count: number, random: () => number, userPrefix = 'fault-user'): Array<PlacedOrder & { event: OrderPlaced }> {
  return Array.from({ length: count }, (_, i) => {
    const r = random();
    const item = r < 0.7 ? 'widget' : r < 0.85 ? 'gizmo' : r < 0.9 ? 'doohickey' : 'unobtainium';
    const quantity = 1 + Math.floor(random() * 3);
    const event = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: `${userPrefix}-${i}`, item, quantity });
    return { order_id: event.order_id, user_id: event.user_id, item, quantity, event_id: event.event_id, event };
  });
}

/** Stores the orders (status `accepted`) as intake would before publishing, so the status projection finds them. */
export async function storeOrders(store: Store, orders: ReadonlyArray<PlacedOrder>): Promise<void> {
  await store.transaction(async (tx) => {
    for (const o of orders) await tx.orders.insert({ order_id: o.order_id, user_id: o.user_id, item: o.item, quantity: o.quantity });
  });
}

/** Publishes OrderPlaced events to the `orders` exchange with the contract's properties, and waits for the confirms. */
export async function publishOrderPlaced(channel: ConfirmChannel, events: readonly OrderPlaced[], copies = 1): Promise<void> {
  const route = ROUTES.OrderPlaced;
  for (const event of events) {
    const body = Buffer.from(JSON.stringify(event));
    const properties = eventProperties(event, 'order-intake', `corr-${event.order_id}`);
    for (let i = 0; i < copies; i++) channel.publish(route.exchange, route.routingKey, body, properties);
  }
  await channel.waitForConfirms();
}
