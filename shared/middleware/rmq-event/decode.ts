/**
 * Validates and decodes `aws:rmq` events into records whose properties look like what amqplib gives a consumer,
 * so decode(build(message)).properties matches message.properties (see build.ts for the few lossy cases).
 */
import type { z } from 'zod';
import { parseAmqpTimestamp } from './timestamp.js';
import {
  type AmqpHeaderValue,
  type RabbitMQBasicProperties,
  type RabbitMQEvent,
  RabbitMQEventSchema,
  type RabbitMQHeaderValue,
  type RabbitMQLongString,
  type RabbitMQProperties,
  type RabbitMQRecord,
  splitQueueKey,
} from './types.js';

/** Thrown for an event that is not a well-formed `aws:rmq` event; `problems` says what is wrong, and where. */
export class InvalidRabbitMQEventError extends Error {
  override readonly name = 'InvalidRabbitMQEventError';
  constructor(readonly problems: string[]) {
    super(`Invalid aws:rmq event: ${problems.join('; ')}`);
  }
}

/** Throws InvalidRabbitMQEventError unless `event` is a well-formed `aws:rmq` event. */
export function assertRabbitMQEvent(event: unknown): asserts event is RabbitMQEvent {
  const result = RabbitMQEventSchema.safeParse(event);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => describeIssue(issue, event));
    throw new InvalidRabbitMQEventError(problems.length > 10 ? [...problems.slice(0, 10), `and ${problems.length - 10} more`] : problems);
  }
}

/** The event's messages in event order, validated; throws InvalidRabbitMQEventError for a malformed event. */
export function decodeRabbitMQEvent(event: unknown): RabbitMQRecord[] {
  assertRabbitMQEvent(event);
  return Object.entries(event.rmqMessagesByQueue).flatMap(([key, messages]) => {
    const { queue, vhost } = splitQueueKey(key)!;
    return messages.map((message) => ({
      queue,
      vhost,
      redelivered: message.redelivered,
      body: Buffer.from(message.data, 'base64'),
      properties: decodeProperties(message.basicProperties),
      rawProperties: message.basicProperties,
    }));
  });
}

/** AWS's basicProperties as amqplib's: null becomes undefined, headers and timestamp are decoded. */
export function decodeProperties(p: RabbitMQBasicProperties): RabbitMQProperties {
  const opt = <T>(value: T | null): T | undefined => value ?? undefined;
  return {
    contentType: opt(p.contentType),
    contentEncoding: opt(p.contentEncoding),
    headers: p.headers === null ? undefined : decodeHeaderTable(p.headers),
    deliveryMode: opt(p.deliveryMode),
    priority: opt(p.priority),
    correlationId: opt(p.correlationId),
    replyTo: opt(p.replyTo),
    expiration: opt(p.expiration),
    messageId: opt(p.messageId),
    timestamp: p.timestamp === null ? undefined : parseAmqpTimestamp(p.timestamp),
    type: opt(p.type),
    userId: opt(p.userId),
    appId: opt(p.appId),
    clusterId: opt(p.clusterId),
  };
}

/**
 * One header value back into amqplib's form: `{bytes}` (signed or unsigned) becomes a UTF-8 string, a
 * formatted date becomes `{'!': 'timestamp', value: seconds}`, other strings, numbers, booleans and null stay,
 * arrays and tables recursively. A byte-array header arrives as a plain array of numbers and stays one.
 */
export function decodeHeaderValue(value: RabbitMQHeaderValue): AmqpHeaderValue {
  if (isLongString(value)) return Buffer.from(value.bytes.map((byte) => byte & 0xff)).toString('utf8');
  if (typeof value === 'string') {
    const seconds = parseAmqpTimestamp(value);
    return seconds === undefined ? value : { '!': 'timestamp', value: seconds };
  }
  if (Array.isArray(value)) return value.map(decodeHeaderValue);
  if (value !== null && typeof value === 'object') return decodeHeaderTable(value);
  return value;
}

function decodeHeaderTable(table: { [key: string]: RabbitMQHeaderValue }): Record<string, AmqpHeaderValue> {
  return Object.fromEntries(Object.entries(table).map(([key, value]) => [key, decodeHeaderValue(value)]));
}

/** `{bytes: [...]}` and nothing else; a table whose only entry is a byte list named "bytes" reads the same. */
function isLongString(value: RabbitMQHeaderValue): value is RabbitMQLongString {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  const bytes = (value as { bytes?: unknown }).bytes;
  return (
    keys.length === 1 &&
    keys[0] === 'bytes' &&
    Array.isArray(bytes) &&
    bytes.every((byte) => Number.isInteger(byte) && byte >= -128 && byte <= 255)
  );
}

type Issue = z.ZodError['issues'][number];

function describeIssue(issue: Issue, event: unknown): string {
  const where = formatPath(issue.path);
  if (issue.code === 'invalid_key') {
    const key = JSON.stringify(String(issue.path.at(-1)));
    return `${formatPath(issue.path.slice(0, -1))}: key ${key} ${issue.issues[0]?.message ?? 'is invalid'}`;
  }
  const value = valueAt(event, issue.path);
  if (issue.code === 'invalid_type' && value === undefined) return `${where} is missing`;
  const got = issue.code === 'invalid_type' || issue.code === 'invalid_value' ? ` (got ${preview(value)})` : '';
  return `${where}: ${issue.message}${got}`;
}

function formatPath(path: PropertyKey[]): string {
  let out = 'event';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (typeof part === 'string' && /^[A-Za-z_$][\w$]*$/.test(part)) out += `.${part}`;
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out;
}

function valueAt(root: unknown, path: PropertyKey[]): unknown {
  let value = root;
  for (const part of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value;
}

function preview(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : String(value);
}
