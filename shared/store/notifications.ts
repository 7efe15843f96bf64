/** Notifications: what the customer was told, one per order event. */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { type Database, type Notification, type NotificationKind, toIso } from './schema';

export interface NewNotification {
  /** Defaults to a new UUID. */
  notification_id?: string;
  /** The event that caused the notification; a second notification for the same event is not stored. */
  event_id: string;
  order_id: string;
  user_id: string;
  kind: NotificationKind;
  message: string;
  /** Defaults to now. */
  created_at?: Date | string;
  webhook_status?: string | null;
}

export class Notifications {
  constructor(private readonly db: Kysely<Database>) {}

  /** Stores the notification; false (no error) if one for the same event_id exists already. */
  async insert(notification: NewNotification): Promise<boolean> {
    const result = await this.db
      .insertInto('notifications')
      .values({
        ...notification,
        notification_id: notification.notification_id ?? randomUUID(),
        created_at: toIso(notification.created_at),
        webhook_status: notification.webhook_status ?? null,
      })
      .onConflict((oc) => oc.column('event_id').doNothing())
      .executeTakeFirst();
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /** Records the outcome of the optional webhook call (e.g. "sent", "failed: 503"); false if unknown. */
  async setWebhookStatus(eventId: string, status: string): Promise<boolean> {
    const result = await this.db
      .updateTable('notifications')
      .set({ webhook_status: status })
      .where('event_id', '=', eventId)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** The order's notifications, oldest first. */
  async listByOrder(orderId: string): Promise<Notification[]> {
    return this.db
      .selectFrom('notifications')
      .selectAll()
      .where('order_id', '=', orderId)
      .orderBy('created_at')
      .orderBy('notification_id')
      .execute();
  }
}
