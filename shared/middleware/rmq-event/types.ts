/**
 * The `aws:rmq` event AWS Lambda receives from an Amazon MQ (RabbitMQ) event source mapping; @types/aws-lambda
 * has none. One zod schema per level is both the runtime check (decode.ts) and, through z.infer, the type.
 * Key order is AWS's, so events built from these shapes serialize like AWS's samples.
 *
 * Why the shapes look as they do: AWS's poller reads messages with the RabbitMQ Java client and serializes its
 * BasicProperties with Gson (nulls kept). So an AMQP long string header is the client's LongString object,
 * `{"bytes": [...]}` with Java's signed bytes; a byte-array header is a plain array of signed bytes; a
 * timestamp header is a formatted date string like `timestamp`; other numbers, booleans, null, arrays and
 * tables are plain JSON.
 */
import type { Handler } from 'aws-lambda';
import * as z from 'zod';
import { parseAmqpTimestamp } from './timestamp.js';

/** An AMQP long string header value: its UTF-8 bytes (AWS sends Java's signed bytes, -128..127). */
export interface RabbitMQLongString {
  bytes: number[];
}

/**
 * A header value as AWS sends it: a long string as `{bytes}`; a plain string only for a timestamp-typed value
 * (formatted like `timestamp`); a byte array as an array of numbers; numbers, booleans, null, arrays, tables.
 */
export type RabbitMQHeaderValue =
  | RabbitMQLongString
  | number
  | boolean
  | string
  | null
  | RabbitMQHeaderValue[]
  | { [key: string]: RabbitMQHeaderValue };

const headerValue: z.ZodType<RabbitMQHeaderValue> = z.lazy(() =>
  z.union([z.number(), z.boolean(), z.string(), z.null(), z.array(headerValue), z.record(z.string(), headerValue)]),
);

const str = z.string({ error: 'must be a string or null' }).nullable();
const octet = z.number({ error: 'must be a number or null' }).int().min(0).max(255).nullable();
const object = <Shape extends z.ZodRawShape>(shape: Shape) => z.object(shape, { error: 'must be an object' });
// A plain character class and a length check: a regex with a repeated group, /^(?:[A-Za-z0-9+/]{4})*.../,
// overflows V8's stack on a body of a few MB.
const BASE64_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;
const isBase64 = (text: string): boolean => text.length % 4 === 0 && BASE64_CHARS.test(text);

/** The message's AMQP properties as AWS sends them: every one present, `null` when the message had none. */
export const RabbitMQBasicPropertiesSchema = object({
  contentType: str,
  contentEncoding: str,
  /** `null` when the message carried no headers table; `{}` when it carried an empty one. */
  headers: z.record(z.string(), headerValue, { error: 'must be an object or null' }).nullable(),
  /** 1 transient, 2 persistent. */
  deliveryMode: octet,
  priority: octet,
  correlationId: str,
  replyTo: str,
  /** Per-message TTL in milliseconds, as a string (AMQP shortstr). */
  expiration: str,
  messageId: str,
  /** The AMQP timestamp (seconds) as a UTC date, "Jan 1, 1970, 12:33:41 AM". */
  timestamp: z
    .string({ error: 'must be a string or null' })
    .refine((text) => parseAmqpTimestamp(text) !== undefined, 'must be a date like "Jan 1, 1970, 12:33:41 AM"')
    .nullable(),
  type: str,
  userId: str,
  appId: str,
  /** Deprecated in AMQP 0-9-1; RabbitMQ passes it through when a client sets it. */
  clusterId: str,
  /** The body's length in bytes. */
  bodySize: z.number({ error: 'must be a number' }).int().nonnegative(),
});

export const RabbitMQMessageSchema = object({
  basicProperties: RabbitMQBasicPropertiesSchema,
  /** True when the broker delivered this message before (a failed batch, a lost consumer). */
  redelivered: z.boolean({ error: 'must be a boolean' }),
  /** The body, base64. */
  data: z.string({ error: 'must be a string' }).refine(isBase64, 'must be base64'),
});

/** Splits a `rmqMessagesByQueue` key "<queue>::<vhost>" at its last "::"; undefined when it is not one. */
export function splitQueueKey(key: string): { queue: string; vhost: string } | undefined {
  const at = key.lastIndexOf('::');
  const queue = key.slice(0, at);
  const vhost = key.slice(at + 2);
  return at > 0 && vhost ? { queue, vhost } : undefined;
}

export const RabbitMQEventSchema = object({
  eventSource: z.literal('aws:rmq', { error: 'must be "aws:rmq"' }),
  /** The broker's ARN: arn:aws:mq:<region>:<account>:broker:<name>:b-<uuid>. */
  eventSourceArn: z.string({ error: 'must be a string' }).min(1, 'must not be empty'),
  /** Messages by "<queue>::<vhost>", in delivery order. */
  rmqMessagesByQueue: z.record(
    z.string().refine((key) => splitQueueKey(key) !== undefined, 'must be "<queue>::<vhost>"'),
    z.array(RabbitMQMessageSchema, { error: 'must be an array of messages' }),
    { error: 'must be an object' },
  ),
});

export type RabbitMQBasicProperties = z.infer<typeof RabbitMQBasicPropertiesSchema>;
export type RabbitMQMessage = z.infer<typeof RabbitMQMessageSchema>;
export type RabbitMQEvent = z.infer<typeof RabbitMQEventSchema>;

/** A Lambda handler triggered by Amazon MQ for RabbitMQ. */
export type RabbitMQHandler = Handler<RabbitMQEvent, void>;

/** A header value as amqplib gives and takes it (typed values use amqplib's `{'!': type, value}` form). */
export type AmqpHeaderValue =
  | string
  | number
  | boolean
  | null
  | Buffer
  | { '!': 'timestamp'; value: number }
  | { '!': 'decimal'; value: { places: number; digits: number } }
  | AmqpHeaderValue[]
  | { [key: string]: AmqpHeaderValue };

/** A message's AMQP properties as amqplib gives them on consume (and takes them on publish); absent = undefined. */
export interface RabbitMQProperties {
  contentType?: string;
  contentEncoding?: string;
  headers?: Record<string, AmqpHeaderValue>;
  deliveryMode?: number;
  priority?: number;
  correlationId?: string;
  replyTo?: string;
  expiration?: string;
  messageId?: string;
  /** Seconds since the epoch. */
  timestamp?: number;
  type?: string;
  userId?: string;
  appId?: string;
  /** amqplib's publish cannot set it; kept for messages from other clients. */
  clusterId?: string;
}

/** One message of an `aws:rmq` event, decoded. */
export interface RabbitMQRecord {
  queue: string;
  vhost: string;
  redelivered: boolean;
  body: Buffer;
  properties: RabbitMQProperties;
  /** The basicProperties exactly as received. */
  rawProperties: RabbitMQBasicProperties;
}
