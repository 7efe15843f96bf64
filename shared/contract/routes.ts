/**
 * Where the contract's events travel: the exchanges, and the exchange and routing key of each event type.
 * The queues bound to them are the topology's (shared/messaging/topology.ts).
 */

/** The exchanges (durable): `orders` and `inventory` are topic exchanges the services publish to; `dlx`
 * takes dead letters, keyed by the queue they came from; `retry` is the headers exchange of the retry path. */
export const EXCHANGES = {
  orders: 'orders',
  inventory: 'inventory',
  deadLetter: 'dlx',
  retry: 'retry',
} as const;

/** Exchange and routing key of each event type. */
export const ROUTES = {
  OrderPlaced: { exchange: EXCHANGES.orders, routingKey: 'order.placed' },
  InventoryReserved: { exchange: EXCHANGES.inventory, routingKey: 'inventory.reserved' },
  InventoryFailed: { exchange: EXCHANGES.inventory, routingKey: 'inventory.failed' },
} as const satisfies Record<string, { exchange: string; routingKey: string }>;
