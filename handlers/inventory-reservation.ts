/**
 * Inventory reservation (queue `order-events`): reserves stock for each OrderPlaced and emits
 * InventoryReserved or InventoryFailed through the outbox. Decoding, idempotency, dead-lettering and logging
 * are the middleware's (shared/middleware); the decision is the domain's (shared/domain/inventory.ts).
 */
import { reserveInventory, SEED_CATALOG, INVENTORY_APP_ID } from '../shared/domain/inventory';
import { config } from '../shared/config';
import { eventIdentity, OrderPlaced } from '../shared/events';
import { defaultStore, queueFunction } from '../shared/middleware';
import type { Store } from '../shared/store';

let seeded: Promise<Store> | undefined;
/** The store, with the demo catalog seeded (missing items only) once per container when SEED_CATALOG is on. */
function seededStore(): Promise<Store> {
  seeded ??= defaultStore().then(async (store) => {
    if (config().seedCatalog) await store.stock.seed(SEED_CATALOG);
    return store;
  });
  seeded.catch(() => (seeded = undefined));
  return seeded;
}

export const handler = queueFunction({
  name: INVENTORY_APP_ID,
  schema: OrderPlaced,
  eventTypes: ['OrderPlaced'],
  identity: eventIdentity,
  store: seededStore,
  handle: async (record, { tx, emit }) => {
    const outcome = await reserveInventory(record.payload, tx);
    await emit(outcome);
    return outcome.event_type === 'InventoryFailed' ? `failed: ${outcome.reason}` : 'reserved';
  },
});
