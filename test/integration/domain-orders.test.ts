/**
 * The domain step of intake, `placeOrder` and friends, as plain functions over a real store (SQLite file
 * and PostgreSQL schema): no Lambda, no HTTP, no broker.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseInput } from '../../shared/contract/validation';
import {
  BacklogFullError,
  getOrder,
  IdempotencyConflictError,
  INTAKE_APP_ID,
  listOrders,
  OrderNotFoundError,
  PlaceOrderRequest,
  placeOrder,
} from '../../shared/domain/orders';
import { eventProperties, OrderPlaced, ROUTES } from '../../shared/events';
import { openStore, type Store } from '../../shared/store';
import { backends } from '../support/databases';

const input = { user_id: 'user-1', item: 'widget', quantity: 3 };

describe.each(backends())('placeOrder on $name', (backend) => {
  const stores: Store[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });
  beforeAll(() => backend.setup());
  afterAll(() => backend.teardown());

  async function fresh(): Promise<Store> {
    const store = await openStore(await backend.fresh());
    stores.push(store);
    return store;
  }

  it('stores the accepted order and its OrderPlaced outbox row, as the contract has them', async () => {
    const store = await fresh();
    const now = new Date('2025-03-10T12:00:00.000Z');
    const result = await placeOrder(store, input, { correlationId: 'corr-1', now });
    if (!result.created) throw new Error('expected a new order');
    const { order, event } = result;

    expect(order).toMatchObject({ ...input, status: 'accepted', correlation_id: 'corr-1', created_at: now.toISOString() });
    expect(OrderPlaced.parse(event)).toEqual({
      ...input,
      event_type: 'OrderPlaced',
      event_id: event.event_id,
      order_id: order.order_id,
      timestamp: now.toISOString(),
    });
    expect(await store.orders.get(order.order_id)).toEqual(order);

    const [row] = await store.outbox.pending();
    expect(row).toMatchObject({
      event_id: event.event_id,
      exchange: ROUTES.OrderPlaced.exchange,
      routing_key: ROUTES.OrderPlaced.routingKey,
    });
    expect(JSON.parse(row!.body)).toEqual(event);
    expect(row!.properties).toEqual(eventProperties(event, INTAKE_APP_ID, 'corr-1'));
  });

  it('stores nothing when the outbox row cannot be written (order and event are one atomic write)', async () => {
    const store = await fresh();
    // A real failure of the outbox insert, raised by the database itself.
    const failing =
      store.dialect === 'postgres'
        ? [
            sql`create function fail_outbox() returns trigger language plpgsql as $$ begin raise exception 'disk full'; end $$`,
            sql`create trigger fail_outbox before insert on outbox for each row execute function fail_outbox()`,
          ]
        : [sql`create trigger fail_outbox before insert on outbox begin select raise(abort, 'disk full'); end`];
    for (const statement of failing) await statement.execute(store.db);
    await expect(placeOrder(store, input)).rejects.toThrow('disk full');
    expect((await store.orders.list()).orders).toHaveLength(0);
    expect(await store.outbox.backlog()).toBe(0);
  });

  it('returns the first order for a retried Idempotency-Key, and refuses the key with another body', async () => {
    const store = await fresh();
    const first = await placeOrder(store, input, { idempotencyKey: 'k-1' });
    // As the edge hands it over: parsed (and trimmed) by the request schema, key order irrelevant.
    const again = await placeOrder(store, parseInput(PlaceOrderRequest, { quantity: 3, item: ' widget ', user_id: 'user-1' }), {
      idempotencyKey: 'k-1',
    });
    expect(first.created).toBe(true);
    expect(again).toEqual({ order: first.order, created: false });
    await expect(placeOrder(store, { ...input, quantity: 4 }, { idempotencyKey: 'k-1' })).rejects.toBeInstanceOf(IdempotencyConflictError);
    expect(await store.outbox.backlog()).toBe(1);
  });

  it('creates one order when the same key races itself (the loser re-reads after its failed transaction)', async () => {
    const store = await fresh();
    const results = await Promise.all(Array.from({ length: 6 }, () => placeOrder(store, input, { idempotencyKey: 'race' })));
    expect(new Set(results.map((r) => r.order.order_id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(await store.outbox.backlog()).toBe(1);
  });

  it('refuses new orders at the backlog limit, naming the backlog', async () => {
    const store = await fresh();
    await placeOrder(store, input, { backlogLimit: 2 });
    await placeOrder(store, input, { backlogLimit: 2 });
    const refused = placeOrder(store, input, { backlogLimit: 2 });
    await expect(refused).rejects.toBeInstanceOf(BacklogFullError);
    await expect(refused).rejects.toMatchObject({ backlog: 2, limit: 2 });
    expect((await store.orders.list()).orders).toHaveLength(2);
  });

  it('reads one order or a page, with named errors for unknown ids and foreign cursors', async () => {
    const store = await fresh();
    const placed = await placeOrder(store, input);
    expect(await getOrder(store, placed.order.order_id)).toEqual(placed.order);
    await expect(getOrder(store, randomUUID())).rejects.toBeInstanceOf(OrderNotFoundError);
    expect((await listOrders(store, { limit: 5 })).orders).toEqual([placed.order]);
    await expect(listOrders(store, { limit: 5, cursor: 'garbage' })).rejects.toMatchObject({ issues: [{ field: 'cursor' }] });
  });
});
