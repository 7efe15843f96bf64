/**
 * Builds `aws:rmq` events from amqplib messages, as AWS's poller would from the same deliveries: AWS's key
 * order, `null` for absent properties, headers encoded as its Java client and Gson print them (see types.ts).
 */
import { createHash } from 'node:crypto';
import type { MessageProperties } from 'amqplib';
import { formatAmqpTimestamp } from './timestamp.js';
import type { RabbitMQBasicProperties, RabbitMQEvent, RabbitMQHeaderValue, RabbitMQMessage } from './types.js';

/** What the codec needs of a message: amqplib's ConsumeMessage and GetMessage fit, so does a decoded record. */
export interface AmqpMessageLike {
  content: Buffer;
  fields: { redelivered: boolean };
  properties: { [K in keyof MessageProperties]?: unknown };
}

/** Bytes as Java prints them: signed, -128..127. */
const signedBytes = (bytes: Uint8Array): number[] => Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length));

/** Deepest nesting of header arrays and tables turned into a record; deeper is refused, not recursed into. */
export const MAX_HEADER_DEPTH = 64;

/**
 * The message cannot be put into an `aws:rmq` record: a timestamp outside what a date can hold, a header value
 * with no JSON form (NaN, a type amqplib does not know), headers nested deeper than MAX_HEADER_DEPTH.
 * `where` names the property or header path. The trigger dead-letters such a message on its own.
 */
export class UnrepresentableMessageError extends Error {
  override readonly name = 'UnrepresentableMessageError';
  constructor(
    readonly where: string,
    detail: string,
  ) {
    super(`${where}: ${detail}`);
  }
}

function timestampAt(where: string, seconds: unknown): string {
  try {
    return formatAmqpTimestamp(Number(seconds));
  } catch {
    throw new UnrepresentableMessageError(where, `timestamp ${String(seconds)} is not a date (whole seconds within ±8.64e12)`);
  }
}

/** One of amqplib's typed header values: a 'T' timestamp (seconds) or a 'D' decimal. */
export type AmqpTypedValue = { type: 'timestamp'; seconds: number } | { type: 'decimal'; places: number; digits: number };

const isTable = (value: unknown): value is object =>
  value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array);

/**
 * The typed value `value` is, if it is one exactly as amqplib's decoder makes them: `{'!': 'timestamp', value:
 * <whole seconds, 0 or more>}` for a 'T' field, `{'!': 'decimal', value: {places: 0..255, digits: uint32}}`
 * for a 'D' field. Anything else is a table, '!' key or not: any client may send `{'!': 'timestamp', value:
 * 'soon'}` or `{'!': 'decimal'}`, which have a JSON form like every table. (A table sent in exactly the typed
 * shape reads as the typed value: amqplib gives a consumer nothing to tell them apart.)
 */
export function amqpTypedValue(value: unknown): AmqpTypedValue | undefined {
  if (!isTable(value)) return undefined;
  const keys = Object.keys(value);
  if (keys.length !== 2 || !keys.includes('!') || !keys.includes('value')) return undefined;
  const { '!': type, value: inner } = value as { '!': unknown; value: unknown };
  if (type === 'timestamp')
    return typeof inner === 'number' && Number.isInteger(inner) && inner >= 0 ? { type, seconds: inner } : undefined;
  if (type !== 'decimal' || !isTable(inner) || Object.keys(inner).length !== 2) return undefined;
  const { places, digits } = inner as { places?: unknown; digits?: unknown };
  const whole = (n: unknown, max: number): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max;
  return whole(places, 255) && whole(digits, 0xffff_ffff) ? { type, places, digits } : undefined;
}

/**
 * Encodes one header value as AWS sends it: strings as `{bytes}` (UTF-8, signed as Java prints them),
 * Buffers as plain arrays of signed bytes, amqplib's typed timestamps as formatted dates and decimals as
 * numbers, tables and arrays recursively. Table entries that are undefined are skipped, as amqplib does.
 * Throws UnrepresentableMessageError for a value with no JSON form.
 */
export function encodeHeaderValue(value: unknown, where = 'header', depth = 0): RabbitMQHeaderValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return { bytes: signedBytes(Buffer.from(value, 'utf8')) };
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new UnrepresentableMessageError(where, `${value} has no JSON form`);
    return value;
  }
  if (value instanceof Uint8Array) return signedBytes(value);
  if (typeof value !== 'object') throw new UnrepresentableMessageError(where, `a ${typeof value} has no AMQP header form`);
  if (depth >= MAX_HEADER_DEPTH) throw new UnrepresentableMessageError(where, `nested deeper than ${MAX_HEADER_DEPTH} levels`);
  if (Array.isArray(value)) return value.map((item, i) => encodeHeaderValue(item, `${where}[${i}]`, depth + 1));
  // amqplib's typed values; any other object, even one with a "!" key, is a table.
  const typed = amqpTypedValue(value);
  if (typed?.type === 'timestamp') return timestampAt(where, typed.seconds);
  if (typed?.type === 'decimal') return encodeHeaderValue(typed.digits / 10 ** typed.places, where, depth + 1);
  return encodeHeaderTable(value, where, depth + 1);
}

function encodeHeaderTable(table: object, where: string, depth: number): Record<string, RabbitMQHeaderValue> {
  const encoded: Record<string, RabbitMQHeaderValue> = {};
  for (const [key, entry] of Object.entries(table)) {
    // defineProperty: a "__proto__" header is an entry, not the record's prototype.
    if (entry !== undefined)
      Object.defineProperty(encoded, key, {
        value: encodeHeaderValue(entry, `${where}.${key}`, depth),
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return encoded;
}

const text = (value: unknown): string | null => (value === undefined || value === null ? null : String(value));
const num = (value: unknown): number | null => (value === undefined || value === null ? null : Number(value));

/**
 * One message as AWS puts it in the event (UnrepresentableMessageError when it has no such form). `headers` is
 * null only when the message carried no headers table;
 * an empty table stays `{}` (that is what AWS's Java client reads). amqplib always publishes a table, so its
 * messages arrive with `{}` even when published without headers.
 */
export function toRabbitMQMessage(message: AmqpMessageLike): RabbitMQMessage {
  const p = message.properties;
  const basicProperties: RabbitMQBasicProperties = {
    contentType: text(p.contentType),
    contentEncoding: text(p.contentEncoding),
    headers: p.headers === undefined || p.headers === null ? null : encodeHeaderTable(p.headers as object, 'headers', 0),
    deliveryMode: num(p.deliveryMode),
    priority: num(p.priority),
    correlationId: text(p.correlationId),
    replyTo: text(p.replyTo),
    expiration: text(p.expiration),
    messageId: text(p.messageId),
    timestamp: p.timestamp === undefined || p.timestamp === null ? null : timestampAt('timestamp', p.timestamp),
    type: text(p.type),
    userId: text(p.userId),
    appId: text(p.appId),
    clusterId: text(p.clusterId),
    bodySize: message.content.length,
  };
  return { basicProperties, redelivered: message.fields.redelivered, data: message.content.toString('base64') };
}

/** An event for `messages`, grouped by "<queue>::<vhost>" in first-seen order, each group in delivery order. */
export function buildRabbitMQEvent(options: {
  eventSourceArn: string;
  /** Default vhost for messages that name none; AWS's is "/". */
  vhost?: string;
  messages: Array<{ queue: string; vhost?: string; message: AmqpMessageLike }>;
}): RabbitMQEvent {
  const byQueue: Record<string, RabbitMQMessage[]> = {};
  for (const { queue, vhost = options.vhost ?? '/', message } of options.messages) {
    const key = `${queue}::${vhost}`;
    let group = byQueue[key];
    if (!group) {
      group = [];
      byQueue[key] = group;
    }
    group.push(toRabbitMQMessage(message));
  }
  return { eventSource: 'aws:rmq', eventSourceArn: options.eventSourceArn, rmqMessagesByQueue: byQueue };
}

/**
 * A deterministic broker ARN of AWS's shape for local events,
 * `arn:aws:mq:us-east-1:000000000000:broker:<name>:b-<uuid>`; the UUID is derived from the name, and
 * 000000000000 is the account id local AWS emulators use, so the ARN is recognisably not a real one.
 */
export function localEventSourceArn(
  brokerName = 'local',
  { region = 'us-east-1', accountId = '000000000000' }: { region?: string; accountId?: string } = {},
): string {
  const hex = createHash('sha1').update(`rabbit-functions:broker:${brokerName}`).digest('hex');
  const variant = ((parseInt(hex.charAt(16), 16) & 0x3) | 0x8).toString(16);
  // A name-based (version 5 style) UUID: version nibble 5, variant bits 10.
  const uuid = hex.slice(0, 32).replace(/^(.{8})(.{4}).(.{3}).(.{3})(.{12})$/, `$1-$2-5$3-${variant}$4-$5`);
  return `arn:aws:mq:${region}:${accountId}:broker:${brokerName}:b-${uuid}`;
}
