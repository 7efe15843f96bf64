/**
 * Fault suite: property-based fuzzing at the broker boundary. fast-check generates streams of arbitrary AMQP
 * messages, of everything RabbitMQ accepts, mixed into valid OrderPlaced orders, and publishes them to
 * `order-events` (through `orders`/`order.placed`) in a vhost of this test's own, where the REAL worker
 * (`npm run worker -- --functions inventoryReservation`, SQLite) consumes them.
 *
 * Generated, from a fixed seed (BROKER_FUZZ_SEED), BROKER_FUZZ_RUNS streams of BROKER_FUZZ_MESSAGES messages
 * plus a few specials each:
 * - properties: each of the 14 present or absent; shortstrs of text, arbitrary bytes (invalid UTF-8), 255
 *   bytes; timestamps over 0..2^64-1 (10^13 and the Date limits included); priority 0..255, delivery mode 1/2,
 *   expirations the broker takes and that cannot run out during the test, userId the connection's user;
 * - headers of every type the broker takes: S (text or bytes), x, b B s u I i l (extremes), 'L' (raw, turned
 *   into 'l' by the quorum queue), T (in and out of Date's range), D, finite d/f, t (also octet 2), V, nested
 *   A and F, nesting up to 64 levels (still representable), 65 to 400 levels and one 10,000-deep (not),
 *   tables filled to 100,000..131,072 bytes of content header (one long string, thousands of small entries,
 *   tens of thousands of tiny ones, a byte array, an int array), tables that look like amqplib's typed values ('!' keys), keys that are empty,
 *   `__proto__`, invalid UTF-8, 255 bytes long, our own x-error-* names, duplicated; pre-encoded tables;
 * - bodies: random bytes, broken JSON (truncated, invalid UTF-8, trailing garbage, UTF-16, ...), JSON that
 *   looks like an order but breaks its schema, valid orders breaking the messageId/type contract, valid orders
 *   that have no aws:rmq form (an unrepresentable timestamp or header), a 1..4 MB malformed body, a 4.8..7 MB
 *   body (past the 6 MB invocation payload), and a 0.5..3 MB valid order (a big unknown field);
 * - valid orders: plain ones through amqplib as the services publish them, and ones with arbitrary extra
 *   properties and (representable) headers through the raw publisher, which must be processed all the same.
 * - a few messages the broker refuses (delivery mode 0, a bad expiration, another user's userId, a NaN double,
 *   an unknown tag): the raw publisher rejects with BrokerCloseError, the message is dropped from the
 *   expectations and counted, and the publisher reopened (one the broker took would be dead-lettered).
 * Generated headers are representable; what has no aws:rmq form comes only from the 'bad:unrepresentable' kind,
 * so that each kind predicts the class of its dead letter.
 *
 * Invariants, checked after each stream drains: the worker never exited; every valid order was processed
 * exactly once (one inbox claim, one outbox row, published, one InventoryReserved/InventoryFailed counted on a
 * queue of the test's bound to `inventory`/`inventory.*`, the right one for its item, stock reserved once);
 * no bad message was claimed; every bad message is in `order-events-dlq` exactly once, body byte for byte,
 * with x-error-class (the class its kind predicts), x-error-name, x-error-message, x-original-queue; nothing
 * is left in `order-events` (ready or unacknowledged), the retry queues or `parking-lot`.
 *
 * Seed, counts by kind, refusals and dead letters by class go to test/.output/broker-fuzz.json and one line on
 * the console, the worker's output to broker-fuzz-worker.log; on a failure the seed is in the error and the
 * offending messages in the report. BROKER_FUZZ_LOG_LEVEL=info makes the worker log every record.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { GetMessage } from 'amqplib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventProperties, newEvent, OrderPlaced } from '../../shared/events';
import { declareTopology, dlqName, PARKING_LOT_QUEUE, retryQueueName } from '../../shared/messaging';
import { openStore, type Store } from '../../shared/store';
import { queueDepth } from '../support/amqp';
import { brokerControl } from '../support/broker-control';
import { seededRandom } from '../support/orders';
import {
  BrokerCloseError,
  encodeTable,
  type FieldEntries,
  type FieldValue,
  nested,
  openRawPublisher,
  type RawProperties,
  type RawPublisher,
  type ShortStr,
} from '../support/raw-amqp';
import { waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';
import { killAll, spawnWorker, type WorkerProcess } from '../support/worker-process';

const ROOT = resolve(import.meta.dirname, '../..');
const OUTPUT_DIR = join(ROOT, 'test/.output');
const REPORT = join(OUTPUT_DIR, 'broker-fuzz.json');
const WORKER_LOG = join(OUTPUT_DIR, 'broker-fuzz-worker.log');
const SEED = Number(process.env.BROKER_FUZZ_SEED ?? 20_241_129);
const RUNS = Number(process.env.BROKER_FUZZ_RUNS ?? 2);
const MESSAGES_PER_RUN = Number(process.env.BROKER_FUZZ_MESSAGES ?? 150);
const RETRY_DELAYS_MS = [100, 200];
const DELIVERY_LIMIT = 10;
const QUEUE = 'order-events';
const DLQ = dlqName(QUEUE);
const OUTCOMES = 'fuzz-inventory-outcomes';
const CONSUMER = 'inventory-reservation';
const FRAME_MAX = 131_072;
/** The largest AMQP timestamp (seconds) a Date holds: 8.64e15 ms. */
const T_MAX = 8_640_000_000_000n;
const WIDGET_STOCK = 1_000_000_000;
const FAILURE_CLASSES = ['permanent', 'transient', 'unrepresentable', 'payload-too-large'] as const;
type FailureClass = (typeof FAILURE_CLASSES)[number];
/** Worker log lines worth counting (all at warn level or above). */
const WATCH = [
  'could not dead-letter',
  'invocation failed',
  'batch failed unexpectedly',
  'unhandled rejection',
  'channel closed',
  'outbox publish failed',
  'left in the outbox',
];

// ---------------------------------------------------------------------------------------------------------
// Deterministic expansion of small generated recipes into bytes (fast-check would be slow generating MBs).

/** seededRandom (test/support/orders.ts) as whole 32-bit numbers. */
function prng(seed: number): () => number {
  const random = seededRandom(seed);
  return () => Math.floor(random() * 4294967296);
}

function randomBytes(seed: number, length: number): Buffer {
  const next = prng(seed);
  const out = Buffer.allocUnsafe(length);
  let i = 0;
  for (; i + 4 <= length; i += 4) out.writeUInt32LE(next(), i);
  for (; i < length; i++) out[i] = next() & 0xff;
  return out;
}

/** A v4-shaped UUID derived from the seed and a tag: the same stream has the same ids on every execution. */
function uuidOf(tag: string): string {
  const h = createHash('sha256').update(`${SEED}:${tag}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${'89ab'[parseInt(h[16]!, 16) & 3]}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const u64 = (value: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(value);
  return b;
};
const shortLength = (s: ShortStr | undefined) => (s === undefined ? 0 : 1 + (typeof s === 'string' ? Buffer.byteLength(s) : s.length));
/** What amqplib makes of a shortstr on the wire. */
const decoded = (s: ShortStr | undefined) => (s === undefined ? undefined : typeof s === 'string' ? s : s.toString('utf8'));

/** The content header frame's payload for these properties, as the raw publisher encodes it. */
function contentHeaderBytes(p: RawProperties): number {
  const table = p.headers === undefined ? 0 : Buffer.isBuffer(p.headers) ? 4 + p.headers.length : encodeTable(p.headers).length;
  return (
    14 + // class, weight, body size, property flags
    shortLength(p.contentType) +
    shortLength(p.contentEncoding) +
    table +
    (p.deliveryMode === undefined ? 0 : 1) +
    (p.priority === undefined ? 0 : 1) +
    shortLength(p.correlationId) +
    shortLength(p.replyTo) +
    shortLength(p.expiration) +
    shortLength(p.messageId) +
    (p.timestamp === undefined ? 0 : 8) +
    shortLength(p.type) +
    shortLength(p.userId) +
    shortLength(p.appId) +
    shortLength(p.clusterId)
  );
}

// ---------------------------------------------------------------------------------------------------------
// Arbitraries: recipes, small and printable.

/** `arbitrary` once in `oneIn` draws, else null (fc.option's freq is the other way round: null once in freq). */
const rarely = <T>(arbitrary: fc.Arbitrary<T>, oneIn: number): fc.Arbitrary<T | null> =>
  fc.oneof({ weight: oneIn - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary });

const bytesArb = (maxLength: number) => fc.uint8Array({ maxLength }).map((b) => Buffer.from(b));

const shortstrArb: fc.Arbitrary<ShortStr> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }).filter((s) => Buffer.byteLength(s) <= 255) },
  { weight: 2, arbitrary: bytesArb(40) },
  // Long and not UTF-8: amqplib turns each bad byte into U+FFFD, 3 bytes, so the text no longer fits a shortstr.
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.integer({ min: 86, max: 255 }).map((n) => Buffer.alloc(n, 0xff)),
      fc.uint8Array({ minLength: 100, maxLength: 255 }).map((b) => Buffer.from(b)),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<ShortStr>(
      '',
      Buffer.alloc(255, 0x61),
      Buffer.alloc(255, 0xff),
      Buffer.from([0xc3, 0x28]),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from([0xf4, 0x90, 0x80, 0x80]),
      'é'.repeat(127),
    ),
  },
);

const SPECIAL_KEYS = [
  '',
  '__proto__',
  '!',
  'value',
  'constructor',
  'toString',
  'hasOwnProperty',
  'bytes',
  'x-error-class',
  'x-error-name',
  'x-error-message',
  'x-attempt',
  'x-attempts',
  'x-first-failed-at',
  'x-original-queue',
  'x-delivery-count',
  'x-death',
  'x-truncated-headers',
  'x-original-user-id',
  'retry-delay-ms',
  'x-redrive-count',
];
const keyArb: fc.Arbitrary<ShortStr> = fc.oneof(
  { weight: 5, arbitrary: fc.string({ maxLength: 16 }) },
  { weight: 3, arbitrary: fc.constantFrom(...SPECIAL_KEYS) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 16 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.constantFrom<ShortStr>(Buffer.alloc(255, 0x6b), Buffer.alloc(255, 0xff)) },
);

/** AMQP timestamps: those a Date holds (0..8.64e12 s), or past it up to 2^64-1. */
const timestampArb = (range: 'in-range' | 'past-date-range'): fc.Arbitrary<bigint> =>
  range === 'in-range'
    ? fc.oneof(fc.constantFrom(0n, 1n, 1_700_000_000n, T_MAX), fc.bigInt({ min: 0n, max: T_MAX }))
    : fc.oneof(
        fc.constantFrom(10n ** 13n, 2n ** 64n - 1n, T_MAX + 1n, 2n ** 53n + 1n),
        fc.bigInt({ min: T_MAX + 1n, max: 2n ** 64n - 1n }),
      );

const uint32Arb = fc.bigInt({ min: 0n, max: 2n ** 32n - 1n }).map(Number);
const int64Arb = fc.oneof(
  fc.constantFrom(-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 2n ** 53n + 1n),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
);

/** One leaf of every type the broker accepts; T within Date's range (out of range is an unrepresentable feature). */
const leafArb: fc.Arbitrary<FieldValue> = fc.oneof(
  fc
    .oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 10 }), bytesArb(40))
    .map((v): FieldValue => ({ t: 'S', v })),
  bytesArb(40).map((v): FieldValue => ({ t: 'x', v })),
  fc.integer({ min: -128, max: 127 }).map((v): FieldValue => ({ t: 'b', v })),
  fc.integer({ min: 0, max: 255 }).map((v): FieldValue => ({ t: 'B', v })),
  fc.integer({ min: -32_768, max: 32_767 }).map((v): FieldValue => ({ t: 's', v })),
  fc.integer({ min: 0, max: 65_535 }).map((v): FieldValue => ({ t: 'u', v })),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v): FieldValue => ({ t: 'I', v })),
  uint32Arb.map((v): FieldValue => ({ t: 'i', v })),
  int64Arb.map((v): FieldValue => ({ t: 'l', v })),
  timestampArb('in-range').map((v): FieldValue => ({ t: 'T', v })),
  fc
    .record({ places: fc.integer({ min: 0, max: 255 }), digits: uint32Arb })
    .map(({ places, digits }): FieldValue => ({ t: 'D', places, digits })),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((v): FieldValue => ({ t: 'd', v })),
  fc.float({ noNaN: true, noDefaultInfinity: true }).map((v): FieldValue => ({ t: 'f', v })),
  fc.boolean().map((v): FieldValue => ({ t: 't', v })),
  fc.constant<FieldValue>({ t: 'V' }),
  // Unsigned 64-bit 'L': the broker takes it; a quorum queue hands it on as signed 'l'.
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v): FieldValue => ({ t: 'raw', v: Buffer.concat([Buffer.from('L'), u64(v)]) })),
  // A boolean octet that is neither 0 nor 1.
  fc.integer({ min: 2, max: 255 }).map((v): FieldValue => ({ t: 'raw', v: Buffer.from([0x74, v]) })),
);

const NUMERIC_TAGS = new Set(['b', 'B', 's', 'u', 'I', 'i', 'l', 'd', 'f', 'raw']);

/**
 * A table shaped like amqplib's typed values: `{'!': 'timestamp' | 'decimal' | ..., value: ...}`, maybe with a
 * third entry: a table any client may send, with a JSON form. Left out: `!` timestamp with a number as value
 * and nothing else, which is what amqplib makes of a real 'T' header, so that a consumer cannot tell it from
 * one (out of Date's range, it has no aws:rmq form; that case is the 'typed-timestamp' unrepresentable kind).
 */
const typedLookingArb = (value: fc.Arbitrary<FieldValue>): fc.Arbitrary<FieldValue> =>
  fc
    .record({
      bang: fc.constantFrom('timestamp', 'decimal', 'double', 'float', 'long', 'unsignedbyte', 'garbage'),
      value: fc.option(
        fc.oneof(
          value,
          fc.record({ places: leafArb, digits: leafArb }).map(
            ({ places, digits }): FieldValue => ({
              t: 'F',
              v: [
                ['places', places],
                ['digits', digits],
              ],
            }),
          ),
        ),
        { nil: undefined, freq: 6 },
      ),
      extra: fc.option(
        fc.tuple(
          fc.string({ maxLength: 6 }).filter((k) => k !== '!' && k !== 'value'),
          leafArb,
        ),
        { nil: undefined, freq: 2 },
      ),
    })
    .filter(({ bang, value: v, extra }) => !(bang === 'timestamp' && !extra && v !== undefined && NUMERIC_TAGS.has(v.t)))
    .map(({ bang, value: v, extra }): FieldValue => {
      const entries: Array<readonly [ShortStr, FieldValue]> = [['!', { t: 'S', v: bang }]];
      if (v !== undefined) entries.push(['value', v]);
      if (extra) entries.push(extra);
      return { t: 'F', v: entries };
    });

const valueArb: fc.Arbitrary<FieldValue> = fc.letrec<{ value: FieldValue }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 3, depthSize: 'small' },
    { weight: 8, arbitrary: leafArb },
    { weight: 1, arbitrary: fc.array(tie('value'), { maxLength: 4 }).map((v): FieldValue => ({ t: 'A', v })) },
    { weight: 1, arbitrary: fc.array(fc.tuple(keyArb, tie('value')), { maxLength: 4 }).map((v): FieldValue => ({ t: 'F', v })) },
    { weight: 1, arbitrary: typedLookingArb(leafArb) },
  ),
})).value;

type BigStyle = 'longstr' | 'entries' | 'tiny-entries' | 'bytes' | 'ints';
const BIG_STYLES: readonly BigStyle[] = ['longstr', 'entries', 'tiny-entries', 'bytes', 'ints'];

interface HeadersRecipe {
  present: boolean;
  entries: Array<readonly [ShortStr, FieldValue]>;
  /** Nesting that still has an aws:rmq form (at most 64 levels). */
  deep: { depth: number; kind: 'A' | 'F' } | null;
  /** Fill the content header up to `target` bytes. */
  big: { target: number; style: BigStyle; seed: number } | null;
  preEncoded: boolean;
}

const headersArb: fc.Arbitrary<HeadersRecipe> = fc.record(
  {
    present: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    entries: fc.array(fc.tuple(keyArb, valueArb), { maxLength: 8 }),
    deep: rarely(
      fc.record({ depth: fc.oneof(fc.integer({ min: 2, max: 64 }), fc.constant(64)), kind: fc.constantFrom<'A' | 'F'>('A', 'F') }),
      12,
    ),
    big: rarely(
      fc.record({
        target: fc.oneof(fc.integer({ min: 100_000, max: FRAME_MAX }), fc.constant(FRAME_MAX)),
        style: fc.constantFrom(...BIG_STYLES),
        seed: fc.integer(),
      }),
      25,
    ),
    preEncoded: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  },
  { noNullPrototype: true },
);

const expirationArb = fc.oneof(
  fc.bigInt({ min: 600_000n, max: 4_294_967_295n }).map(String),
  fc.constantFrom('4294967295', '0000086400000'),
);

/**
 * Every basic property present or absent, of any value the broker takes; the message's kind overrides some
 * (a valid order's messageId, type, contentType, deliveryMode). Headers are representable: what has no
 * aws:rmq form comes only from the 'bad:unrepresentable' kind, so that each kind predicts its dead letter.
 */
const propsArb = fc.record(
  {
    contentType: shortstrArb,
    contentEncoding: shortstrArb,
    deliveryMode: fc.constantFrom(1, 2),
    priority: fc.integer({ min: 0, max: 255 }),
    correlationId: shortstrArb,
    replyTo: shortstrArb,
    expiration: expirationArb,
    messageId: fc.oneof(
      fc.uuid().map((u): ShortStr => u),
      shortstrArb,
    ),
    timestamp: timestampArb('in-range'),
    type: fc.oneof(fc.constantFrom<ShortStr>('OrderPlaced', 'orderplaced', 'InventoryReserved'), shortstrArb),
    userId: fc.constant('guest'),
    appId: shortstrArb,
    clusterId: shortstrArb,
    headers: headersArb,
  },
  { requiredKeys: [], noNullPrototype: true },
);

interface OrderRecipe {
  user: string;
  item: 'widget' | 'doohickey' | 'unknown';
  quantity: number;
  extraField: boolean;
  pretty: boolean;
}

const orderArb: fc.Arbitrary<OrderRecipe> = fc.record(
  {
    user: fc.oneof(fc.string({ minLength: 1, maxLength: 30 }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 })),
    item: fc.oneof(
      { weight: 8, arbitrary: fc.constant<'widget'>('widget') },
      { weight: 1, arbitrary: fc.constant<'doohickey'>('doohickey') },
      { weight: 1, arbitrary: fc.constant<'unknown'>('unknown') },
    ),
    quantity: fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 1, max: 5 }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 1_000_000 }) },
    ),
    extraField: fc.boolean(),
    pretty: fc.boolean(),
  },
  { noNullPrototype: true },
);

const WRONG_FIELDS = [
  'quantity-0',
  'quantity-negative',
  'quantity-fraction',
  'quantity-text',
  'quantity-null',
  'quantity-too-large',
  'quantity-infinite',
  'quantity-duplicate-key',
  'no-quantity',
  'event-id-not-uuid',
  'event-id-number',
  'no-event-id',
  'order-id-not-uuid',
  'no-order-id',
  'timestamp-text',
  'timestamp-date-only',
  'timestamp-number',
  'user-empty',
  'user-blank',
  'user-nul',
  'user-lone-surrogate',
  'user-too-long',
  'item-empty',
  'item-nul',
  'item-too-long',
  'event-type-other',
  'event-type-case',
  'event-type-null',
  'no-event-type',
  'event-type-inventory',
  'array',
  'null',
  'string',
  'number',
  'empty-object',
  'wrapped',
] as const;
type WrongFields = (typeof WRONG_FIELDS)[number];

const BROKEN_JSON = [
  'truncated',
  'invalid-utf8',
  'trailing-garbage',
  'single-quotes',
  'unquoted-keys',
  'nan',
  'comment',
  'trailing-comma',
  'utf16',
  'concatenated',
] as const;
type BrokenJson = (typeof BROKEN_JSON)[number];

const CONTRACT = [
  'other-message-id',
  'no-message-id',
  'message-id-invalid-utf8',
  'message-id-uppercase',
  'message-id-255',
  'no-type',
  'type-case',
  'type-invalid-utf8',
  'type-other-event',
] as const;
type Contract = (typeof CONTRACT)[number];

type Unrepresentable =
  | { kind: 'timestamp'; value: bigint }
  | { kind: 'T-header'; value: bigint; wrap: number }
  | { kind: 'deep'; depth: number; container: 'A' | 'F' }
  | { kind: 'typed-timestamp'; value: bigint };

const unrepresentableArb: fc.Arbitrary<Unrepresentable> = fc.oneof(
  timestampArb('past-date-range').map((value): Unrepresentable => ({ kind: 'timestamp', value })),
  fc
    .record({ value: timestampArb('past-date-range'), wrap: fc.integer({ min: 0, max: 3 }) })
    .map(({ value, wrap }): Unrepresentable => ({ kind: 'T-header', value, wrap })),
  fc
    .record({
      depth: fc.oneof(fc.constantFrom(65, 256, 257), fc.integer({ min: 65, max: 400 })),
      container: fc.constantFrom<'A' | 'F'>('A', 'F'),
    })
    .map(({ depth, container }): Unrepresentable => ({ kind: 'deep', depth, container })),
  fc.bigInt({ min: T_MAX + 1n, max: 2n ** 63n - 1n }).map((value): Unrepresentable => ({ kind: 'typed-timestamp', value })),
);

/**
 * What RabbitMQ refuses, closing the channel or the whole connection (see /tmp/raw-amqp-findings.md): such
 * a message is never enqueued, and the publisher is reopened. Should the broker take one after all, it is a
 * bad message like the others (its body is broken JSON) and must be dead-lettered.
 */
type Refusal =
  | { what: 'delivery-mode'; deliveryMode: number }
  | { what: 'expiration'; expiration: string }
  | { what: 'user-id'; userId: string }
  | { what: 'header'; value: Buffer };
const refusalArb: fc.Arbitrary<Refusal> = fc.oneof(
  fc.oneof(fc.constant(0), fc.integer({ min: 3, max: 255 })).map((deliveryMode): Refusal => ({ what: 'delivery-mode', deliveryMode })),
  fc.constantFrom('abc', '-1', '4294967296', '1.5', '').map((expiration): Refusal => ({ what: 'expiration', expiration })),
  fc.constantFrom('mallory', 'admin').map((userId): Refusal => ({ what: 'user-id', userId })),
  fc
    .constantFrom(
      Buffer.concat([Buffer.from('d'), Buffer.from([0x7f, 0xf8, 0, 0, 0, 0, 0, 0])]), // NaN double
      Buffer.concat([Buffer.from('f'), Buffer.from([0x7f, 0x80, 0, 0])]), // Infinity float
      Buffer.from('U\u0000\u0001'), // a tag RabbitMQ does not know
      Buffer.from('X\u0000\u0000\u0000\u0001'),
    )
    .map((value): Refusal => ({ what: 'header', value })),
);

type Props = typeof propsArb extends fc.Arbitrary<infer T> ? T : never;

type Recipe =
  | { kind: 'valid'; order: OrderRecipe }
  | { kind: 'valid+extras'; order: OrderRecipe; props: Props }
  | { kind: 'bad:random-bytes'; length: number; seed: number; jsonish: boolean; props: Props }
  | { kind: 'bad:broken-json'; order: OrderRecipe; how: BrokenJson; seed: number; matchIdentity: boolean; props: Props }
  | { kind: 'bad:wrong-fields'; order: OrderRecipe; how: WrongFields; matchIdentity: boolean; props: Props }
  | { kind: 'bad:contract'; order: OrderRecipe; how: Contract; seed: number; props: Props }
  | { kind: 'bad:unrepresentable'; order: OrderRecipe; feature: Unrepresentable; props: Props }
  | { kind: 'bad:large'; size: number; seed: number; props: Props }
  | { kind: 'refused'; refusal: Refusal; order: OrderRecipe; props: Props }
  | { kind: 'bad:too-large'; size: number; seed: number; fill: 'random' | 'json-prefix'; props: Props }
  | { kind: 'valid-large'; order: OrderRecipe; pad: number };

const recipeArb: fc.Arbitrary<Recipe> = fc.oneof(
  { weight: 35, arbitrary: orderArb.map((order): Recipe => ({ kind: 'valid', order })) },
  { weight: 20, arbitrary: fc.record({ order: orderArb, props: propsArb }).map((r): Recipe => ({ kind: 'valid+extras', ...r })) },
  {
    weight: 8,
    arbitrary: fc
      .record({
        length: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 4096 })),
        seed: fc.integer(),
        jsonish: fc.boolean(),
        props: propsArb,
      })
      .map((r): Recipe => ({ kind: 'bad:random-bytes', ...r })),
  },
  {
    weight: 9,
    arbitrary: fc
      .record({ order: orderArb, how: fc.constantFrom(...BROKEN_JSON), seed: fc.integer(), matchIdentity: fc.boolean(), props: propsArb })
      .map((r): Recipe => ({ kind: 'bad:broken-json', ...r })),
  },
  {
    weight: 12,
    arbitrary: fc
      .record({ order: orderArb, how: fc.constantFrom(...WRONG_FIELDS), matchIdentity: fc.boolean(), props: propsArb })
      .map((r): Recipe => ({ kind: 'bad:wrong-fields', ...r })),
  },
  {
    weight: 8,
    arbitrary: fc
      .record({ order: orderArb, how: fc.constantFrom(...CONTRACT), seed: fc.integer(), props: propsArb })
      .map((r): Recipe => ({ kind: 'bad:contract', ...r })),
  },
  {
    weight: 8,
    arbitrary: fc
      .record({ order: orderArb, feature: unrepresentableArb, props: propsArb })
      .map((r): Recipe => ({ kind: 'bad:unrepresentable', ...r })),
  },
  {
    weight: 2,
    arbitrary: fc.record({ refusal: refusalArb, order: orderArb, props: propsArb }).map((r): Recipe => ({ kind: 'refused', ...r })),
  },
);

/** Rare and heavy messages, one of each per stream at a generated position: the total volume stays bounded. */
const specialsArb = fc.record({
  tooLarge: fc
    .record({
      size: fc.integer({ min: 4_800_000, max: 7_000_000 }),
      seed: fc.integer(),
      fill: fc.constantFrom<'random' | 'json-prefix'>('random', 'json-prefix'),
      props: propsArb,
    })
    .map((r): Recipe => ({ kind: 'bad:too-large', ...r })),
  large: fc
    .record({ size: fc.integer({ min: 1_000_000, max: 4_000_000 }), seed: fc.integer(), props: propsArb })
    .map((r): Recipe => ({ kind: 'bad:large', ...r })),
  validLarge: fc
    .record({ order: orderArb, pad: fc.integer({ min: 500_000, max: 3_000_000 }) })
    .map((r): Recipe => ({ kind: 'valid-large', ...r })),
  deep10k: fc.record({ order: orderArb, container: fc.constantFrom<'A' | 'F'>('A', 'F'), props: propsArb }).map(
    ({ order, container, props }): Recipe => ({
      kind: 'bad:unrepresentable',
      order,
      feature: { kind: 'deep', depth: 10_000, container },
      props,
    }),
  ),
  bigValid: fc.record({ order: orderArb, props: propsArb, style: fc.constantFrom(...BIG_STYLES), seed: fc.integer() }).map(
    ({ order, props, style, seed }): Recipe => ({
      kind: 'valid+extras',
      order,
      props: { ...props, headers: { ...(props.headers ?? emptyHeaders()), present: true, big: { target: FRAME_MAX, style, seed } } },
    }),
  ),
  bigBad: fc
    .record({ order: orderArb, props: propsArb, style: fc.constantFrom<BigStyle>('entries', 'tiny-entries'), seed: fc.integer() })
    .map(
      ({ order, props, style, seed }): Recipe => ({
        kind: 'bad:wrong-fields',
        order,
        how: 'quantity-0',
        matchIdentity: true,
        props: { ...props, headers: { ...(props.headers ?? emptyHeaders()), present: true, big: { target: FRAME_MAX - 17, style, seed } } },
      }),
    ),
});

const streamArb = fc.record({
  messages: fc.array(recipeArb, { minLength: MESSAGES_PER_RUN, maxLength: MESSAGES_PER_RUN }),
  specials: specialsArb,
  positions: fc.array(fc.nat(), { minLength: 6, maxLength: 6 }),
});

type Stream = typeof streamArb extends fc.Arbitrary<infer T> ? T : never;

function emptyHeaders(): HeadersRecipe {
  return { present: true, entries: [], deep: null, big: null, preEncoded: false };
}

// ---------------------------------------------------------------------------------------------------------
// Building messages from recipes.

interface Outgoing {
  index: number;
  kind: Recipe['kind'];
  via: 'raw' | 'amqplib';
  body: Buffer;
  props: RawProperties;
  /** A valid order: must be processed exactly once. */
  order?: OrderPlaced;
  /** A bad message: the class its dead letter must have, and the error names it may have. */
  expectClass?: FailureClass;
  expectNames?: readonly string[];
  features: string[];
}

function orderEventOf(tag: string, recipe: OrderRecipe): OrderPlaced {
  const item = recipe.item === 'unknown' ? `unobtainium-${tag}` : recipe.item;
  const fields = {
    event_id: uuidOf(`${tag}:event`),
    order_id: uuidOf(`${tag}:order`),
    item,
    quantity: recipe.quantity,
    timestamp: new Date(Date.UTC(2024, 0, 1)).toISOString(),
  };
  const event = newEvent('OrderPlaced', { ...fields, user_id: recipe.user });
  return OrderPlaced.safeParse(event).success ? event : newEvent('OrderPlaced', { ...fields, user_id: `fuzz-user-${tag}` });
}

function orderJson(event: OrderPlaced, recipe: OrderRecipe): string {
  const body: Record<string, unknown> = recipe.extraField ? { note: { fuzz: true, list: [1, 'two', null] }, ...event } : { ...event };
  return recipe.pretty ? JSON.stringify(body, null, 2) : JSON.stringify(body);
}

function wrongFieldsBody(event: OrderPlaced, how: WrongFields): string {
  const o = event as unknown as Record<string, unknown>;
  const set = (key: string, value: unknown) => JSON.stringify({ ...o, [key]: value });
  const omit = (key: string) => JSON.stringify(Object.fromEntries(Object.entries(o).filter(([k]) => k !== key)));
  switch (how) {
    case 'quantity-0':
      return set('quantity', 0);
    case 'quantity-negative':
      return set('quantity', -3);
    case 'quantity-fraction':
      return set('quantity', 1.5);
    case 'quantity-text':
      return set('quantity', '3');
    case 'quantity-null':
      return set('quantity', null);
    case 'quantity-too-large':
      return set('quantity', 1_000_001);
    case 'quantity-infinite':
      return JSON.stringify(o).replace(/"quantity":\d+/, '"quantity":1e400');
    case 'quantity-duplicate-key':
      return JSON.stringify(o).replace(/}$/, ',"quantity":0}');
    case 'no-quantity':
      return omit('quantity');
    case 'event-id-not-uuid':
      return set('event_id', `not-a-uuid-${event.event_id}`);
    case 'event-id-number':
      return set('event_id', 42);
    case 'no-event-id':
      return omit('event_id');
    case 'order-id-not-uuid':
      return set('order_id', 'order-1');
    case 'no-order-id':
      return omit('order_id');
    case 'timestamp-text':
      return set('timestamp', 'yesterday');
    case 'timestamp-date-only':
      return set('timestamp', '2024-01-01');
    case 'timestamp-number':
      return set('timestamp', 1_700_000_000);
    case 'user-empty':
      return set('user_id', '');
    case 'user-blank':
      return set('user_id', '   ');
    case 'user-nul':
      return set('user_id', 'a\u0000b');
    case 'user-lone-surrogate':
      return set('user_id', '\ud800x');
    case 'user-too-long':
      return set('user_id', 'u'.repeat(201));
    case 'item-empty':
      return set('item', '');
    case 'item-nul':
      return set('item', 'wid\u0000get');
    case 'item-too-long':
      return set('item', 'i'.repeat(201));
    case 'event-type-other':
      return set('event_type', 'OrderShipped');
    case 'event-type-case':
      return set('event_type', 'orderplaced');
    case 'event-type-null':
      return set('event_type', null);
    case 'no-event-type':
      return omit('event_type');
    case 'event-type-inventory':
      return set('event_type', 'InventoryReserved');
    case 'array':
      return JSON.stringify([o]);
    case 'null':
      return 'null';
    case 'string':
      return '"OrderPlaced"';
    case 'number':
      return '42';
    case 'empty-object':
      return '{}';
    case 'wrapped':
      return JSON.stringify({ order: o });
  }
}

const INVALID_UTF8 = [[0xff], [0xfe], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]];

function brokenJsonBody(json: string, how: BrokenJson, seed: number): Buffer {
  const next = prng(seed);
  switch (how) {
    case 'truncated':
      return Buffer.from(json.slice(0, next() % json.length)); // a proper prefix of an object
    case 'invalid-utf8': {
      const at = next() % (json.length + 1);
      return Buffer.concat([
        Buffer.from(json.slice(0, at)),
        Buffer.from(INVALID_UTF8[next() % INVALID_UTF8.length]!),
        Buffer.from(json.slice(at)),
      ]);
    }
    case 'trailing-garbage':
      return Buffer.from(json + ['x', '}', ',', ']', '{}', 'null'][next() % 6]!);
    case 'single-quotes':
      return Buffer.from(json.replaceAll('"', "'"));
    case 'unquoted-keys':
      return Buffer.from(json.replace(/"(\w+)":/g, '$1:'));
    case 'nan':
      return Buffer.from(json.replace(/"quantity":\s*\d+/, '"quantity":NaN'));
    case 'comment':
      return Buffer.from(`/* order */${json}`);
    case 'trailing-comma':
      return Buffer.from(json.replace(/}\s*$/, ',}'));
    case 'utf16':
      return Buffer.from(json, 'utf16le');
    case 'concatenated':
      return Buffer.from(json + json);
  }
}

/** The header table a recipe describes, with its extra entries (deep nesting, unrepresentable values). */
function headerEntries(
  recipe: HeadersRecipe,
  extra: Array<readonly [ShortStr, FieldValue]>,
  features: string[],
): Array<readonly [ShortStr, FieldValue]> {
  const entries: Array<readonly [ShortStr, FieldValue]> = [];
  for (const [key, value] of [...recipe.entries, ...extra]) {
    // Sender-selected distribution: a top-level CC/BCC header reroutes the message (or is refused); not ours.
    const name = typeof key === 'string' ? key : key.toString('latin1');
    entries.push([name === 'CC' || name === 'BCC' ? `${name}-fuzz` : key, value]);
  }
  if (recipe.deep) {
    entries.push([`deep-${recipe.deep.depth}`, nested(recipe.deep.depth, recipe.deep.kind, { t: 'S', v: 'bottom' })]);
    features.push(`deep-${recipe.deep.depth === 64 ? '64' : 'under-64'}`);
  }
  if (entries.some(([, v]) => v.t === 'F' && Array.isArray(v.v) && (v.v as FieldEntries).some(([k]) => k === '!')))
    features.push('typed-looking');
  if (entries.some(([k]) => k === '__proto__')) features.push('proto-key');
  if (entries.some(([k]) => k === '')) features.push('empty-key');
  return entries;
}

/** Adds filler to `props.headers` so that the content header is `target` bytes (never more than frame-max). */
function fillHeaders(
  props: RawProperties,
  entries: Array<readonly [ShortStr, FieldValue]>,
  big: NonNullable<HeadersRecipe['big']>,
  features: string[],
): void {
  const next = prng(big.seed);
  props.headers = entries;
  let room = big.target - contentHeaderBytes(props);
  if (room < 64) return;
  features.push(`big-table-${big.style}`);
  if (big.style === 'entries') {
    let n = 0;
    while (room > 80) {
      const size = 4 + (next() % 57);
      const key = `e${String(n++).padStart(5, '0')}`;
      entries.push([key, { t: 'S', v: randomBytes(next(), size).toString('base64').slice(0, size) }]);
      room -= 1 + key.length + 1 + 4 + size;
    }
  } else if (big.style === 'tiny-entries') {
    // Tens of thousands of entries of 5 or 6 bytes: distinct 3-character keys, void, boolean or byte values.
    for (let n = 0; room > 16; n++) {
      const value: FieldValue = [{ t: 'V' } as const, { t: 't', v: true } as const, { t: 'b', v: n % 100 } as const][n % 3]!;
      entries.push([n.toString(36).padStart(3, '0'), value]);
      room -= value.t === 'V' ? 5 : 6;
    }
  } else if (big.style === 'ints') {
    // key "ints" (1 + 4), tag and length (5), then 2 bytes an item; an odd byte goes to one 3-byte short.
    const payload = room - 10;
    const items: FieldValue[] = Array.from({ length: Math.floor(payload / 2) }, () => ({ t: 'b', v: (next() % 256) - 128 }));
    if (payload % 2 === 1) items[0] = { t: 's', v: 1_000 };
    entries.push(['ints', { t: 'A', v: items }]);
    room = big.target - contentHeaderBytes(props);
  }
  if (room >= 10) {
    const size = room - 10; // key "fill" (1 + 4), tag (1), length (4)
    entries.push(['fill', big.style === 'bytes' ? { t: 'x', v: randomBytes(next(), size) } : { t: 'S', v: 'f'.repeat(size) }]);
  }
  if (contentHeaderBytes(props) === FRAME_MAX) features.push('content-header-131072');
}

function applyProps(p: Props, base: RawProperties, extra: Array<readonly [ShortStr, FieldValue]>, features: string[]): RawProperties {
  const props: RawProperties = { ...base };
  const assign = <K extends keyof RawProperties>(key: K, value: RawProperties[K] | undefined) => {
    if (value !== undefined && !(key in base)) props[key] = value;
  };
  assign('contentType', p.contentType);
  assign('contentEncoding', p.contentEncoding);
  assign('deliveryMode', p.deliveryMode);
  assign('priority', p.priority);
  assign('correlationId', p.correlationId);
  assign('replyTo', p.replyTo);
  assign('expiration', p.expiration);
  assign('messageId', p.messageId);
  assign('timestamp', p.timestamp);
  assign('type', p.type);
  assign('userId', p.userId);
  assign('appId', p.appId);
  assign('clusterId', p.clusterId);
  for (const key of ['contentType', 'contentEncoding', 'correlationId', 'replyTo', 'messageId', 'type', 'appId', 'clusterId'] as const) {
    const value = props[key];
    if (Buffer.isBuffer(value) && !Buffer.from(value.toString('utf8')).equals(value)) features.push('invalid-utf8-shortstr');
    if (value !== undefined && shortLength(value) === 256) features.push('255-byte-shortstr');
  }
  const h = p.headers;
  if (h?.present || extra.length) {
    const recipe = h ?? emptyHeaders();
    const entries = headerEntries(recipe, extra, features);
    if (recipe.big) fillHeaders(props, entries, recipe.big, features);
    else props.headers = entries;
    if (recipe.preEncoded && !recipe.big) props.headers = encodeTable(entries).subarray(4);
  }
  // Whatever was generated must fit one frame: drop the generated entries (never the extra ones) if not.
  if (contentHeaderBytes(props) > FRAME_MAX && Array.isArray(props.headers)) {
    props.headers = headerEntries({ ...emptyHeaders() }, extra, []);
    features.push('headers-trimmed-to-fit');
  }
  return props;
}

function build(recipe: Recipe, run: number, index: number): Outgoing {
  const tag = `${run}:${index}`;
  const features: string[] = [];
  const out = (o: Omit<Outgoing, 'index' | 'kind' | 'features'>): Outgoing => ({ index, kind: recipe.kind, features, ...o });
  const identity = (event: OrderPlaced): RawProperties => ({ messageId: event.event_id, type: 'OrderPlaced' });
  switch (recipe.kind) {
    case 'valid': {
      const order = orderEventOf(tag, recipe.order);
      return out({ via: 'amqplib', body: Buffer.from(orderJson(order, recipe.order)), props: {}, order });
    }
    case 'valid-large': {
      const order = orderEventOf(tag, recipe.order);
      features.push('large-body');
      return out({ via: 'amqplib', body: Buffer.from(JSON.stringify({ ...order, pad: 'p'.repeat(recipe.pad) })), props: {}, order });
    }
    case 'valid+extras': {
      const order = orderEventOf(tag, recipe.order);
      const props = applyProps(recipe.props, { ...identity(order), contentType: 'application/json', deliveryMode: 2 }, [], features);
      return out({ via: 'raw', body: Buffer.from(orderJson(order, recipe.order)), props, order });
    }
    case 'bad:random-bytes': {
      const bytes = randomBytes(recipe.seed, recipe.length);
      const body = recipe.jsonish ? Buffer.concat([Buffer.from('{"event_type":"OrderPlaced",'), bytes]) : bytes;
      if (body.length === 0) features.push('empty-body');
      const props = applyProps(recipe.props, {}, [], features);
      return out({
        via: 'raw',
        body,
        props,
        expectClass: 'permanent',
        expectNames: ['MalformedMessageError', 'UnknownEventTypeError', 'SchemaViolationError'],
      });
    }
    case 'bad:broken-json': {
      const order = orderEventOf(tag, recipe.order);
      const body = brokenJsonBody(orderJson(order, recipe.order), recipe.how, recipe.seed);
      features.push(recipe.how);
      const props = applyProps(recipe.props, recipe.matchIdentity ? identity(order) : {}, [], features);
      return out({ via: 'raw', body, props, expectClass: 'permanent', expectNames: ['MalformedMessageError'] });
    }
    case 'bad:wrong-fields': {
      const order = orderEventOf(tag, recipe.order);
      features.push(recipe.how);
      const props = applyProps(recipe.props, recipe.matchIdentity ? identity(order) : {}, [], features);
      return out({
        via: 'raw',
        body: Buffer.from(wrongFieldsBody(order, recipe.how)),
        props,
        expectClass: 'permanent',
        expectNames: ['SchemaViolationError', 'UnknownEventTypeError'],
      });
    }
    case 'bad:contract': {
      const order = orderEventOf(tag, recipe.order);
      const base: RawProperties = { ...identity(order), contentType: 'application/json', deliveryMode: 2 };
      switch (recipe.how) {
        case 'other-message-id':
          base.messageId = uuidOf(`${tag}:other`);
          break;
        case 'no-message-id':
          delete base.messageId;
          break;
        case 'message-id-invalid-utf8':
          base.messageId = Buffer.concat([Buffer.from(order.event_id), Buffer.from([0xff])]);
          break;
        case 'message-id-uppercase':
          base.messageId = order.event_id.toUpperCase();
          break;
        case 'message-id-255':
          base.messageId = order.event_id.padEnd(255, '0');
          break;
        case 'no-type':
          delete base.type;
          break;
        case 'type-case':
          base.type = 'orderPlaced';
          break;
        case 'type-invalid-utf8':
          base.type = Buffer.concat([Buffer.from('OrderPlaced'), Buffer.from([0xc3])]);
          break;
        case 'type-other-event':
          base.type = 'InventoryReserved';
          break;
      }
      features.push(recipe.how);
      // An absent messageId or type stays absent: applyProps only fills in properties the kind did not set.
      const props = applyProps({ ...recipe.props, messageId: undefined, type: undefined }, base, [], features);
      return out({
        via: 'raw',
        body: Buffer.from(orderJson(order, recipe.order)),
        props,
        expectClass: 'permanent',
        expectNames: ['ContractViolationError', 'MissingMessageIdError'],
      });
    }
    case 'bad:unrepresentable': {
      const order = orderEventOf(tag, recipe.order);
      const base: RawProperties = { ...identity(order), contentType: 'application/json', deliveryMode: 2 };
      const extra: Array<readonly [ShortStr, FieldValue]> = [];
      const f = recipe.feature;
      if (f.kind === 'timestamp') base.timestamp = f.value;
      if (f.kind === 'T-header') extra.push(['when', nested(f.wrap, 'A', { t: 'T', v: f.value })]);
      if (f.kind === 'deep') extra.push(['deep', nested(f.depth, f.container, { t: 'I', v: 1 })]);
      if (f.kind === 'typed-timestamp')
        extra.push([
          'when',
          {
            t: 'F',
            v: [
              ['!', { t: 'S', v: 'timestamp' }],
              ['value', { t: 'l', v: f.value }],
            ],
          },
        ]);
      features.push(f.kind === 'deep' ? `unrepresentable-deep-${f.depth >= 10_000 ? '10000' : 'over-64'}` : `unrepresentable-${f.kind}`);
      if (f.kind === 'timestamp' && f.value === 10n ** 13n) features.push('timestamp-1e13');
      const props = applyProps(recipe.props, base, extra, features);
      return out({
        via: 'raw',
        body: Buffer.from(orderJson(order, recipe.order)),
        props,
        expectClass: 'unrepresentable',
        expectNames: ['UnrepresentableMessageError'],
      });
    }
    case 'refused': {
      const order = orderEventOf(tag, recipe.order);
      const r = recipe.refusal;
      const base: RawProperties =
        r.what === 'delivery-mode'
          ? { deliveryMode: r.deliveryMode }
          : r.what === 'expiration'
            ? { expiration: r.expiration }
            : r.what === 'user-id'
              ? { userId: r.userId }
              : {};
      const extra: Array<readonly [ShortStr, FieldValue]> = r.what === 'header' ? [['refused', { t: 'raw', v: r.value }]] : [];
      features.push(`refusal-${r.what}`);
      const props = applyProps(recipe.props, base, extra, features);
      return out({ via: 'raw', body: brokenJsonBody(orderJson(order, recipe.order), 'truncated', index), props });
    }
    case 'bad:large': {
      // Looks like an order that never ends: malformed, seen by the function (base64 still fits 6 MB).
      const head = Buffer.from(`{"event_type":"OrderPlaced","event_id":"${uuidOf(`${tag}:large`)}","note":"`);
      const body = Buffer.concat([head, randomBytes(recipe.seed, recipe.size - head.length)]);
      features.push('large-body');
      const props = applyProps({ ...recipe.props, headers: undefined }, {}, [], features);
      return out({ via: 'raw', body, props, expectClass: 'permanent', expectNames: ['MalformedMessageError'] });
    }
    case 'bad:too-large': {
      const body =
        recipe.fill === 'random'
          ? randomBytes(recipe.seed, recipe.size)
          : Buffer.concat([Buffer.from(`{"event_id":"${uuidOf(`${tag}:huge`)}","pad":"`), Buffer.alloc(recipe.size, 0x61)]);
      features.push('too-large-body');
      const props = applyProps({ ...recipe.props, headers: undefined }, {}, [], features);
      return out({ via: 'raw', body, props, expectClass: 'payload-too-large', expectNames: ['PayloadTooLargeError'] });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Describing a message compactly, for a failure and the report.

function brief(value: unknown, depth = 0): unknown {
  if (Buffer.isBuffer(value)) return `hex:${value.subarray(0, 24).toString('hex')}${value.length > 24 ? `…(${value.length} bytes)` : ''}`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return value.length > 60 ? `${value.slice(0, 60)}…(${value.length} chars)` : value;
  if (Array.isArray(value)) {
    if (depth > 4) return `[… ${value.length}]`;
    const shown = value.slice(0, 6).map((v) => brief(v, depth + 1));
    return value.length > 6 ? [...shown, `… ${value.length - 6} more`] : shown;
  }
  if (value && typeof value === 'object') {
    if (depth > 4) return '{…}';
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, brief(v, depth + 1)]));
  }
  return value;
}

function describeOutgoing(m: Outgoing): Record<string, unknown> {
  return {
    index: m.index,
    kind: m.kind,
    features: m.features,
    properties: brief(m.props),
    body: { bytes: m.body.length, head: brief(m.body.subarray(0, 80)) },
    ...(m.order ? { orderId: m.order.order_id } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------

const sha = (b: Buffer) => `${b.length}:${createHash('sha256').update(b).digest('hex')}`;
const headerText = (value: unknown) => (typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : undefined);

interface RunReport {
  run: number;
  published: Record<string, number>;
  refused: Array<{ index: number; kind: string; reason: string; message?: unknown }>;
  deadLetters: { byClass: Record<string, number>; byName: Record<string, number> };
  processed: { reserved: number; failed: number };
  features: Record<string, number>;
}

describe('broker fuzz: arbitrary AMQP messages among valid orders, through the real worker', () => {
  let vhost: TestVhost;
  let amqp: VhostAmqp;
  let dir: string;
  let store: Store;
  let worker: WorkerProcess;
  const reports: RunReport[] = [];
  const failures: unknown[] = [];

  /** Everything valid so far, across runs. */
  const validSoFar: OrderPlaced[] = [];
  let deadSoFar = 0;

  const alive = () => {
    if (worker.child.exitCode !== null || worker.child.signalCode !== null) {
      throw new Error(`the worker exited (${worker.child.exitCode ?? worker.child.signalCode}):\n${worker.output()}`);
    }
  };

  beforeAll(async () => {
    vhost = await createVhost('fault-fuzz');
    amqp = await openAmqp(vhost.url);
    dir = await mkdtemp(join(tmpdir(), 'fault-fuzz-'));
    const sqlitePath = join(dir, 'app.sqlite');
    store = await openStore({ sqlitePath });
    await store.stock.upsert({ widget: WIDGET_STOCK, doohickey: 0 });
    await declareTopology(amqp.connection, { deliveryLimit: DELIVERY_LIMIT, retryDelaysMs: RETRY_DELAYS_MS });
    await amqp.channel.assertQueue(OUTCOMES, { durable: true });
    await amqp.channel.bindQueue(OUTCOMES, 'inventory', 'inventory.*');
    worker = spawnWorker(
      {
        AMQP_URL: vhost.url,
        AMQP_URLS: '',
        DATABASE_URL: '',
        SQLITE_PATH: sqlitePath,
        RETRY_DELAYS_MS: RETRY_DELAYS_MS.join(','),
        DELIVERY_LIMIT: String(DELIVERY_LIMIT),
        OUTBOX_RELAY_INTERVAL_MS: '200',
        WEBHOOK_URL: '',
        SEED_CATALOG: 'true',
        LOG_LEVEL: process.env.BROKER_FUZZ_LOG_LEVEL ?? 'warn',
      },
      { args: ['--functions', 'inventoryReservation'], count: WATCH },
    );
    // Everything it prints, for a failure's post-mortem (output() keeps only the last 64 KiB).
    mkdirSync(OUTPUT_DIR, { recursive: true });
    const log = createWriteStream(WORKER_LOG);
    worker.child.stdout!.pipe(log);
    worker.child.stderr!.pipe(log);
  }, 60_000);

  afterAll(async () => {
    if (worker) await killAll([worker]);
    await store?.close();
    await amqp?.close();
    await vhost?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  /**
   * Ready and unacknowledged messages of a queue, from the broker itself (a passive declare shows only ready ones),
   * through rabbitmqctl or the management API: as of the queue's last metrics update, every 5 s by default.
   */
  async function queueTotals(queue: string): Promise<{ ready: number; unacked: number }> {
    return (await brokerControl()).queueTotals(vhost.name, queue);
  }

  async function drain(queue: string): Promise<GetMessage[]> {
    const taken: GetMessage[] = [];
    for (;;) {
      const message = await amqp.channel.get(queue, { noAck: true });
      if (!message) return taken;
      taken.push(message);
    }
  }

  /** Publishes the stream in order; returns what the broker took and what it refused (and why). */
  async function publish(stream: Outgoing[]): Promise<{ taken: Outgoing[]; refused: RunReport['refused'] }> {
    let raw: RawPublisher = await openRawPublisher(vhost.url);
    const taken: Outgoing[] = [];
    const refused: RunReport['refused'] = [];
    try {
      for (const m of stream) {
        if (m.via === 'amqplib') {
          const properties = eventProperties(m.order!, 'fuzz-intake', `corr-${m.index}`);
          amqp.channel.publish('orders', 'order.placed', m.body, { ...properties, mandatory: true });
          taken.push(m);
          continue;
        }
        try {
          const outcome = await raw.publish('orders', 'order.placed', m.body, m.props, { mandatory: true });
          if (outcome === 'ack') taken.push(m);
          else refused.push({ index: m.index, kind: m.kind, reason: 'nack' });
        } catch (error) {
          if (!(error instanceof BrokerCloseError)) throw error;
          refused.push({
            index: m.index,
            kind: m.kind,
            reason: `${error.scope} ${error.code} ${error.replyText.slice(0, 120)}`,
            message: describeOutgoing(m),
          });
          await raw.close();
          raw = await openRawPublisher(vhost.url);
        }
        expect(raw.returns, 'every message is routed to order-events').toEqual([]);
      }
      await amqp.channel.waitForConfirms();
    } finally {
      await raw.close();
    }
    return { taken, refused };
  }

  async function oneStream(recipes: Stream, runNo: number): Promise<void> {
    const list = [...recipes.messages];
    const specials = [
      recipes.specials.tooLarge,
      recipes.specials.large,
      recipes.specials.validLarge,
      recipes.specials.deep10k,
      recipes.specials.bigValid,
      recipes.specials.bigBad,
    ];
    for (const [i, special] of specials.entries()) list.splice(recipes.positions[i]! % (list.length + 1), 0, special);
    const stream = list.map((recipe, index) => build(recipe, runNo, index));

    // Null-prototype counters: a key such as "__proto__" (a dead letter's x-error-name could be anything) counts like any other.
    const counter = (): Record<string, number> => Object.create(null) as Record<string, number>;
    const report: RunReport = {
      run: runNo,
      published: counter(),
      refused: [],
      deadLetters: { byClass: counter(), byName: counter() },
      processed: { reserved: 0, failed: 0 },
      features: counter(),
    };
    reports.push(report);
    for (const m of stream) {
      report.published[m.kind] = (report.published[m.kind] ?? 0) + 1;
      for (const f of m.features) report.features[f] = (report.features[f] ?? 0) + 1;
    }

    alive();
    const { taken, refused } = await publish(stream);
    report.refused = refused;
    const valid = taken.filter((m) => m.order);
    const bad = taken.filter((m) => !m.order);
    validSoFar.push(...valid.map((m) => m.order!));
    deadSoFar += bad.length;
    const validIds = new Set(validSoFar.map((o) => o.event_id));

    const claims = async () =>
      (await store.db.selectFrom('inbox').select('message_id').where('consumer', '=', CONSUMER).execute()).map((r) => r.message_id);
    const diagnose = async () =>
      JSON.stringify({
        claims: (await claims()).length,
        validSoFar: validSoFar.length,
        dlq: await queueDepth(amqp.connection, DLQ),
        deadSoFar,
        orderEvents: await queueDepth(amqp.connection, QUEUE),
        workerLog: worker.counts,
      });
    const settled = async (what: string, predicate: () => Promise<boolean>, timeoutMs: number) => {
      try {
        await waitFor(
          async () => {
            alive();
            return predicate();
          },
          what,
          timeoutMs,
        );
      } catch (error) {
        throw new Error(`${(error as Error).message}; state ${await diagnose()}\nworker output (tail):\n${worker.output().slice(-6_000)}`);
      }
    };

    // Drained: every valid order claimed, every bad message dead-lettered, nothing ready in the work queue.
    await settled(
      `run ${runNo}: ${valid.length} valid orders processed and ${bad.length} bad messages dead-lettered`,
      async () => {
        const claimed = new Set(await claims());
        return (
          validSoFar.every((o) => claimed.has(o.event_id)) &&
          (await queueDepth(amqp.connection, DLQ)) >= bad.length &&
          (await queueDepth(amqp.connection, QUEUE)) === 0
        );
      },
      90_000,
    );
    // Every outcome committed is published (the relay would otherwise send it later) and has arrived.
    const runOrders = new Set(valid.map((m) => m.order!.order_id));
    const outboxRows = async () =>
      (
        await store.db.selectFrom('outbox').select(['event_id', 'routing_key', 'body', 'published_at', 'last_error', 'attempts']).execute()
      ).map((row) => ({
        ...row,
        order: (JSON.parse(row.body) as { order_id: string }).order_id,
      }));
    try {
      await settled(
        `run ${runNo}: the outcome of each of its ${valid.length} orders published`,
        async () =>
          (await outboxRows()).every((row) => row.published_at !== null) && (await queueDepth(amqp.connection, OUTCOMES)) >= valid.length,
        30_000,
      );
    } catch (error) {
      const stuck = (await outboxRows()).filter((row) => row.published_at === null);
      const orders = new Map(validSoFar.map((o) => [o.order_id, o]));
      const stuckMessages = stuck.map((row) => {
        const m = valid.find((v) => v.order!.order_id === row.order);
        return {
          eventId: row.event_id,
          lastError: row.last_error,
          attempts: row.attempts,
          message: m ? describeOutgoing(m) : brief(orders.get(row.order)),
        };
      });
      failures.push({ run: runNo, stuckOutbox: stuckMessages });
      throw new Error(
        `${(error as Error).message}\nunpublished outbox rows: ${JSON.stringify(stuckMessages.slice(0, 5), null, 1).slice(0, 4_000)}`,
      );
    }
    // Nothing left unacknowledged in the work queue (a passive declare counts ready messages only).
    // Up to 12 s: more than two metrics updates, so a count of messages already settled has time to refresh.
    let totals = await queueTotals(QUEUE);
    for (const waitUntil = Date.now() + 12_000; totals.ready + totals.unacked > 0 && Date.now() < waitUntil; ) {
      await new Promise((done) => setTimeout(done, 250));
      totals = await queueTotals(QUEUE);
    }

    const problems: string[] = [];
    const problem = (text: string, m?: Outgoing) => {
      problems.push(m ? `${text}: ${JSON.stringify(describeOutgoing(m)).slice(0, 1_500)}` : text);
      if (m) failures.push({ run: runNo, problem: text, message: describeOutgoing(m) });
    };
    if (totals.ready + totals.unacked > 0)
      problem(`${QUEUE} still holds ${totals.ready} ready and ${totals.unacked} unacknowledged messages`);

    // The DLQ holds exactly the bad messages, once each, body byte for byte, with the reason.
    const dead = await drain(DLQ);
    const expectedByBody = new Map<string, Outgoing[]>();
    for (const m of bad) expectedByBody.set(sha(m.body), [...(expectedByBody.get(sha(m.body)) ?? []), m]);
    const validBodies = new Map(valid.map((m) => [sha(m.body), m]));
    for (const message of dead) {
      const headers = (message.properties.headers ?? {}) as Record<string, unknown>;
      const errorClass = headerText(headers['x-error-class']);
      const errorName = headerText(headers['x-error-name']);
      report.deadLetters.byClass[errorClass ?? '(none)'] = (report.deadLetters.byClass[errorClass ?? '(none)'] ?? 0) + 1;
      report.deadLetters.byName[errorName ?? '(none)'] = (report.deadLetters.byName[errorName ?? '(none)'] ?? 0) + 1;
      const key = sha(message.content);
      const candidates = expectedByBody.get(key) ?? [];
      const at = Math.max(
        0,
        candidates.findIndex((m) => m.expectClass === errorClass && decoded(m.props.messageId) === message.properties.messageId),
      );
      const m = candidates.splice(at, 1)[0];
      const found = `class ${String(errorClass)}, name ${String(errorName)}, x-death ${String(JSON.stringify(brief(headers['x-death']))).slice(0, 300)}, message ${JSON.stringify(headerText(headers['x-error-message'])?.slice(0, 300))}`;
      if (!m) {
        const v = validBodies.get(key);
        problem(
          v
            ? `a valid order was dead-lettered (${found})`
            : `a dead letter matches no bad message published in this run (${message.content.length} bytes, ${found})`,
          v,
        );
        continue;
      }
      if (!errorClass || !(FAILURE_CLASSES as readonly string[]).includes(errorClass))
        problem(`dead letter without a known x-error-class (${found})`, m);
      else if (!errorName) problem(`dead letter without x-error-name (${found})`, m);
      else if (!headerText(headers['x-error-message'])) problem(`dead letter without x-error-message (${found})`, m);
      else if (m.expectClass && errorClass !== m.expectClass)
        problem(`dead-lettered as ${errorClass}, expected ${m.expectClass} (${found})`, m);
      else if (m.expectNames && !m.expectNames.includes(errorName))
        problem(`dead-lettered as ${errorName}, expected one of ${m.expectNames.join('/')} (${found})`, m);
      if (headerText(headers['x-original-queue']) !== QUEUE)
        problem(`x-original-queue ${String(headerText(headers['x-original-queue']))} (${found})`, m);
    }
    for (const left of expectedByBody.values()) for (const m of left) problem('bad message not in the DLQ', m);

    // Exactly one outcome per valid order of this run, the one its item calls for.
    const outcomes = await drain(OUTCOMES);
    const byOrder = new Map<string, Array<{ event_type: string; reason?: string }>>();
    for (const message of outcomes) {
      const event = JSON.parse(message.content.toString()) as { order_id: string; event_type: string; reason?: string };
      byOrder.set(event.order_id, [...(byOrder.get(event.order_id) ?? []), event]);
      if (event.event_type === 'InventoryReserved') report.processed.reserved++;
      else report.processed.failed++;
    }
    for (const m of valid) {
      const got = byOrder.get(m.order!.order_id) ?? [];
      const expected = m.order!.item === 'widget' ? 'InventoryReserved' : 'InventoryFailed';
      if (got.length !== 1) problem(`${got.length} outcome events for a valid order`, m);
      else if (got[0]!.event_type !== expected) problem(`outcome ${got[0]!.event_type} (${got[0]!.reason}), expected ${expected}`, m);
    }
    for (const order of byOrder.keys())
      if (!runOrders.has(order)) problem(`an outcome event for order ${order}, not a valid order of this run`);

    // The store: one claim per valid order and none for anything else; one outbox row each; stock moved once.
    const claimed = await claims();
    if (claimed.length !== validSoFar.length) problem(`${claimed.length} inbox claims for ${validSoFar.length} valid orders so far`);
    for (const id of claimed) if (!validIds.has(id)) problem(`inbox claim ${id} is no valid order's`);
    const rows = await outboxRows();
    const rowsByOrder = new Map<string, number>();
    for (const row of rows) rowsByOrder.set(row.order, (rowsByOrder.get(row.order) ?? 0) + 1);
    for (const o of validSoFar)
      if (rowsByOrder.get(o.order_id) !== 1) problem(`${rowsByOrder.get(o.order_id) ?? 0} outbox rows for order ${o.order_id}`);
    if (rows.length !== validSoFar.length) problem(`${rows.length} outbox rows for ${validSoFar.length} valid orders so far`);
    const widgetQuantity = validSoFar.filter((o) => o.item === 'widget').reduce((sum, o) => sum + o.quantity, 0);
    const widget = await store.stock.get('widget');
    if (widget?.reserved !== widgetQuantity || widget.available !== WIDGET_STOCK - widgetQuantity) {
      problem(
        `widget stock ${widget?.available} available / ${widget?.reserved} reserved, expected ${WIDGET_STOCK - widgetQuantity} / ${widgetQuantity}`,
      );
    }

    // Nothing anywhere else: retries done, nothing parked.
    for (const queue of [...RETRY_DELAYS_MS.map(retryQueueName), PARKING_LOT_QUEUE]) {
      const depth = await queueDepth(amqp.connection, queue);
      if (depth !== 0) problem(`${queue} holds ${depth} messages`);
    }
    alive();
    if (problems.length) {
      throw new Error(
        `run ${runNo}: ${problems.length} problem(s):\n${problems.slice(0, 12).join('\n')}\nworker output (tail):\n${worker.output().slice(-4_000)}`,
      );
    }
  }

  it('keeps every invariant for every generated stream', async () => {
    const started = performance.now();
    let runNo = 0;
    let failure: unknown;
    try {
      await fc.assert(
        fc.asyncProperty(streamArb, async (recipes) => {
          await oneStream(recipes, ++runNo);
        }),
        {
          seed: SEED,
          numRuns: RUNS,
          endOnFailure: true, // runs share the broker and the store: no shrinking, the failure is reported as it is
          reporter: (details) => {
            if (!details.failed) return;
            const error = details.errorInstance;
            // The stack only for an error of this test's own making (a TypeError...), not for the invariants'.
            const cause = error instanceof Error ? (error.constructor === Error ? error.message : String(error.stack)) : String(error);
            throw new Error(
              `broker fuzz failed with seed ${details.seed} (BROKER_FUZZ_SEED=${details.seed}), run ${details.numRuns} of ${RUNS}: ${cause}`,
            );
          },
        },
      );
    } catch (error) {
      failure = error;
    }
    const durationMs = Math.round(performance.now() - started);
    const sum = (pick: (r: RunReport) => Record<string, number>) =>
      reports.reduce<Record<string, number>>(
        (acc, r) => {
          for (const [k, v] of Object.entries(pick(r))) acc[k] = (acc[k] ?? 0) + v;
          return acc;
        },
        Object.create(null) as Record<string, number>,
      );
    const summary = {
      seed: SEED,
      runs: reports.length,
      messagesPerRun: MESSAGES_PER_RUN,
      published: sum((r) => r.published),
      refusedByBroker: sum((r) =>
        Object.fromEntries(r.refused.map((x) => [x.reason, r.refused.filter((y) => y.reason === x.reason).length])),
      ),
      deadLettersByClass: sum((r) => r.deadLetters.byClass),
      deadLettersByName: sum((r) => r.deadLetters.byName),
      processed: sum((r) => r.processed),
      features: sum((r) => r.features),
      workerLogLines: worker.counts,
      durationMs,
      passed: failure === undefined,
    };
    mkdirSync(OUTPUT_DIR, { recursive: true });
    writeFileSync(REPORT, `${JSON.stringify({ ...summary, perRun: reports, failures: failures.slice(0, 50) }, null, 2)}\n`);
    const total = Object.values(summary.published).reduce((a, b) => a + b, 0);
    console.log(
      `[fault] broker fuzz seed ${SEED}: ${summary.runs} run(s), ${total} messages (${JSON.stringify(summary.published)}); ` +
        `refused by the broker ${JSON.stringify(summary.refusedByBroker)}; dead letters by class ${JSON.stringify(summary.deadLettersByClass)}; ` +
        `processed ${JSON.stringify(summary.processed)}; ${durationMs} ms; report ${REPORT}`,
    );
    if (failure) throw failure;
    expect(summary.runs).toBe(RUNS);
  }, 170_000);
});
