/**
 * Copies of received messages (retries, dead letters, redrives) must be publishable whatever the original
 * carried: what amqplib could not encode is changed, and every change is noted on the copy.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { FAILURE_HEADERS, failureHeaders } from 'middy-rabbitmq';
import { MAX_HEADERS_BYTES, republishProperties, TRUNCATED_HEADERS_HEADER, tableBytes, toShortstr } from 'middy-rabbitmq/amqp';
import { describe, expect, it } from 'vitest';
import { eventProperties, newEvent } from '../../shared/events';

// amqplib's own encoder for the properties frame: what Publisher.publish would run into. Its package exports
// hide lib/, so it is loaded by path.
const require = createRequire(import.meta.url);
const { encodeProperties, BasicProperties } = require(join(dirname(require.resolve('amqplib')), 'lib', 'defs.js')) as {
  encodeProperties(id: number, channel: number, size: number, fields: object): Buffer;
  BasicProperties: number;
};
const encodes = (options: object) => encodeProperties(BasicProperties, 1, 0, { deliveryMode: 2, ...options }).length > 0;

describe('republishProperties', () => {
  it('keeps ordinary headers and properties as they are, persistent, userId moved to a header', () => {
    const copy = republishProperties({ messageId: 'm', type: 'T', userId: 'guest', timestamp: 5 }, { a: 'b', n: 3, 'x-delivery-count': 2 });
    expect(copy).toMatchObject({ messageId: 'm', type: 'T', timestamp: 5, persistent: true });
    expect(copy.headers).toEqual({ a: 'b', n: 3, 'x-original-user-id': 'guest' });
    expect(encodes(copy)).toBe(true);
  });

  it('cuts a header too large for amqplib (70,000 characters) and says so, keeping the small ones', () => {
    expect(() => encodes({ headers: { big: 'x'.repeat(70_000) } })).toThrow(RangeError);
    const copy = republishProperties({ messageId: 'm' }, { big: 'x'.repeat(70_000), 'x-error-class': 'permanent' });
    expect(encodes(copy)).toBe(true);
    expect(copy.headers!['x-error-class']).toBe('permanent');
    expect(Buffer.byteLength(copy.headers!.big as string)).toBeLessThanOrEqual(1024 + 3);
    expect(copy.headers![TRUNCATED_HEADERS_HEADER]).toBe('big cut to 1024 bytes from 70000');
  });

  it('drops whole entries, largest first, when many medium ones are still too much', () => {
    const headers = Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`h${String(i).padStart(3, '0')}`, 'y'.repeat(1000)]));
    const copy = republishProperties({}, headers);
    expect(tableBytes(copy.headers!)).toBeLessThanOrEqual(MAX_HEADERS_BYTES + 2_100);
    expect(encodes(copy)).toBe(true);
    expect(String(copy.headers![TRUNCATED_HEADERS_HEADER])).toMatch(/dropped/);
  });

  it('makes encodable what amqplib decodes but cannot encode back', () => {
    const headers = {
      nan: Number.NaN,
      minusInfinity: Number.NEGATIVE_INFINITY,
      huge: -(2 ** 70),
      when: { '!': 'timestamp', value: 2 ** 64 },
      bang: { '!': 'table-key', other: 1 },
      ['k'.repeat(300)]: 1,
    };
    expect(() => encodes({ headers })).toThrow();
    const copy = republishProperties({ messageId: 'é'.repeat(200), timestamp: 2 ** 64 }, headers);
    expect(encodes(copy)).toBe(true);
    expect(Buffer.byteLength(copy.messageId!)).toBeLessThanOrEqual(255);
    expect(copy.timestamp).toBeUndefined();
    const notes = String(copy.headers![TRUNCATED_HEADERS_HEADER]);
    for (const said of ['messageId cut', 'timestamp 18446744073709552000 dropped', 'when: timestamp', 'renamed'])
      expect(notes).toContain(said);
  });

  // Found by test/fault/broker-fuzz: copies that amqplib encodes but the broker refuses, or amqplib refuses.
  it('writes NaN and \u00b1Infinity as text: RabbitMQ refuses a non-finite double by closing the whole connection (541)', () => {
    // {'!': 'timestamp', value: 'soon'} is a table any client may send; read as a timestamp it was NaN, sent as
    // a NaN double, and the broker closed the worker's connection, consumers and all, on every redelivery.
    const copy = republishProperties(
      {},
      { nan: Number.NaN, inf: Number.POSITIVE_INFINITY, minusInf: Number.NEGATIVE_INFINITY, soon: { '!': 'timestamp', value: 'soon' } },
    );
    expect(copy.headers).toMatchObject({ nan: 'NaN', inf: 'Infinity', minusInf: '-Infinity', soon: { '(!)': 'timestamp', value: 'soon' } });
    expect(encodes(copy)).toBe(true);
    const numbers: number[] = [];
    const walk = (value: unknown): void => {
      if (typeof value === 'number') numbers.push(value);
      else if (value && typeof value === 'object') Object.values(value).forEach(walk);
    };
    walk(copy.headers);
    expect(numbers.every(Number.isFinite)).toBe(true);
    expect(String(copy.headers![TRUNCATED_HEADERS_HEADER])).toContain('nan: NaN replaced by its text');
  });

  it('passes on only real typed values: a "!" decimal that is not {places, digits} is a table, which amqplib can encode', () => {
    // amqplib's encoder threw on these ("Decimal value must be..."): the trigger requeued the message for ever.
    for (const value of [2.8e-228, 'x', { places: 2, digits: 'x' }, { places: -1, digits: 5 }, { places: 2 }]) {
      const copy = republishProperties({}, { d: { '!': 'decimal', value } });
      expect(encodes(copy)).toBe(true);
      expect(copy.headers!.d).toEqual({ '(!)': 'decimal', value });
    }
    const real = { '!': 'decimal', value: { places: 2, digits: 123 } };
    expect(republishProperties({}, { d: real }).headers!.d).toEqual(real);
  });

  it('drops the original\u2019s entries before its own failure headers, whatever their sizes', () => {
    // 4,000 entries of 9..45 bytes: x-error-message (longer) was dropped first, x-error-name (25) could be.
    const headers: Record<string, unknown> = {};
    for (let i = 0; i < 4_000; i++) headers[`e${String(i).padStart(5, '0')}`] = 'v'.repeat(4 + ((i * 7919) % 57));
    const failure = failureHeaders({
      errorClass: 'permanent',
      name: 'SchemaViolationError',
      message: 'Schema violation: quantity: Too small: expected number to be >0',
      attempts: 1,
      queue: 'q',
    });
    const copy = republishProperties({}, { ...headers, ...failure, 'retry-delay-ms': 100, 'x-attempt': 2 });
    expect(encodes(copy)).toBe(true);
    expect(copy.headers).toMatchObject({ ...failure, 'retry-delay-ms': 100, 'x-attempt': 2 });
    for (const name of Object.values(FAILURE_HEADERS))
      expect(String(copy.headers![TRUNCATED_HEADERS_HEADER])).not.toContain(`${name} dropped`);
  });

  it('shrinks a table of 18,000 tiny entries (99 KB, within a frame) in linear time, keeping its own headers', () => {
    // Each drop re-measured the whole table: this took a minute and a half (26,000 entries, five minutes) with
    // the event loop blocked, so the worker stopped heartbeating and the broker took its connection away.
    const headers: Record<string, unknown> = {};
    for (let i = 0; i < 18_000; i++) headers[i.toString(36).padStart(3, '0')] = i % 2 ? null : true;
    const copy = republishProperties({}, { ...headers, 'x-error-class': 'unrepresentable', 'x-error-name': 'UnrepresentableMessageError' });
    expect(encodes(copy)).toBe(true);
    expect(tableBytes(copy.headers!)).toBeLessThanOrEqual(MAX_HEADERS_BYTES + 2_100);
    expect(copy.headers).toMatchObject({ 'x-error-class': 'unrepresentable', 'x-error-name': 'UnrepresentableMessageError' });
  });

  it('cuts a correlationId that is no shortstr once decoded, so that an event emitted for the message can be published', () => {
    // 241 bytes that are not UTF-8 arrive as 241 U+FFFD, 723 bytes: amqplib refused the InventoryReserved event
    // carrying it, and the outbox relay retried it for ever.
    const received = Buffer.alloc(241, 0xff).toString('utf8');
    const event = newEvent('InventoryReserved', {
      order_id: '6f1c1a43-2b8e-4d7e-9a53-0c1f3e2d4b5a',
      user_id: 'u',
      item: 'widget',
      quantity: 1,
    });
    expect(() => encodes(eventProperties(event, 'inventory-reservation', received))).toThrow(/correlationId/);
    const cut = toShortstr(received)!;
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(255);
    expect(received.startsWith(cut)).toBe(true);
    expect(encodes(eventProperties(event, 'inventory-reservation', cut))).toBe(true);
    expect(toShortstr('corr-1')).toBe('corr-1');
    expect(toShortstr(undefined)).toBeUndefined();
  });

  it('replaces nesting too deep for amqplib\u2019s recursive encoder with a note', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 5_000; i++) deep = [deep];
    const copy = republishProperties({}, { deep });
    expect(encodes(copy)).toBe(true);
    expect(String(copy.headers![TRUNCATED_HEADERS_HEADER])).toMatch(/nested deeper than 64 levels/);
  });
});

describe('amqplib decoder (patches/amqplib+2.3.1.patch)', () => {
  const { decodeFields } = require(join(dirname(require.resolve('amqplib')), 'lib', 'codec.js')) as {
    decodeFields(slice: Buffer): Record<string, unknown>;
  };
  const key = (name: string) => Buffer.concat([Buffer.from([name.length]), Buffer.from(name)]);

  it('decodes nesting of any depth without recursing past 256 levels: deeper levels stay raw bytes', () => {
    // 10,000 nested arrays around an int, encoded by hand: A <len> A <len> ... I <int>.
    let value = Buffer.from([0x49, 0, 0, 0, 1]);
    for (let i = 0; i < 10_000; i++) {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(value.length);
      value = Buffer.concat([Buffer.from('A'), length, value]);
    }
    const fields = decodeFields(Buffer.concat([key('deep'), value]));
    let level: unknown = fields.deep;
    let depth = 0;
    while (Array.isArray(level)) {
      level = level[0];
      depth++;
    }
    expect(depth).toBe(256);
    expect(Buffer.isBuffer(level)).toBe(true);
  });

  it('decodes the unsigned 64-bit tag "L" RabbitMQ passes through, and keeps "__proto__" as an entry', () => {
    const long = Buffer.alloc(9);
    long.write('L');
    long.writeBigUInt64BE(42n, 1);
    const table = Buffer.concat([key('__proto__'), Buffer.from('F'), Buffer.from([0, 0, 0, 0]), key('n'), long]);
    const fields = decodeFields(table);
    expect(fields.n).toBe(42);
    expect(Object.keys(fields)).toEqual(['__proto__', 'n']);
    expect(Object.getPrototypeOf(fields)).toBe(Object.prototype);
  });
});
