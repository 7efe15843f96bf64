/**
 * A queue function for middleware tests, built with `queueFunction` like the real ones: reserves stock for
 * an OrderPlaced and emits InventoryReserved / InventoryFailed. Items steer failures:
 *   'flaky'          throws a transient error on the first attempt only
 *   'always-broken'  throws a transient error on every attempt
 *   'forbidden'      throws a permanent domain error
 */
import type { Logger } from '../../shared/logging';
import { eventIdentity, newEvent, OrderPlaced } from '../../shared/events';
import { PermanentError, queueFunction, TransientError } from '../../shared/middleware';
import type { NewOutboxMessage, Store } from '../../shared/store';

export class ForbiddenItemError extends PermanentError {
  override readonly name = 'ForbiddenItemError';
}

export function reservationFunction(options: {
  store: Store | (() => Promise<Store>);
  logger?: Logger;
  retryDelaysMs?: number[];
  onCommitted?: (rows: readonly NewOutboxMessage[], store: Store) => Promise<void>;
}) {
  return queueFunction({
    name: 'test-reservation',
    schema: OrderPlaced,
    eventTypes: ['OrderPlaced'],
  identity: eventIdentity,
    store: options.store,
    retryDelaysMs: options.retryDelaysMs ?? [200, 400],
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.onCommitted ? { onCommitted: options.onCommitted } : {}),
    handle: async (record, { tx, emit, logger }) => {
      const order = record.payload;
      logger.info({ user_id: order.user_id, item: order.item }, 'reserving');
      if (order.item === 'flaky' && record.attempt === 1) throw new TransientError('stock service warming up');
      if (order.item === 'always-broken') throw new TransientError('stock service down');
      if (order.item === 'forbidden') throw new ForbiddenItemError('item may not be sold');
      const result = await tx.stock.reserve(order.item, order.quantity);
      const fields = { order_id: order.order_id, user_id: order.user_id, item: order.item, quantity: order.quantity };
      await emit(result === 'reserved' ? newEvent('InventoryReserved', fields) : newEvent('InventoryFailed', { ...fields, reason: result }));
      return result;
    },
  });
}
