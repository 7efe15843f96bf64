/**
 * The publish properties for a copy of a received message (a retry, a dead letter, a redrive): the same
 * properties, persistent, with the given headers. `userId` must match the publishing connection's user or
 * the broker refuses the message, so it moves to an `x-original-user-id` header (kept if already there);
 * the broker's own `x-delivery-count` is dropped, because the copy is a new message.
 */
import type { Options } from 'amqplib';

/** The AMQP properties a copy carries over; both amqplib's and the decoded aws:rmq records' fit. */
export interface CopiedProperties {
  contentType?: string | undefined;
  contentEncoding?: string | undefined;
  priority?: number | undefined;
  correlationId?: string | undefined;
  replyTo?: string | undefined;
  messageId?: string | undefined;
  timestamp?: number | undefined;
  type?: string | undefined;
  appId?: string | undefined;
  userId?: string | undefined;
}

export function republishProperties(properties: CopiedProperties, headers: Record<string, unknown>): Options.Publish {
  const { contentType, contentEncoding, priority, correlationId, replyTo, messageId, timestamp, type, appId, userId } = properties;
  const { 'x-delivery-count': _deliveryCount, ...kept } = headers;
  return {
    contentType,
    contentEncoding,
    persistent: true,
    priority,
    correlationId,
    replyTo,
    messageId,
    timestamp,
    type,
    appId,
    headers: { ...kept, ...(userId && kept['x-original-user-id'] === undefined ? { 'x-original-user-id': userId } : {}) },
  };
}
