/**
 * A queue function without a broker: the real inventoryReservation handler, its store an in-memory SQLite
 * database and its publisher a recorder, invoked with an aws:rmq event built from message bodies.
 */
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { rabbitMQEventFromBodies } from 'middy-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHandler } from '../../handlers/inventory-reservation';
import { newEvent } from '../../shared/events';
import { createLogger } from '../../shared/logging';
import type { OutgoingMessage, Publisher } from '../../shared/messaging';
import { openStore, type Store } from '../../shared/store';
import { reservationFunction } from '../support/reservation-function';
import { LogCapture } from '../support/runner';

const context = { awsRequestId: 'req-1', functionName: 'inventoryReservation' } as Context;

describe('queueFunction without a broker (the inventory reservation handler)', () => {
  let store: Store;
  const published: OutgoingMessage[] = [];
  const publisher = { publish: async (message: OutgoingMessage) => void published.push(message) } as unknown as Publisher;
  const logs = new LogCapture();
  const handler = () =>
    createHandler({
      store: async () => store,
      publisher: () => publisher,
      logger: () => createLogger({ level: 'info', destination: logs }),
      retryDelaysMs: () => [100],
    });

  beforeAll(async () => {
    store = await openStore({ sqlitePath: ':memory:' });
    await store.stock.upsert({ widget: 5 });
  });
  afterAll(async () => {
    await store.close();
  });

  it('reserves once, skips the duplicate, dead-letters the poison and publishes what was committed', async () => {
    const order = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'u-1', item: 'widget', quantity: 2 });
    const event = rabbitMQEventFromBodies({ queue: 'order-events', bodies: [order, order, '{not json'] });
    const report = await handler()(event, context);
    expect(report).toEqual({ records: 3, processed: 1, duplicates: 1, retried: 0, deadLettered: 1 });
    expect((await store.stock.get('widget'))?.available).toBe(3);
    const [deadLetter, reserved] = [published.find((m) => m.exchange === 'dlx'), published.find((m) => m.exchange === 'inventory')];
    expect(deadLetter).toMatchObject({
      routingKey: 'order-events',
      options: { headers: { 'x-error-class': 'permanent', 'x-error-name': 'MalformedMessageError' } },
    });
    expect(JSON.parse(reserved!.body.toString())).toMatchObject({ event_type: 'InventoryReserved', order_id: order.order_id });
    expect(reserved!.options).toMatchObject({
      messageId: JSON.parse(reserved!.body.toString()).event_id,
      type: 'InventoryReserved',
      appId: 'inventory-reservation',
    });
    expect(await store.outbox.backlog()).toBe(0);
  });

  it('sends a transient failure to the retry exchange with the next attempt, and the batch still succeeds', async () => {
    published.length = 0;
    const failing = createHandler({
      store: async () => Object.assign(Object.create(store) as Store, { begin: () => Promise.reject(new Error('database busy')) }),
      publisher: () => publisher,
      retryDelaysMs: () => [100],
      logger: () => createLogger({ level: 'silent' }),
    });
    const order = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'u-2', item: 'widget', quantity: 1 });
    const report = await failing(rabbitMQEventFromBodies({ queue: 'order-events', bodies: [order] }), context);
    expect(report).toMatchObject({ retried: 1 });
    expect(published).toHaveLength(1);
    expect(published[0]).toMatchObject({
      exchange: 'retry',
      routingKey: 'order-events',
      options: { headers: { 'x-attempt': 2, 'retry-delay-ms': 100, 'x-error-class': 'transient' } },
    });
  });
});

describe('one unit of work per batch', () => {
  it('runs a batch of 100 in one transaction: a failing record rolls back to its savepoint alone, the rest commit together', async () => {
    const store = await openStore({ sqlitePath: ':memory:' });
    try {
      await store.stock.upsert({ widget: 1_000, flaky: 10, forbidden: 10 });
      let begins = 0;
      const counting = Object.assign(Object.create(store) as Store, {
        begin: () => {
          begins++;
          return store.begin();
        },
      });
      const published: OutgoingMessage[] = [];
      const publisher = { publish: async (message: OutgoingMessage) => void published.push(message) } as unknown as Publisher;
      const fn = reservationFunction({ store: counting, publisher, logger: createLogger({ level: 'silent' }), retryDelaysMs: [100] });
      const orders = Array.from({ length: 98 }, (_, i) =>
        newEvent('OrderPlaced', { order_id: randomUUID(), user_id: `u-${i}`, item: 'widget', quantity: 1 }),
      );
      const flaky = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'u-flaky', item: 'flaky', quantity: 1 });
      const forbidden = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'u-forbidden', item: 'forbidden', quantity: 1 });
      const report = await fn(
        rabbitMQEventFromBodies({ queue: 'order-events', bodies: [...orders.slice(0, 50), flaky, forbidden, ...orders.slice(50)] }),
        context,
      );

      expect(report).toEqual({ records: 100, processed: 98, duplicates: 0, retried: 1, deadLettered: 1 });
      expect(begins).toBe(1);
      expect((await store.stock.get('widget'))?.available).toBe(1_000 - 98);
      // The failed records' savepoints were rolled back: no stock taken, no claim, no event.
      expect((await store.stock.get('flaky'))?.available).toBe(10);
      expect((await store.stock.get('forbidden'))?.available).toBe(10);
      const claimed = await store.db.selectFrom('inbox').select('message_id').execute();
      expect(claimed).toHaveLength(98);
      expect(claimed.map((row) => row.message_id)).not.toContain(flaky.event_id);
      expect(published.filter((m) => m.exchange === 'inventory')).toHaveLength(98);
      expect(
        published
          .filter((m) => m.exchange === 'retry' || m.exchange === 'dlx')
          .map((m) => m.options.messageId)
          .sort(),
      ).toEqual([flaky.event_id, forbidden.event_id].sort());
      expect(await store.outbox.backlog()).toBe(0);
    } finally {
      await store.close();
    }
  });
});
