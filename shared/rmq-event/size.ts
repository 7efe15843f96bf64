/**
 * What an `aws:rmq` event weighs as an invocation payload, computed record by record so a trigger can cut a
 * batch before it grows too large, as Lambda's poller does: it invokes when the next record would push the
 * payload over the 6 MB synchronous-invocation limit, and drops a record that can never fit.
 *
 * The size is the UTF-8 length of `JSON.stringify(event)`, exactly: envelope + records + one comma between
 * each two records (one queue key per trigger, so one array).
 */
import type { RabbitMQMessage } from './types';

/** Lambda's limit for a synchronous invocation payload (6 MB); serverless-offline refuses larger bodies too. */
export const MAX_INVOCATION_PAYLOAD_BYTES = 6 * 1024 * 1024;

/** Bytes one record adds to the event (without the comma that separates it from the next). */
export function messageBytes(message: RabbitMQMessage): number {
  // base64 is plain ASCII that JSON does not escape: count it without copying it into a second string.
  return Buffer.byteLength(JSON.stringify({ ...message, data: '' }), 'utf8') + message.data.length;
}

/** Bytes of the event around the records of one "<queue>::<vhost>" key (the event with an empty array). */
export function envelopeBytes(eventSourceArn: string, queueKey: string): number {
  const empty = { eventSource: 'aws:rmq', eventSourceArn, rmqMessagesByQueue: { [queueKey]: [] } };
  return Buffer.byteLength(JSON.stringify(empty), 'utf8');
}

/** Base64 length of `bodyBytes` bytes: enough to tell a body that can never fit without encoding it. */
export const base64Length = (bodyBytes: number): number => 4 * Math.ceil(bodyBytes / 3);
