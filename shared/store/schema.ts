/**
 * The database's tables as TypeScript types (Kysely's `Database`), and the row types the repositories return.
 *
 * Columns are snake_case, as on the wire. Every timestamp is ISO-8601 UTC text (`2024-05-01T12:00:00.000Z`)
 * in both back ends, so SQLite and PostgreSQL return identical values and text order is time order.
 */
import type { Generated, Selectable } from 'kysely';

export type OrderStatus = 'accepted' | 'reserved' | 'rejected';
export type NotificationKind = 'reserved' | 'rejected';

interface OrdersTable {
  order_id: string;
  user_id: string;
  item: string;
  quantity: number;
  status: OrderStatus;
  reason: string | null;
  correlation_id: string | null;
  /** Client's Idempotency-Key for POST /order; unique. */
  idempotency_key: string | null;
  /** Hash of the request body that came with the key, to answer 422 for the same key with another body. */
  request_hash: string | null;
  created_at: string;
  updated_at: string;
  notified_at: string | null;
}

interface StockTable {
  item: string;
  /** Never below 0 (CHECK constraint). */
  available: number;
  reserved: Generated<number>;
  updated_at: string;
}

interface NotificationsTable {
  notification_id: string;
  /** The order event this notification answers; unique, so one notification per event. */
  event_id: string;
  order_id: string;
  user_id: string;
  kind: NotificationKind;
  message: string;
  created_at: string;
  webhook_status: string | null;
}

/** Idempotency: one row per (consuming function, message id) that has had its effect. */
interface InboxTable {
  consumer: string;
  message_id: string;
  processed_at: string;
}

/** Events written with the state change that caused them, published later with confirms. */
interface OutboxTable {
  id: Generated<number>;
  event_id: string;
  exchange: string;
  routing_key: string;
  /** The message body as JSON text, published byte for byte. */
  body: string;
  /** The AMQP publish options as JSON text. */
  properties: string;
  created_at: string;
  published_at: string | null;
  attempts: Generated<number>;
  last_error: string | null;
  /** Until then no relay sends the row: its producer publishes it itself, or a relay has claimed it. */
  claimed_until: string | null;
  /** W3C trace context of the span that caused the event; the publish continues that trace. */
  traceparent: string | null;
  tracestate: string | null;
}

export interface Database {
  orders: OrdersTable;
  stock: StockTable;
  notifications: NotificationsTable;
  inbox: InboxTable;
  outbox: OutboxTable;
}

export type Order = Selectable<OrdersTable>;
export type StockRow = Selectable<StockTable>;
export type Notification = Selectable<NotificationsTable>;

/** A timestamp as the store keeps it: ISO-8601 UTC text. Accepts a Date or any string Date can parse. */
export function toIso(at: Date | string = new Date()): string {
  const date = at instanceof Date ? at : new Date(at);
  if (Number.isNaN(date.getTime())) throw new RangeError(`Not a valid timestamp: ${String(at)}`);
  return date.toISOString();
}
