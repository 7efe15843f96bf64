/**
 * The order flow the pipeline and workers benchmarks drive: OrderPlaced events as intake publishes them, a
 * confirm channel to publish them on, and what the store says of a burst once it is done.
 */
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import amqp from 'amqplib';
import { eventProperties, newEvent } from '../shared/events';
import type { Store } from '../shared/store';

const noop = () => undefined;

/** An OrderPlaced event for one unit of `item`, body and properties as intake publishes it. */
export function orderEvent(orderId: string, userId: string, item: string) {
  const event = newEvent('OrderPlaced', { order_id: orderId, user_id: userId, item, quantity: 1 });
  return { body: Buffer.from(JSON.stringify(event)), properties: eventProperties(event, 'order-intake', `bench-${orderId.slice(0, 8)}`) };
}

/** A connection named `name` with one confirm channel; errors are left to the calls that meet them. */
export async function confirmChannel(url: string, name: string): Promise<{ connection: ChannelModel; channel: ConfirmChannel }> {
  const connection = await amqp.connect(url, { clientProperties: { connection_name: name } } as object);
  connection.on('error', noop);
  const channel = await connection.createConfirmChannel();
  channel.on('error', noop);
  return { connection, channel };
}
/** Orders of `userId` that are done: decided (no longer accepted) and notified. */
export async function countDone(store: Store, userId: string): Promise<number> {
  const row = await store.db
    .selectFrom('orders')
    .select((eb) => eb.fn.countAll().as('n'))
    .where('user_id', '=', userId)
    .where('status', '!=', 'accepted')
    .where('notified_at', 'is not', null)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** What the store says of the orders of `userId`, published at the times in `publishedAt` (in publish order). */
export interface StoredBurst {
  /** Publish to done (the row's updated_at), ms, in publish order. */
  latencies: number[];
  firstPublish: number;
  lastDone: number;
  /** Orders by final status (and reason). */
  outcomes: Record<string, number>;
  /** Notifications stored for these orders. */
  notifications: number;
}

export async function storedBurst(store: Store, userId: string, publishedAt: ReadonlyMap<string, number>): Promise<StoredBurst> {
  const rows = await store.db
    .selectFrom('orders')
    .select(['order_id', 'status', 'reason', 'updated_at'])
    .where('user_id', '=', userId)
    .execute();
  const byId = new Map(rows.map((row) => [row.order_id, row]));
  const latencies: number[] = [];
  const outcomes: Record<string, number> = {};
  let firstPublish = Number.POSITIVE_INFINITY;
  let lastDone = 0;
  for (const [id, at] of publishedAt) {
    const row = byId.get(id);
    if (!row) throw new Error(`order ${id} is not in the store`);
    const done = Date.parse(row.updated_at);
    latencies.push(done - at);
    lastDone = Math.max(lastDone, done);
    firstPublish = Math.min(firstPublish, at);
    const key = row.reason ? `${row.status} (${row.reason})` : row.status;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  }
  const notifications = await store.db
    .selectFrom('notifications')
    .innerJoin('orders', 'orders.order_id', 'notifications.order_id')
    .select((eb) => eb.fn.countAll().as('n'))
    .where('orders.user_id', '=', userId)
    .executeTakeFirst();
  return { latencies, firstPublish, lastDone, outcomes, notifications: Number(notifications?.n ?? 0) };
}
