/** Notifications: what the customer was told, one per order event. */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DialectName } from './migrations';
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

/** The row as stored: id and time defaulted, webhook status null until a webhook answers. */
const notificationRow = (notification: NewNotification) => ({
  ...notification,
  notification_id: notification.notification_id ?? randomUUID(),
  created_at: toIso(notification.created_at),
  webhook_status: notification.webhook_status ?? null,
});

export class Notifications {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  /** Stores the notification; false (no error) if one for the same event_id exists already. */
  async insert(notification: NewNotification): Promise<boolean> {
    const result = await this.db
      .insertInto('notifications')
      .values(notificationRow(notification))
      .onConflict((oc) => oc.column('event_id').doNothing())
      .executeTakeFirst();
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /**
   * Stores the notification and, when it is new, stamps its order as notified at its `created_at`; false when
   * one for the same event_id exists already (nothing changes then). One statement on PostgreSQL (a
   * data-modifying WITH), two on SQLite (in-process, no round trips). Call it inside a transaction.
   */
  async insertAndMarkOrder(notification: NewNotification): Promise<boolean> {
    const row = notificationRow(notification);
    if (this.dialect !== 'postgres') {
      if (!(await this.insert(row))) return false;
      await this.db
        .updateTable('orders')
        .set({ notified_at: row.created_at, updated_at: row.created_at })
        .where('order_id', '=', row.order_id)
        .execute();
      return true;
    }
    const result = await this.db
      .with('stored', (db) =>
        db
          .insertInto('notifications')
          .values(row)
          .onConflict((oc) => oc.column('event_id').doNothing())
          .returning('order_id'),
      )
      .with('stamped', (db) =>
        db
          .updateTable('orders')
          .set({ notified_at: row.created_at, updated_at: row.created_at })
          .where('order_id', 'in', (eb) => eb.selectFrom('stored').select('order_id'))
          .returning('order_id'),
      )
      .selectFrom('stored')
      .select((eb) => eb.fn.countAll<number>().as('stored'))
      .executeTakeFirst();
    return Number(result?.stored ?? 0) > 0;
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
