/**
 * A queue function for middleware tests, built with the app's own queue-function wiring (shared/app) like
 * the real handlers, around a record handler whose items steer failures:
 *   'flaky'          throws a transient error on the first attempt only
 *   'always-broken'  throws a transient error on every attempt
 *   'forbidden'      throws a permanent domain error
 * and otherwise reserves stock and emits InventoryReserved / InventoryFailed, as inventoryReservation does.
 */
import { appQueueFunction } from '../../shared/app/queue-function';
import { PermanentError, TransientError } from '../../shared/contract';
import { reserveInventory } from '../../shared/domain/inventory';
import { OrderPlaced } from '../../shared/events';
import type { Logger } from '../../shared/logging';
import type { Publisher } from '../../shared/messaging';
import type { Store } from '../../shared/store';

class ForbiddenItemError extends PermanentError {
  override readonly name = 'ForbiddenItemError';
}

export function reservationFunction(options: {
  store: Store;
  /** Default: the process's publisher. */
  publisher?: Publisher;
  logger?: Logger;
  retryDelaysMs?: number[];
  /** Runs after each record's commit (e.g. to crash there). */
  afterCommit?: () => void;
}) {
  return appQueueFunction({
    name: 'test-reservation',
    consumer: 'test-reservation',
    schema: OrderPlaced,
    deps: {
      store: async () => options.store,
      retryDelaysMs: () => options.retryDelaysMs ?? [200, 400],
      ...(options.publisher ? { publisher: () => options.publisher! } : {}),
      ...(options.logger ? { logger: () => options.logger! } : {}),
    },
    handle: async (record, context) => {
      const order = record.payload;
      context.logger.info({ user_id: order.user_id, item: order.item }, 'reserving');
      if (order.item === 'flaky' && record.attempt === 1) throw new TransientError('stock service warming up');
      if (order.item === 'always-broken') throw new TransientError('stock service down');
      if (order.item === 'forbidden') throw new ForbiddenItemError('item may not be sold');
      if (options.afterCommit) context.afterCommit(options.afterCommit);
      const outcome = await reserveInventory(order, context.tx);
      await context.emit(outcome);
      return outcome.event_type === 'InventoryFailed' ? outcome.reason : 'reserved';
    },
  });
}
