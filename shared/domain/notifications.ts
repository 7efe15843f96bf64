/**
 * Notification, the domain step: what the customer is told about an inventory outcome, stored exactly once
 * per order event (the event id is unique in the notifications table).
 */
import { randomUUID } from 'node:crypto';
import type { InventoryFailed, InventoryReserved } from '../events';
import type { Notification, Tx } from '../store';

export type InventoryOutcome = InventoryReserved | InventoryFailed;

/** A notification as stored, before the webhook's status is known. */
export type CustomerNotification = Omit<Notification, 'webhook_status'>;

const REASONS: Readonly<Record<string, string>> = {
  out_of_stock: 'is out of stock',
  unknown_item: 'is not in our catalog',
};

/** The message for an outcome; a pure function. */
export function notificationFor(event: InventoryOutcome, now = new Date()): CustomerNotification {
  const reserved = event.event_type === 'InventoryReserved';
  const message = reserved
    ? `Good news: ${event.quantity} x ${event.item} are reserved for your order ${event.order_id}.`
    : `Sorry: your order ${event.order_id} could not be fulfilled because ${event.item} ${REASONS[event.reason] ?? `failed (${event.reason})`}.`;
  return {
    notification_id: randomUUID(),
    event_id: event.event_id,
    order_id: event.order_id,
    user_id: event.user_id,
    kind: reserved ? 'reserved' : 'rejected',
    message,
    created_at: now.toISOString(),
  };
}

/**
 * Stores the notification and stamps the order as notified (when intake has stored it); returns false when
 * this event's notification exists already.
 */
export async function recordNotification(tx: Tx, notification: CustomerNotification): Promise<boolean> {
  return tx.notifications.insertAndMarkOrder(notification);
}
