/**
 * The publish properties for a copy of a received message (a retry, a dead letter, a redrive, a parked
 * message): the same properties, persistent, with the given headers. `userId` must match the publishing
 * connection's user or the broker refuses the message, so it moves to an `x-original-user-id` header (kept
 * if already there); the broker's own `x-delivery-count` is dropped, because the copy is a new message.
 *
 * A copy must be publishable whatever the original carried. The broker accepts a header table up to its frame
 * size (128 KiB), amqplib encodes at most 64 KiB of it, and some values that arrive cannot be encoded again as
 * they came (NaN, a timestamp past 2^64 after rounding, a table with a `!` key that amqplib reads as a type
 * tag, a shortstr over 255 bytes once its invalid UTF-8 was replaced). So the copy's headers and properties
 * are made encodable here, and everything changed is listed in the `x-truncated-headers` header: a copy is
 * never refused, and never silently different.
 */
import type { Options } from 'amqplib';
import { ATTEMPT_HEADER, FAILURE_HEADERS, RETRY_DELAY_HEADER } from '../headers.js';
import { amqpTypedValue } from '../rmq-event/build.js';

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

/** Where the copy says what was changed to make it publishable. */
export const TRUNCATED_HEADERS_HEADER = 'x-truncated-headers';

/** What a copy's header table may weigh encoded: amqplib's 64 KiB encoding buffer, less room to spare. */
export const MAX_HEADERS_BYTES = 60 * 1024;
/** A header value longer than this is cut to it when the table is over budget. */
const TRUNCATED_VALUE_BYTES = 1024;
/** Deeper nesting is replaced by a note (amqplib encodes recursively). */
const MAX_DEPTH = 64;
const SHORTSTR_BYTES = 255;
const INT64 = 2 ** 63;

export function republishProperties(properties: CopiedProperties, headers: Record<string, unknown>): Options.Publish {
  const notes: string[] = [];
  const { contentType, contentEncoding, priority, correlationId, replyTo, messageId, timestamp, type, appId, userId } = properties;
  const { 'x-delivery-count': _deliveryCount, [TRUNCATED_HEADERS_HEADER]: earlierNotes, ...kept } = headers;
  const moved = userId && kept['x-original-user-id'] === undefined ? { 'x-original-user-id': userId } : {};
  const table = encodableTable({ ...kept, ...moved }, notes);
  const short = (name: string, value: string | undefined) => shortstr(name, value, notes);
  const validTimestamp = timestamp === undefined || (Number.isSafeInteger(timestamp) && timestamp >= 0);
  if (!validTimestamp) notes.push(`timestamp ${timestamp} dropped: not a whole number of seconds AMQP can carry`);
  const options: Options.Publish = {
    contentType: short('contentType', contentType),
    contentEncoding: short('contentEncoding', contentEncoding),
    persistent: true,
    priority: priority !== undefined && Number.isInteger(priority) && priority >= 0 && priority <= 255 ? priority : undefined,
    correlationId: short('correlationId', correlationId),
    replyTo: short('replyTo', replyTo),
    messageId: short('messageId', messageId),
    timestamp: validTimestamp ? timestamp : undefined,
    type: short('type', type),
    appId: short('appId', appId),
    headers: table,
  };
  const earlier = typeof earlierNotes === 'string' ? [earlierNotes] : [];
  fitTable(table, notes);
  if (notes.length || earlier.length)
    table[TRUNCATED_HEADERS_HEADER] = [...earlier, ...notes].join('; ').slice(0, 2 * TRUNCATED_VALUE_BYTES);
  return options;
}

function shortstr(name: string, value: string | undefined, notes: string[]): string | undefined {
  if (value === undefined || Buffer.byteLength(value) <= SHORTSTR_BYTES) return value;
  notes.push(`${name} cut to ${SHORTSTR_BYTES} bytes from ${Buffer.byteLength(value)}`);
  return toShortstr(value);
}

/**
 * `value` cut to the 255 UTF-8 bytes of an AMQP shortstr, at a character boundary: for a property of a
 * received message that a new message carries on (a correlationId). What arrived as a shortstr may not be one
 * any more: amqplib decodes each byte that is not UTF-8 to U+FFFD, 3 bytes, so 255 bytes can come back as
 * 765, and amqplib refuses to publish a property over 255 bytes.
 */
export function toShortstr(value: string | undefined): string | undefined {
  return value === undefined || Buffer.byteLength(value) <= SHORTSTR_BYTES ? value : cutUtf8(value, SHORTSTR_BYTES);
}

/** `text` cut to at most `bytes` UTF-8 bytes, at a character boundary. */
function cutUtf8(text: string, bytes: number): string {
  const cut = Buffer.from(text, 'utf8').subarray(0, bytes).toString('utf8');
  return cut.endsWith('\uFFFD') ? cut.slice(0, -1) : cut;
}

/** A copy of `table` whose every key and value amqplib can encode; what had to change is noted. */
function encodableTable(table: Record<string, unknown>, notes: string[], path = '', depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [rawKey, value] of Object.entries(table)) {
    if (value === undefined) continue;
    let key = rawKey;
    if (Buffer.byteLength(key) > SHORTSTR_BYTES || key === '!') {
      key = key === '!' ? '(!)' : `${cutUtf8(key, SHORTSTR_BYTES - 8)}…`;
      notes.push(`key ${path}${JSON.stringify(rawKey.slice(0, 40))} renamed to ${JSON.stringify(key.slice(0, 40))}`);
    }
    // defineProperty: a "__proto__" header is an entry, not the table's prototype.
    Object.defineProperty(out, key, {
      value: encodableValue(value, notes, `${path}${key}`, depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function encodableValue(value: unknown, notes: string[], path: string, depth: number): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean' || Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'number') return encodableNumber(value, notes, path);
  if (typeof value === 'bigint') return encodableNumber(Number(value), notes, path);
  if (typeof value !== 'object') {
    notes.push(`${path}: a ${typeof value} replaced by its text`);
    return String(value);
  }
  if (depth >= MAX_DEPTH) {
    notes.push(`${path}: nested deeper than ${MAX_DEPTH} levels, replaced by a note`);
    return `[nested deeper than ${MAX_DEPTH} levels]`;
  }
  if (Array.isArray(value))
    return value.map((item, i) => (item === undefined ? null : encodableValue(item, notes, `${path}[${i}]`, depth + 1)));
  // Only amqplib's own typed values pass as such: its encoder reads any '!' key as a type, and throws on a
  // '!' decimal that is not {places, digits}; other tables have their '!' keys renamed.
  const typed = amqpTypedValue(value);
  if (typed?.type === 'decimal') return value;
  if (typed?.type === 'timestamp') {
    if (Number.isSafeInteger(typed.seconds)) return value;
    notes.push(`${path}: timestamp ${typed.seconds} kept as a number`);
    return encodableNumber(typed.seconds, notes, path);
  }
  return encodableTable(value as Record<string, unknown>, notes, `${path}.`, depth);
}

/**
 * amqplib encodes a whole number as a 64-bit integer: anything past ±2^63 must be a double. NaN and ±Infinity
 * become their text: RabbitMQ refuses a non-finite double or float with connection.close 541, which would take
 * the publishing connection down, and every consumer on it.
 */
function encodableNumber(value: number, notes: string[], path: string): unknown {
  if (!Number.isFinite(value)) {
    notes.push(`${path}: ${value} replaced by its text (RabbitMQ refuses non-finite numbers)`);
    return String(value);
  }
  const integer = Number.isInteger(value) && value >= -INT64 && value < INT64;
  const guessedDouble = value >= INT64 || (Math.abs(value) < 2 ** 50 && !Number.isInteger(value));
  return integer || guessedDouble ? value : { '!': 'double', value };
}

/**
 * The headers this system writes on a copy (why it failed, its attempt, where a retry goes, the original
 * user, its trace context): the last entries dropped from a table that is too large, whatever the sizes of the others.
 */
const OWN_HEADERS: ReadonlySet<string> = new Set([
  ...Object.values(FAILURE_HEADERS),
  ATTEMPT_HEADER,
  RETRY_DELAY_HEADER,
  'x-original-user-id',
  // The trace the copy continues (W3C trace context).
  'traceparent',
  'tracestate',
]);

/**
 * Shrinks `table` in place until it encodes within MAX_HEADERS_BYTES: first every string or byte value over
 * TRUNCATED_VALUE_BYTES is cut to that length, then whole entries are dropped, the message's own before ours
 * (OWN_HEADERS), largest first: a dead letter keeps its reason even when the original carried thousands of
 * entries about the size of x-error-name. The size is kept as a running total, so a table of tens of
 * thousands of tiny entries is shrunk in linear time.
 */
function fitTable(table: Record<string, unknown>, notes: string[]): void {
  let total = tableBytes(table);
  if (total <= MAX_HEADERS_BYTES) return;
  // defineProperty: a "__proto__" header is an entry, not the table's prototype.
  const set = (key: string, value: unknown) => {
    total += valueBytes(value) - valueBytes(table[key]);
    Object.defineProperty(table, key, { value, enumerable: true, writable: true, configurable: true });
  };
  for (const [key, value] of Object.entries(table)) {
    if (typeof value === 'string' && Buffer.byteLength(value) > TRUNCATED_VALUE_BYTES) {
      notes.push(`${key} cut to ${TRUNCATED_VALUE_BYTES} bytes from ${Buffer.byteLength(value)}`);
      set(key, `${cutUtf8(value, TRUNCATED_VALUE_BYTES)}…`);
    } else if (Buffer.isBuffer(value) && value.length > TRUNCATED_VALUE_BYTES) {
      notes.push(`${key} cut to ${TRUNCATED_VALUE_BYTES} bytes from ${value.length}`);
      set(key, value.subarray(0, TRUNCATED_VALUE_BYTES));
    }
  }
  const dropOrder = Object.entries(table)
    .map(([key, value]) => ({ key, bytes: valueBytes(value), own: OWN_HEADERS.has(key) }))
    .sort((a, b) => Number(a.own) - Number(b.own) || b.bytes - a.bytes);
  for (const { key, bytes } of dropOrder) {
    if (total <= MAX_HEADERS_BYTES) return;
    notes.push(`${key} dropped (${bytes} bytes encoded)`);
    delete table[key];
    total -= 1 + Buffer.byteLength(key) + bytes;
  }
}

/** Encoded size of a field table as amqplib writes it. */
export function tableBytes(table: Record<string, unknown>): number {
  let bytes = 4;
  for (const [key, value] of Object.entries(table)) if (value !== undefined) bytes += 1 + Buffer.byteLength(key) + valueBytes(value);
  return bytes;
}

function valueBytes(value: unknown): number {
  if (value === null || value === undefined) return 1;
  if (typeof value === 'string') return 5 + Buffer.byteLength(value);
  if (typeof value === 'boolean') return 2;
  if (typeof value === 'number') return 9;
  if (Buffer.isBuffer(value)) return 5 + value.length;
  if (Array.isArray(value)) return 5 + value.reduce<number>((sum, item) => sum + valueBytes(item), 0);
  if (typeof value === 'object' && '!' in value) return (value as { '!': unknown })['!'] === 'decimal' ? 6 : 9;
  if (typeof value === 'object') return 1 + tableBytes(value as Record<string, unknown>);
  return 9;
}
