import { readFileSync } from 'node:fs';
import {
  buildRabbitMQEvent,
  decodeHeaderValue,
  decodeRabbitMQEvent,
  encodeHeaderValue,
  envelopeBytes,
  formatAmqpTimestamp,
  InvalidRabbitMQEventError,
  localEventSourceArn,
  MAX_HEADER_DEPTH,
  messageBytes,
  parseAmqpTimestamp,
  type RabbitMQBasicProperties,
  type RabbitMQEvent,
  type RabbitMQHandler,
  type RabbitMQMessage,
  type RabbitMQRecord,
  rabbitMQEventFromBodies,
  recordBytes,
  toRabbitMQMessage,
  UnrepresentableMessageError,
} from 'middy-rabbitmq';
import { describe, expect, expectTypeOf, it } from 'vitest';

const SAMPLES = new URL('../fixtures/aws-samples/', import.meta.url);
const sampleText = (name: string) => readFileSync(new URL(name, SAMPLES), 'utf8');
const sample = (name: string) => JSON.parse(sampleText(name)) as RabbitMQEvent;
const AWS_SAMPLE = 'rabbitmq-event-aws-sample.json';
const CAPTURED = 'rabbitmq-event-captured.json';
const PROPERTY_KEYS = Object.keys(sample(AWS_SAMPLE).rmqMessagesByQueue['test::/']![0]!.basicProperties);

/** Re-encodes decoded records the way the runner encodes consumed messages. */
const reencode = (records: RabbitMQRecord[], eventSourceArn: string) =>
  buildRabbitMQEvent({
    eventSourceArn,
    messages: records.map((r) => ({
      queue: r.queue,
      vhost: r.vhost,
      message: { content: r.body, fields: { redelivered: r.redelivered }, properties: r.properties },
    })),
  });

/** A message as amqplib gives it on consume, with every property absent unless given. */
const amqpMessage = (properties: Record<string, unknown> = {}, content = Buffer.from('x')) => ({
  content,
  fields: { redelivered: false },
  properties: { headers: undefined, ...properties },
});

describe('types', () => {
  it('are the AWS shapes, inferred from the schema (checked by tsc)', () => {
    expectTypeOf<RabbitMQEvent['eventSource']>().toEqualTypeOf<'aws:rmq'>();
    expectTypeOf<RabbitMQEvent['rmqMessagesByQueue']>().toEqualTypeOf<Record<string, RabbitMQMessage[]>>();
    expectTypeOf<RabbitMQMessage['data']>().toEqualTypeOf<string>();
    expectTypeOf<RabbitMQBasicProperties['priority']>().toEqualTypeOf<number | null>();
    expectTypeOf<RabbitMQBasicProperties['timestamp']>().toEqualTypeOf<string | null>();
    expectTypeOf<RabbitMQBasicProperties['bodySize']>().toEqualTypeOf<number>();
    expectTypeOf<Parameters<RabbitMQHandler>[0]>().toEqualTypeOf<RabbitMQEvent>();
  });
});

describe('AWS sample events', () => {
  it("decodes AWS's published sample", () => {
    const event = sample(AWS_SAMPLE);
    const [record, ...rest] = decodeRabbitMQEvent(event);
    expect(rest).toHaveLength(0);
    expect(record).toMatchObject({ queue: 'test', vhost: '/', redelivered: false });
    expect(record!.properties).toEqual({
      contentType: 'text/plain',
      headers: { header1: 'value1', header2: 'value2', numberInHeader: 10 },
      deliveryMode: 1,
      priority: 34,
      expiration: '60000',
      timestamp: 2021,
      userId: 'AIDACKCEVSQ6C2EXAMPLE',
    });
    for (const key of ['contentEncoding', 'correlationId', 'replyTo', 'messageId', 'type', 'appId', 'clusterId']) {
      expect(record!.properties).toHaveProperty(key, undefined);
    }
    const message = event.rmqMessagesByQueue['test::/']![0]!;
    expect(record!.body.equals(Buffer.from(message.data, 'base64'))).toBe(true);
    expect(record!.body.toString()).toBe('{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}');
    expect(record!.rawProperties).toBe(message.basicProperties);
  });

  it('re-encodes the published sample exactly, except its bodySize, which does not match its own data', () => {
    const event = sample(AWS_SAMPLE);
    const rebuilt = reencode(decodeRabbitMQEvent(event), event.eventSourceArn);
    // AWS's hand-written test data says 80 bytes, but its data is 43 bytes; a real event carries the real size.
    const properties = event.rmqMessagesByQueue['test::/']![0]!.basicProperties;
    expect(properties.bodySize).toBe(80);
    properties.bodySize = 43;
    expect(JSON.stringify(rebuilt)).toBe(JSON.stringify(event));
  });

  it('decodes and re-encodes the captured event: every property null, headers null, redelivered', () => {
    const event = sample(CAPTURED);
    const records = decodeRabbitMQEvent(event);
    expect(records.map((r) => [r.queue, r.vhost, r.redelivered, r.body.toString()])).toEqual([
      ['testQueue', '/', true, 'Hello World 1'],
      ['testQueue', '/', true, 'Hello World 2'],
    ]);
    expect(records[0]!.properties).toEqual({ deliveryMode: 2 });
    expect(records[0]!.properties.headers).toBeUndefined();
    const rebuilt = reencode(records, event.eventSourceArn);
    expect(rebuilt).toStrictEqual(event);
    // The captured log put eventSource last; messages and their properties match byte for byte.
    expect(JSON.stringify(rebuilt.rmqMessagesByQueue)).toBe(JSON.stringify(event.rmqMessagesByQueue));
  });
});

describe('timestamp format', () => {
  const at = (y: number, m: number, d: number, h: number, min: number, s: number) => Date.UTC(y, m, d, h, min, s) / 1000;

  it.each([
    [0, 'Jan 1, 1970, 12:00:00 AM'],
    [2021, 'Jan 1, 1970, 12:33:41 AM'],
    [at(2024, 1, 29, 12, 5, 9), 'Feb 29, 2024, 12:05:09 PM'],
    [at(2024, 2, 5, 13, 0, 0), 'Mar 5, 2024, 1:00:00 PM'],
    [at(2023, 6, 14, 11, 59, 59), 'Jul 14, 2023, 11:59:59 AM'],
    [at(1999, 11, 31, 23, 59, 59), 'Dec 31, 1999, 11:59:59 PM'],
    [at(2038, 0, 19, 3, 14, 8), 'Jan 19, 2038, 3:14:08 AM'],
  ])('%i seconds is "%s", and back', (seconds, text) => {
    expect(formatAmqpTimestamp(seconds)).toBe(text);
    expect(parseAmqpTimestamp(text)).toBe(seconds);
  });

  it('names all twelve months, with single-digit days unpadded', () => {
    const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
    months.forEach((month, index) => {
      expect(formatAmqpTimestamp(at(2023, index, 9, 8, 7, 6))).toBe(`${month} 9, 2023, 8:07:06 AM`);
      expect(formatAmqpTimestamp(at(2023, index, 28, 20, 0, 0))).toBe(`${month} 28, 2023, 8:00:00 PM`);
    });
  });

  it("agrees with ICU's en-US medium format in UTC, apart from ICU's narrow no-break space", () => {
    const icu = new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeStyle: 'medium', timeZone: 'UTC' });
    for (let seconds = 0; seconds < 4_102_444_800; seconds += 7_777_777) {
      const expected = icu.format(seconds * 1000).replace(/[\u202f\u00a0]/g, ' ');
      expect(formatAmqpTimestamp(seconds)).toBe(expected);
    }
  });

  it('parses the no-break spaces newer JDKs print, and rejects what it would not print', () => {
    expect(parseAmqpTimestamp('Jan 1, 1970, 12:33:41\u202fAM')).toBe(2021);
    for (const bad of [
      'Feb 30, 2023, 1:00:00 AM',
      'Jan 01, 1970, 1:00:00 AM',
      'Jan 1, 1970, 13:00:00 PM',
      'Jan 1, 1970, 00:00:00 AM',
      'jan 1, 1970, 1:00:00 AM',
      '1970-01-01T00:33:41Z',
      '',
    ]) {
      expect(parseAmqpTimestamp(bad), bad).toBeUndefined();
    }
    expect(() => formatAmqpTimestamp(1.5)).toThrow(RangeError);
  });
});

describe('building messages', () => {
  it('puts every property AWS sends, in its order, null when absent, bodySize and base64 data', () => {
    const message = toRabbitMQMessage(amqpMessage({}, Buffer.from('héllo')));
    expect(Object.keys(message)).toEqual(['basicProperties', 'redelivered', 'data']);
    expect(Object.keys(message.basicProperties)).toEqual(PROPERTY_KEYS);
    expect(message.basicProperties).toMatchObject({ headers: null, deliveryMode: null, timestamp: null, bodySize: 6 });
    expect(message.data).toBe(Buffer.from('héllo').toString('base64'));
  });

  it('keeps an empty headers table as {}, as AWS reads it, and null only when there is no table', () => {
    expect(toRabbitMQMessage(amqpMessage({ headers: {} })).basicProperties.headers).toEqual({});
    expect(toRabbitMQMessage(amqpMessage()).basicProperties.headers).toBeNull();
  });

  it('encodes header values as AWS (Java client + Gson) does, and decodes them back', () => {
    const headers = {
      ascii: 'value1',
      utf8: 'héllo ✓',
      int: 10,
      negative: -5,
      float: 1.5,
      yes: true,
      nothing: null,
      skipped: undefined,
      when: { '!': 'timestamp', value: 2021 },
      nested: { inner: 'x', deeper: { list: ['a', 1, false] } },
      'x-death': [{ count: 1, reason: 'rejected', queue: 'q', time: { '!': 'timestamp', value: 0 }, 'routing-keys': ['rk'] }],
    };
    const encoded = toRabbitMQMessage(amqpMessage({ headers })).basicProperties.headers!;
    expect(encoded).toEqual({
      ascii: { bytes: [118, 97, 108, 117, 101, 49] },
      utf8: { bytes: [104, -61, -87, 108, 108, 111, 32, -30, -100, -109] },
      int: 10,
      negative: -5,
      float: 1.5,
      yes: true,
      nothing: null,
      when: 'Jan 1, 1970, 12:33:41 AM',
      nested: { inner: { bytes: [120] }, deeper: { list: [{ bytes: [97] }, 1, false] } },
      'x-death': [
        {
          count: 1,
          reason: { bytes: Array.from(Buffer.from('rejected')) },
          queue: { bytes: [113] },
          time: 'Jan 1, 1970, 12:00:00 AM',
          'routing-keys': [{ bytes: [114, 107] }],
        },
      ],
    });
    expect(Object.keys(encoded)).not.toContain('skipped');
    const { skipped: _, ...published } = headers;
    expect(decodeHeaderValue(encoded)).toEqual(published);
  });

  it('decodes unsigned bytes as well, and documents the lossy cases: byte arrays and decimals', () => {
    expect(decodeHeaderValue({ bytes: [104, 195, 169] })).toBe('hé');
    expect(encodeHeaderValue(Buffer.from([1, 255]))).toEqual([1, -1]);
    expect(encodeHeaderValue({ '!': 'decimal', value: { places: 2, digits: 123 } })).toBe(1.23);
    expect(decodeHeaderValue('not a date')).toBe('not a date');
  });

  it('refuses, naming where, what has no aws:rmq form: dates past what Date holds, NaN, nesting past the limit', () => {
    const refused = (properties: Record<string, unknown>) => {
      try {
        toRabbitMQMessage(amqpMessage(properties));
      } catch (error) {
        expect(error).toBeInstanceOf(UnrepresentableMessageError);
        return (error as UnrepresentableMessageError).message;
      }
      throw new Error('not refused');
    };
    expect(refused({ timestamp: 10 ** 13 })).toMatch(/^timestamp: timestamp 10000000000000 is not a date/);
    expect(refused({ headers: { a: { b: [{ '!': 'timestamp', value: 2 ** 64 }] } } })).toMatch(/^headers\.a\.b\[0\]: timestamp/);
    expect(refused({ headers: { n: Number.NaN } })).toMatch(/^headers\.n: NaN has no JSON form/);
    let deep: unknown = 1;
    for (let i = 0; i < MAX_HEADER_DEPTH + 1; i++) deep = [deep];
    expect(refused({ headers: { deep } })).toMatch(/nested deeper than 64 levels/);
    for (let i = 0; i < 100_000; i++) deep = [deep]; // far deeper: refused, not a stack overflow
    expect(refused({ headers: { deep } })).toMatch(/nested deeper/);
  });

  it('reads a table with a "!" key as a table: only amqplib\'s timestamp and decimal are typed values', () => {
    expect(encodeHeaderValue({ '!': 'not-a-type', value: 'v', more: 1 })).toEqual({
      '!': { bytes: [110, 111, 116, 45, 97, 45, 116, 121, 112, 101] },
      value: { bytes: [118] },
      more: 1,
    });
  });

  it('reads a table shaped almost like a typed value as the table it is, not as a timestamp or decimal with no date or number', () => {
    // Any client can send these tables ("!" and "value" are ordinary keys); they used to be dead-lettered as
    // unrepresentable ("timestamp undefined is not a date", "NaN has no JSON form"). Found by test/fault/broker-fuzz.
    const bytes = (text: string) => ({ bytes: Array.from(Buffer.from(text)) });
    expect(encodeHeaderValue({ '!': 'timestamp', value: 'soon' })).toEqual({ '!': bytes('timestamp'), value: bytes('soon') });
    expect(encodeHeaderValue({ '!': 'timestamp' })).toEqual({ '!': bytes('timestamp') });
    expect(encodeHeaderValue({ '!': 'timestamp', value: { '!': 'timestamp', value: 5 } })).toEqual({
      '!': bytes('timestamp'),
      value: 'Jan 1, 1970, 12:00:05 AM',
    });
    expect(encodeHeaderValue({ '!': 'timestamp', value: -1.5 })).toEqual({ '!': bytes('timestamp'), value: -1.5 });
    expect(encodeHeaderValue({ '!': 'timestamp', value: 5, more: 1 })).toEqual({ '!': bytes('timestamp'), value: 5, more: 1 });
    expect(encodeHeaderValue({ '!': 'decimal', value: 2.8e-228 })).toEqual({ '!': bytes('decimal'), value: 2.8e-228 });
    expect(encodeHeaderValue({ '!': 'decimal', value: { places: -400, digits: 5 } })).toEqual({
      '!': bytes('decimal'),
      value: { places: -400, digits: 5 },
    });
    expect(encodeHeaderValue({ '!': 'decimal', value: { places: 2, digits: 'x' } })).toEqual({
      '!': bytes('decimal'),
      value: { places: 2, digits: bytes('x') },
    });
    // What amqplib's decoder makes of 'T' and 'D' fields is still typed; a real timestamp past Date still has no form.
    expect(encodeHeaderValue({ '!': 'timestamp', value: 60 })).toBe('Jan 1, 1970, 12:01:00 AM');
    expect(encodeHeaderValue({ '!': 'decimal', value: { places: 255, digits: 4_294_967_295 } })).toBe(4_294_967_295 / 10 ** 255);
    expect(() => encodeHeaderValue({ '!': 'timestamp', value: 10 ** 13 })).toThrow(UnrepresentableMessageError);
  });

  it('knows what an event weighs, record by record, to the byte', () => {
    const arn = localEventSourceArn();
    const messages = [
      amqpMessage({ headers: { note: 'héllo ✓' }, messageId: 'ünïcode' }, Buffer.alloc(1000)),
      amqpMessage({}, Buffer.from('x')),
      amqpMessage({ timestamp: 1 }),
    ];
    const event = buildRabbitMQEvent({ eventSourceArn: arn, messages: messages.map((message) => ({ queue: 'q', message })) });
    const records = event.rmqMessagesByQueue['q::/']!;
    const computed = envelopeBytes(arn, 'q::/') + records.reduce((sum, r) => sum + messageBytes(r), 0) + records.length - 1;
    expect(computed).toBe(Buffer.byteLength(JSON.stringify(event)));
    // The trigger's shortcut for records as toRabbitMQMessage makes them counts the same, redelivered or not.
    const redelivered = toRabbitMQMessage({ ...amqpMessage({ priority: 9, headers: { n: [1, 'ü'] } }), fields: { redelivered: true } });
    for (const record of [...records, redelivered]) {
      expect(recordBytes(record)).toBe(messageBytes(record));
      expect(recordBytes(record)).toBe(Buffer.byteLength(JSON.stringify(record)));
    }
  });

  it('decodes an event carrying a body of several MB (no regex that overflows the stack)', () => {
    const event = buildRabbitMQEvent({
      eventSourceArn: localEventSourceArn(),
      messages: [{ queue: 'q', message: amqpMessage({}, Buffer.alloc(6_000_000, 7)) }],
    });
    expect(decodeRabbitMQEvent(event)[0]!.body.length).toBe(6_000_000);
    const broken = structuredClone(event);
    broken.rmqMessagesByQueue['q::/']![0]!.data = `${'A'.repeat(4_000_000)}=A==`;
    expect(() => decodeRabbitMQEvent(broken)).toThrow(/must be base64/);
  });

  it('groups messages by "queue::vhost" in first-seen order, keeping delivery order', () => {
    const m = (body: string) => amqpMessage({}, Buffer.from(body));
    const event = buildRabbitMQEvent({
      eventSourceArn: localEventSourceArn(),
      vhost: 'orders',
      messages: [
        { queue: 'b', message: m('1') },
        { queue: 'a', message: m('2') },
        { queue: 'b', message: m('3') },
        { queue: 'a', vhost: '/', message: m('4') },
      ],
    });
    expect(Object.keys(event)).toEqual(['eventSource', 'eventSourceArn', 'rmqMessagesByQueue']);
    expect(Object.keys(event.rmqMessagesByQueue)).toEqual(['b::orders', 'a::orders', 'a::/']);
    expect(decodeRabbitMQEvent(event).map((r) => `${r.queue}::${r.vhost}=${r.body}`)).toEqual([
      'b::orders=1',
      'b::orders=3',
      'a::orders=2',
      'a::/=4',
    ]);
  });

  it('makes deterministic ARNs of the shape AWS uses', () => {
    const uuid = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
    const shape = new RegExp(`^arn:aws:mq:[a-z0-9-]+:\\d{12}:broker:[\\w-]+:b-${uuid}$`);
    for (const name of [AWS_SAMPLE, CAPTURED]) expect(sample(name).eventSourceArn).toMatch(shape);
    expect(localEventSourceArn()).toMatch(shape);
    expect(localEventSourceArn()).toBe(localEventSourceArn('local'));
    expect(localEventSourceArn('orders')).not.toBe(localEventSourceArn());
    expect(localEventSourceArn('orders', { region: 'eu-west-1', accountId: '123456789012' })).toMatch(
      /^arn:aws:mq:eu-west-1:123456789012:broker:orders:b-/,
    );
  });
});

describe('rabbitMQEventFromBodies', () => {
  const body = {
    event_id: '0b7e7a8e-3a43-4d5c-9d1e-0c6e4a3f2b10',
    event_type: 'OrderPlaced',
    timestamp: '2024-05-01T10:00:00.000Z',
    quantity: 1,
  };

  it('serializes JSON bodies with the contract properties, and sends strings and Buffers as they are', () => {
    const event = rabbitMQEventFromBodies({ queue: 'order-events', bodies: [body, 'plain', Buffer.from([0, 1])] });
    expect(event.eventSourceArn).toBe(localEventSourceArn());
    const records = decodeRabbitMQEvent(event);
    expect(records.map((r) => `${r.queue}::${r.vhost}`)).toEqual(Array(3).fill('order-events::/'));
    expect(JSON.parse(records[0]!.body.toString())).toEqual(body);
    expect(records[0]!.properties).toEqual({
      contentType: 'application/json',
      deliveryMode: 2,
      messageId: body.event_id,
      type: 'OrderPlaced',
      timestamp: Date.parse(body.timestamp) / 1000,
    });
    expect(records[1]!.properties).toEqual({ deliveryMode: 2 });
    expect(records[1]!.body.toString()).toBe('plain');
    expect([...records[2]!.body]).toEqual([0, 1]);
    expect(Object.keys(records[0]!.rawProperties)).toEqual(PROPERTY_KEYS);
  });

  it('applies given properties over the derived ones', () => {
    const event = rabbitMQEventFromBodies({
      queue: 'q',
      vhost: 'v',
      bodies: [body],
      redelivered: true,
      properties: { correlationId: 'corr-1', appId: 'test', headers: { 'x-attempt': 2, note: 'hi' }, type: 'Other' },
    });
    const [record] = decodeRabbitMQEvent(event);
    expect(record).toMatchObject({ queue: 'q', vhost: 'v', redelivered: true });
    expect(record!.properties).toMatchObject({
      correlationId: 'corr-1',
      appId: 'test',
      type: 'Other',
      messageId: body.event_id,
      headers: { 'x-attempt': 2, note: 'hi' },
    });
  });
});

describe('malformed events', () => {
  // The corruptions below write values of the wrong type, so messages and their properties are plain records here.
  type Fields = Record<string, unknown>;
  const valid = () => sample(AWS_SAMPLE);
  const first = (event: RabbitMQEvent) => event.rmqMessagesByQueue['test::/']![0]! as unknown as Fields;
  const props = (e: RabbitMQEvent) => first(e).basicProperties as Fields;
  /** Corruptions: the event, with `key` of the record that `at` picks out set to `value`, or deleted. */
  const set = (at: (event: RabbitMQEvent) => Fields, key: string, value: unknown) => (event: RabbitMQEvent) => {
    at(event)[key] = value;
    return event;
  };
  const drop = (at: (event: RabbitMQEvent) => Fields, key: string) => (event: RabbitMQEvent) => {
    delete at(event)[key];
    return event;
  };
  const problem = (event: unknown): string => {
    try {
      decodeRabbitMQEvent(event);
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidRabbitMQEventError);
      expect((error as Error).name).toBe('InvalidRabbitMQEventError');
      return (error as Error).message;
    }
    throw new Error('decoded a malformed event');
  };

  const at0 = 'event.rmqMessagesByQueue["test::/"][0]';
  it.each<[string, (event: RabbitMQEvent) => unknown, string]>([
    ['not an object', () => 'hello', 'Invalid aws:rmq event: event: must be an object (got "hello")'],
    ['another event source', (e) => ({ ...e, eventSource: 'aws:sqs' }), 'event.eventSource: must be "aws:rmq" (got "aws:sqs")'],
    ['no eventSourceArn', ({ eventSourceArn: _, ...e }) => e, 'event.eventSourceArn is missing'],
    ['no messages', ({ rmqMessagesByQueue: _, ...e }) => e, 'event.rmqMessagesByQueue is missing'],
    [
      'a key without "::"',
      (e) => ({ ...e, rmqMessagesByQueue: { test: [] } }),
      'event.rmqMessagesByQueue: key "test" must be "<queue>::<vhost>"',
    ],
    ['a key without a queue', (e) => ({ ...e, rmqMessagesByQueue: { '::/': [] } }), 'key "::/" must be "<queue>::<vhost>"'],
    ['non-base64 data', set(first, 'data', 'not base64!'), `${at0}.data: must be base64`],
    ['no basicProperties', drop(first, 'basicProperties'), `${at0}.basicProperties is missing`],
    ['a missing property', drop(props, 'messageId'), `${at0}.basicProperties.messageId is missing`],
    ['a wrong property type', set(props, 'priority', 'high'), `${at0}.basicProperties.priority: must be a number or null (got "high")`],
    [
      'an ISO timestamp',
      set(props, 'timestamp', '1970-01-01T00:33:41Z'),
      `${at0}.basicProperties.timestamp: must be a date like "Jan 1, 1970, 12:33:41 AM"`,
    ],
    ['headers not a table', set(props, 'headers', 'h'), 'headers: must be an object or null (got "h")'],
    ['redelivered missing', drop(first, 'redelivered'), `${at0}.redelivered is missing`],
  ])('%s', (_, corrupt, expected) => {
    expect(problem(corrupt(valid()))).toContain(expected);
  });

  it('lists every problem it finds', () => {
    const error = (() => {
      try {
        decodeRabbitMQEvent({ eventSource: 'aws:sqs', rmqMessagesByQueue: {} });
      } catch (e) {
        return e as InvalidRabbitMQEventError;
      }
    })();
    expect(error?.problems).toEqual(['event.eventSource: must be "aws:rmq" (got "aws:sqs")', 'event.eventSourceArn is missing']);
  });
});
