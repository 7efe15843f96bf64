/**
 * What the fault suites check after the dust settles: that every order had exactly one effect, read
 * straight from the database the functions wrote to (outbox, notifications, inbox claims, orders, stock).
 * `exactlyOnceProblems` lists every violation in words, so a failing test says which order went wrong how.
 */
import type { Store } from '../../shared/store';

/** An order as the test placed it (and, for events published by the test, its OrderPlaced event id). */
export interface PlacedOrder {
  order_id: string;
  user_id: string;
  item: string;
  quantity: number;
  /** The OrderPlaced event id, when the test published it itself. */
  event_id?: string;
}

interface OutcomeEvent {
  event_id: string;
  event_type: 'InventoryReserved' | 'InventoryFailed';
  order_id: string;
  user_id: string;
  item: string;
  quantity: number;
  reason?: string;
}

export interface FlowState {
  outcomes: Array<OutcomeEvent & { published: boolean }>;
  notifications: Array<{ event_id: string; order_id: string; kind: string }>;
  claims: Map<string, string[]>;
  orders: Map<string, { status: string; reason: string | null; notified_at: string | null }>;
  stock: Map<string, { available: number; reserved: number }>;
}

/** The inbox consumers of the three queue functions (their `name`s). */
const CONSUMERS = { reservation: 'inventory-reservation', notification: 'notification', status: 'order-status' } as const;

export async function readFlow(store: Store): Promise<FlowState> {
  const db = store.db;
  const outboxRows = await db.selectFrom('outbox').select(['event_id', 'routing_key', 'body', 'published_at']).execute();
  const outcomes = outboxRows
    .filter((row) => row.routing_key.startsWith('inventory.'))
    .map((row) => ({ ...(JSON.parse(row.body) as OutcomeEvent), published: row.published_at !== null }));
  const notifications = await db.selectFrom('notifications').select(['event_id', 'order_id', 'kind']).execute();
  const claims = new Map<string, string[]>();
  for (const row of await db.selectFrom('inbox').select(['consumer', 'message_id']).execute()) {
    const list = claims.get(row.consumer) ?? [];
    list.push(row.message_id);
    claims.set(row.consumer, list);
  }
  const orders = new Map(
    (await db.selectFrom('orders').select(['order_id', 'status', 'reason', 'notified_at']).execute()).map((o) => [o.order_id, o]),
  );
  const stock = new Map((await store.stock.list()).map((row) => [row.item, { available: row.available, reserved: row.reserved }]));
  return { outcomes, notifications, claims, orders, stock };
}

/** True once every one of `orderIds` is decided and notified and nothing waits in the outbox. */
export async function allSettled(store: Store, orderIds: readonly string[]): Promise<boolean> {
  const open = await store.db
    .selectFrom('orders')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where((eb) => eb.or([eb('status', '=', 'accepted'), eb('notified_at', 'is', null)]))
    .executeTakeFirstOrThrow();
  const known = await store.db
    .selectFrom('orders')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .executeTakeFirstOrThrow();
  return Number(open.count) === 0 && Number(known.count) >= orderIds.length && (await store.outbox.backlog()) === 0;
}

export interface FlowSummary {
  orders: number;
  reserved: number;
  rejected: Record<string, number>;
  notifications: number;
  claims: Record<string, number>;
}

/**
 * Every way the state breaks "one effect per order": an order with no or several outcomes, an outcome that
 * is not about its order, an unpublished outcome, a message claimed by a function but not handled, a missing
 * or extra notification, a status that does not match the outcome, stock that moved more or less than the
 * reserved orders asked for. Empty when all is well.
 */
export function exactlyOnceProblems(
  state: FlowState,
  placed: readonly PlacedOrder[],
  initialStock: Readonly<Record<string, number>>,
): { problems: string[]; summary: FlowSummary } {
  const problems: string[] = [];
  const report = (what: string, items: readonly string[]) => {
    if (items.length) problems.push(`${what} (${items.length}): ${items.slice(0, 5).join(', ')}${items.length > 5 ? ', ...' : ''}`);
  };
  const byOrder = new Map<string, OutcomeEvent[]>();
  for (const outcome of state.outcomes) byOrder.set(outcome.order_id, [...(byOrder.get(outcome.order_id) ?? []), outcome]);
  const placedIds = new Set(placed.map((o) => o.order_id));

  report(
    'orders without an outcome',
    placed.filter((o) => !byOrder.has(o.order_id)).map((o) => o.order_id),
  );
  report(
    'orders with more than one outcome',
    placed.filter((o) => (byOrder.get(o.order_id)?.length ?? 0) > 1).map((o) => `${o.order_id} x${byOrder.get(o.order_id)!.length}`),
  );
  report(
    'outcomes for orders nobody placed',
    [...byOrder.keys()].filter((id) => !placedIds.has(id)),
  );
  report(
    'outcomes that do not match their order',
    placed
      .filter((o) => byOrder.get(o.order_id)?.some((e) => e.item !== o.item || e.quantity !== o.quantity || e.user_id !== o.user_id))
      .map((o) => o.order_id),
  );
  report(
    'outcomes never published',
    state.outcomes.filter((e) => !e.published).map((e) => e.event_id),
  );

  // Inbox: each function claimed each of its messages once, and nothing else.
  const claimed = (consumer: string) => new Set(state.claims.get(consumer) ?? []);
  const reservationClaims = claimed(CONSUMERS.reservation);
  const withEventIds = placed.filter((o) => o.event_id);
  report(
    'OrderPlaced events never claimed by inventory-reservation',
    withEventIds.filter((o) => !reservationClaims.has(o.event_id!)).map((o) => o.event_id!),
  );
  if (reservationClaims.size !== placed.length)
    problems.push(`inventory-reservation claimed ${reservationClaims.size} messages for ${placed.length} orders`);
  const outcomeIds = new Set(state.outcomes.map((e) => e.event_id));
  for (const consumer of [CONSUMERS.notification, CONSUMERS.status]) {
    const claims = claimed(consumer);
    report(
      `outcomes never claimed by ${consumer}`,
      [...outcomeIds].filter((id) => !claims.has(id)),
    );
    report(
      `${consumer} claims for events that are not outcomes`,
      [...claims].filter((id) => !outcomeIds.has(id)),
    );
  }

  // Notifications: exactly one per outcome, of the right kind.
  const notesByOrder = new Map<string, Array<{ event_id: string; kind: string }>>();
  for (const note of state.notifications) notesByOrder.set(note.order_id, [...(notesByOrder.get(note.order_id) ?? []), note]);
  report(
    'orders with no notification',
    placed.filter((o) => !notesByOrder.has(o.order_id)).map((o) => o.order_id),
  );
  report(
    'orders notified more than once',
    placed
      .filter((o) => (notesByOrder.get(o.order_id)?.length ?? 0) > 1)
      .map((o) => `${o.order_id} x${notesByOrder.get(o.order_id)!.length}`),
  );
  report(
    "notifications that do not answer the order's outcome",
    placed
      .filter((o) => {
        const [outcome] = byOrder.get(o.order_id) ?? [];
        const [note] = notesByOrder.get(o.order_id) ?? [];
        if (!outcome || !note) return false;
        return note.event_id !== outcome.event_id || note.kind !== (outcome.event_type === 'InventoryReserved' ? 'reserved' : 'rejected');
      })
      .map((o) => o.order_id),
  );

  // Status projection: every order moved to what its outcome says, and was stamped notified.
  report(
    'orders whose status does not match their outcome',
    placed
      .filter((o) => {
        const [outcome] = byOrder.get(o.order_id) ?? [];
        const order = state.orders.get(o.order_id);
        if (!outcome) return false;
        if (!order) return true;
        return outcome.event_type === 'InventoryReserved'
          ? order.status !== 'reserved' || order.reason !== null
          : order.status !== 'rejected' || order.reason !== outcome.reason;
      })
      .map((o) => `${o.order_id} (${state.orders.get(o.order_id)?.status ?? 'missing'})`),
  );
  report(
    'orders never stamped notified',
    placed.filter((o) => !state.orders.get(o.order_id)?.notified_at).map((o) => o.order_id),
  );

  // Stock moved exactly once per reserved order, and was neither created nor lost.
  const reservedQty = new Map<string, number>();
  for (const e of state.outcomes)
    if (e.event_type === 'InventoryReserved') reservedQty.set(e.item, (reservedQty.get(e.item) ?? 0) + e.quantity);
  for (const [item, initial] of Object.entries(initialStock)) {
    const row = state.stock.get(item);
    const expected = reservedQty.get(item) ?? 0;
    if (!row) problems.push(`stock row for ${item} is missing`);
    else {
      if (row.reserved !== expected)
        problems.push(`stock.reserved of ${item} is ${row.reserved}, but reserved orders add up to ${expected}`);
      if (row.available + row.reserved !== initial)
        problems.push(`${item}: available ${row.available} + reserved ${row.reserved} != initial ${initial}`);
    }
  }

  const rejected: Record<string, number> = {};
  for (const e of state.outcomes) if (e.event_type === 'InventoryFailed') rejected[e.reason ?? '?'] = (rejected[e.reason ?? '?'] ?? 0) + 1;
  return {
    problems,
    summary: {
      orders: placed.length,
      reserved: state.outcomes.filter((e) => e.event_type === 'InventoryReserved').length,
      rejected,
      notifications: state.notifications.length,
      claims: Object.fromEntries([...state.claims].map(([consumer, ids]) => [consumer, ids.length])),
    },
  };
}
