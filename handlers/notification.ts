/**
 * Notification (queue `inventory-events`): tells the customer whether the order was reserved or rejected.
 * Stores exactly one notification per order event, logs it, and POSTs it to WEBHOOK_URL when configured,
 * with the event id as Idempotency-Key. A failed webhook rolls the notification back and is retried by the
 * poison-message middleware, so "stored" means "delivered" whenever a webhook is configured.
 */
import { config } from '../shared/config';
import { notificationFor, recordNotification } from '../shared/domain/notifications';
import { eventIdentity, InventoryOutcome } from '../shared/events';
import { queueFunction } from '../shared/middleware';
import { postWebhook } from '../shared/webhook';

export const handler = queueFunction({
  name: 'notification',
  schema: InventoryOutcome,
  eventTypes: ['InventoryReserved', 'InventoryFailed'],
  identity: eventIdentity,
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
