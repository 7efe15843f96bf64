/**
 * Notification (queue `inventory-events`): tells the customer whether the order was reserved or rejected.
 * Stores exactly one notification per order event, logs it, and POSTs it to WEBHOOK_URL when configured,
 * with the event id as Idempotency-Key. A failed webhook rolls the notification back and is retried by the
 * poison-message middleware, so "stored" means "delivered" whenever a webhook is configured.
 */
import { appQueueFunction, type QueueDeps } from '../shared/app/queue-function';
import { config } from '../shared/config';
import { notificationFor, recordNotification } from '../shared/domain/notifications';
import { InventoryOutcome } from '../shared/events';
import { postWebhook } from '../shared/webhook';

/** The handler with its dependencies (tests and benches pass their own). */
export const createHandler = (deps: Partial<QueueDeps> = {}) =>
  appQueueFunction({
    name: 'notification',
    consumer: 'notification',
    schema: InventoryOutcome,
    deps,
    handle: async (record, { tx, logger }) => {
      const notification = notificationFor(record.payload);
      if (!(await recordNotification(tx, notification))) return 'already notified';
      const { webhookUrl, webhookTimeoutMs } = config();
      if (webhookUrl) {
        const status = await postWebhook({
          url: webhookUrl,
          payload: notification,
          idempotencyKey: notification.event_id,
          timeoutMs: webhookTimeoutMs,
          ...(record.correlationId ? { correlationId: record.correlationId } : {}),
        });
        await tx.notifications.setWebhookStatus(notification.event_id, `delivered (HTTP ${status})`);
      }
      logger.info({ orderId: notification.order_id, kind: notification.kind, webhook: Boolean(webhookUrl) }, 'customer notified');
      return notification.kind;
    },
  });

export const handler = createHandler();
