/**
 * What an `aws:rmq` event weighs as an invocation payload, computed record by record so a trigger can cut a
 * batch before it grows too large, as Lambda's poller does: it invokes when the next record would push the
 * payload over the 6 MB synchronous-invocation limit, and drops a record that can never fit.
 *
 * The size is the UTF-8 length of `JSON.stringify(event)`, exactly: envelope + records + one comma between
 * each two records (one queue key per trigger, so one array).
 */
import type { RabbitMQMessage } from './types.js';

/** Lambda's limit for a synchronous invocation payload (6 MB); serverless-offline refuses larger bodies too. */
export const MAX_INVOCATION_PAYLOAD_BYTES = 6 * 1024 * 1024;

/**
 * Bytes one record adds to the event (without the comma that separates it from the next).
 *
 * The trigger weighs every delivery, so this counts what `JSON.stringify` would write instead of writing it
 * (stringifying each record was the runner's largest cost per message). The base64 `data` is plain ASCII that
 * JSON does not escape: its length is its size.
 */
export function messageBytes(message: RabbitMQMessage): number {
  let bytes = 2; // {}
  let members = 0;
  for (const key of Object.keys(message)) {
    const value = (message as Record<string, unknown>)[key];
    if (!hasJsonForm(value)) continue;
    bytes += keyBytes(key) + (key === 'data' && typeof value === 'string' ? value.length + 2 : jsonBytes(value));
    members++;
  }
  return members > 1 ? bytes + members - 1 : bytes;
}

/** basicProperties' keys in the order toRabbitMQMessage writes them: every one is always there. */
const PROPERTY_KEYS = [
  'contentType',
  'contentEncoding',
  'headers',
  'deliveryMode',
  'priority',
  'correlationId',
  'replyTo',
  'expiration',
  'messageId',
  'timestamp',
  'type',
  'userId',
  'appId',
  'clusterId',
  'bodySize',
] as const;

/**
 * messageBytes for a record as toRabbitMQMessage makes it (the three members, all fifteen properties, none
 * undefined), the same count without walking the keys: the keys, braces, commas and the data's quotes are a
 * constant, weighed once; only the values are weighed per record. The trigger weighs every delivery with it.
 */
export function recordBytes(record: RabbitMQMessage): number {
  const properties = record.basicProperties as unknown as Record<(typeof PROPERTY_KEYS)[number], unknown>;
  let bytes = RECORD_FIXED_BYTES + record.data.length + (record.redelivered ? 4 : 5);
  for (let i = 0; i < PROPERTY_KEYS.length; i++) bytes += jsonBytes(properties[PROPERTY_KEYS[i]!]);
  return bytes;
}

/** Bytes of the event around the records of one "<queue>::<vhost>" key (the event with an empty array). */
export function envelopeBytes(eventSourceArn: string, queueKey: string): number {
  const empty = { eventSource: 'aws:rmq', eventSourceArn, rmqMessagesByQueue: { [queueKey]: [] } };
  return Buffer.byteLength(JSON.stringify(empty), 'utf8');
}

/** Base64 length of `bodyBytes` bytes: enough to tell a body that can never fit without encoding it. */
export const base64Length = (bodyBytes: number): number => 4 * Math.ceil(bodyBytes / 3);

/** Printable ASCII but `"` and `\`: what JSON writes between the quotes unchanged, one byte per character. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** UTF-8 bytes of a string as JSON writes it, quotes included. */
function stringBytes(text: string): number {
  return PLAIN.test(text) ? text.length + 2 : Buffer.byteLength(JSON.stringify(text), 'utf8');
}

/** The keys every record has, weighed once: `"key":`. */
const KEY_BYTES = new Map<string, number>(
  ['basicProperties', 'redelivered', 'data', ...PROPERTY_KEYS, 'bytes'].map((key) => [key, stringBytes(key) + 1]),
);

const keyBytes = (key: string): number => KEY_BYTES.get(key) ?? stringBytes(key) + 1;

/** What every record from toRabbitMQMessage writes besides its values: `{"basicProperties":{...},"redelivered":,"data":""}`. */
const RECORD_FIXED_BYTES =
  2 +
  keyBytes('basicProperties') +
  keyBytes('redelivered') +
  keyBytes('data') +
  2 +
  2 + // braces, two commas, the data's quotes
  2 +
  PROPERTY_KEYS.reduce((sum, key) => sum + keyBytes(key), 0) +
  PROPERTY_KEYS.length -
  1; // the properties' braces, keys, commas

/** Whether JSON.stringify writes an object member with this value (it leaves out undefined, functions, symbols). */
const hasJsonForm = (value: unknown): boolean => value !== undefined && typeof value !== 'function' && typeof value !== 'symbol';

/** UTF-8 bytes of `JSON.stringify(value)`, counted without writing it. */
function jsonBytes(value: unknown): number {
  if (value === null) return 4;
  switch (typeof value) {
    case 'string':
      return stringBytes(value);
    case 'number':
      return Number.isFinite(value) ? String(value).length : 4; // NaN and the infinities are written as null
    case 'boolean':
      return value ? 4 : 5;
    case 'object': {
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') break;
      if (Array.isArray(value)) {
        let bytes = value.length > 1 ? value.length + 1 : 2; // [] and the commas
        for (const item of value as unknown[]) bytes += hasJsonForm(item) ? jsonBytes(item) : 4; // null in its place
        return bytes;
      }
      let bytes = 2;
      let members = 0;
      for (const key of Object.keys(value)) {
        const member = (value as Record<string, unknown>)[key];
        if (!hasJsonForm(member)) continue;
        bytes += keyBytes(key) + jsonBytes(member);
        members++;
      }
      return members > 1 ? bytes + members - 1 : bytes;
    }
  }
  // Anything else (a bigint throws, as it would when the event is sent).
  return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
}
