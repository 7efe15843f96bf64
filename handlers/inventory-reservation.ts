/**
 * Inventory reservation (queue `order-events`): reserves stock for each OrderPlaced and emits
 * InventoryReserved or InventoryFailed through the outbox. Decoding, idempotency, dead-lettering and logging
 * are the middleware's (shared/middleware, bound to this app in shared/app); the decision is the domain's
 * (shared/domain/inventory.ts).
 */
import { appQueueFunction, processStore, type QueueDeps } from '../shared/app/queue-function';
import { config } from '../shared/config';
import { INVENTORY_APP_ID, reserveInventory, SEED_CATALOG } from '../shared/domain/inventory';
import { OrderPlaced } from '../shared/events';
import { lazy } from '../shared/lib/lazy';

/** The handler with its dependencies (tests and benches pass their own). */
export const createHandler = (deps: Partial<QueueDeps> = {}) =>
  appQueueFunction({
    name: 'inventory-reservation',
    consumer: INVENTORY_APP_ID,
    schema: OrderPlaced,
    deps,
    handle: async (record, { tx, emit }) => {
      const outcome = await reserveInventory(record.payload, tx);
      await emit(outcome);
      return outcome.event_type === 'InventoryFailed' ? `failed: ${outcome.reason}` : 'reserved';
    },
  });

/** The process's store, with the demo catalog seeded (missing items only) once per container when SEED_CATALOG is on. */
const seededStore = lazy(async () => {
  const store = await processStore();
  if (config().seedCatalog) await store.stock.seed(SEED_CATALOG);
  return store;
});

export const handler = createHandler({ store: seededStore });
