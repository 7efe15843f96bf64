import type { Message } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config';
import {
  bodyPreview,
  brokerDeath,
  decide,
  errorClassOf,
  InvalidDlqOptionsError,
  parkedCopy,
  parseListRequest,
  parseRedriveRequest,
  REDRIVE_HEADERS,
  type RedriveReport,
  redriveCopy,
  redriveCountOf,
  redriveTarget,
  summarize,
} from '../../shared/dlq';
import { EXIT, formatReport, parseCommandLine, runCli, UsageError } from '../../shared/dlq/command';

const seconds = (iso: string) => ({ '!': 'timestamp', value: Math.floor(Date.parse(iso) / 1000) });

const message = (
  headers: Record<string, unknown> = {},
  properties: Record<string, unknown> = {},
  body = '{"event_id":"e1","user_id":"u-42","email":"a@b.c","item":"widget"}',
): Message =>
  ({
    content: Buffer.from(body),
    fields: { deliveryTag: 1, redelivered: false, exchange: 'dlx', routingKey: 'order-events', messageCount: 0, consumerTag: 'c' },
    properties: { messageId: 'm-1', type: 'OrderPlaced', contentType: 'application/json', headers, ...properties },
  }) as unknown as Message;

const ours = (errorClass: string, lastFailedAt = '2025-03-10T12:00:05.000Z') => ({
  'x-error-class': errorClass,
  'x-error-name': errorClass === 'permanent' ? 'SchemaViolationError' : 'TransientError',
  'x-error-message': 'boom',
  'x-attempts': 2,
  'x-first-failed-at': '2025-03-10T12:00:00.000Z',
  'x-last-failed-at': lastFailedAt,
  'x-original-queue': 'order-events',
});
const retryDeath = { reason: 'expired', queue: 'retry-1000ms', count: 1, exchange: 'retry', time: seconds('2025-03-10T12:00:04Z') };
const limitDeath = (at: string) => ({ reason: 'delivery_limit', queue: 'order-events', count: 1, exchange: 'orders', time: seconds(at) });

describe('error class of a dead letter', () => {
  it('is our middleware class when only our headers say why', () => {
    expect(errorClassOf(ours('permanent'))).toBe('permanent');
    expect(errorClassOf(ours('transient'))).toBe('transient');
  });

  it('ignores the retry queues\u2019 expiries, which are not dead-letterings into the DLQ', () => {
    expect(errorClassOf({ ...ours('transient'), 'x-death': [retryDeath] })).toBe('transient');
  });

  it('is broker when the broker dead-lettered it after our last failure (same second counts)', () => {
    expect(errorClassOf({ 'x-death': [limitDeath('2025-03-10T12:00:00Z')] })).toBe('broker');
    // Retried once by us (headers), then the batch kept throwing until the delivery limit.
    expect(errorClassOf({ ...ours('transient'), 'x-death': [limitDeath('2025-03-10T12:07:00Z'), retryDeath] })).toBe('broker');
    expect(errorClassOf({ ...ours('transient'), 'x-death': [limitDeath('2025-03-10T12:00:05Z')] })).toBe('broker');
    // Our failure after the broker's: ours.
    expect(errorClassOf({ ...ours('permanent', '2025-03-10T12:09:00.000Z'), 'x-death': [limitDeath('2025-03-10T12:07:00Z')] })).toBe(
      'permanent',
    );
  });

  it('is unknown without either', () => {
    expect(errorClassOf(undefined)).toBe('unknown');
    expect(errorClassOf({ 'x-error-class': 'weird' })).toBe('unknown');
  });
});

describe('redrive target', () => {
  it('is the work queue the DLQ belongs to, whatever the message says', () => {
    expect(redriveTarget('order-events-dlq')).toBe('order-events');
    expect(redriveTarget('inventory-events-dlq')).toBe('inventory-events');
  });

  it('ignores a forged x-original-queue: a producer cannot send its message into another queue by redrive', () => {
    const forged = message({ ...ours('permanent'), 'x-original-queue': 'inventory-events' });
    expect(decide(forged, 'order-events-dlq', {}, 3)).toMatchObject({ action: 'move', target: 'order-events' });
  });
});

describe('redrive count', () => {
  it('is trusted only within what a redrive can set (0 to DLQ_MAX_REDRIVES)', () => {
    expect(redriveCountOf({ [REDRIVE_HEADERS.count]: 2 }, 3)).toBe(2);
    expect(redriveCountOf({ [REDRIVE_HEADERS.count]: 3 }, 3)).toBe(3);
    for (const forged of [999, -1, 1.5, 'x']) expect(redriveCountOf({ [REDRIVE_HEADERS.count]: forged }, 3), String(forged)).toBe(0);
  });

  it('a forged 999 is moved, not parked, and its copy counts from 1, so it still parks after the real limit', () => {
    const forged = message({ ...ours('transient'), [REDRIVE_HEADERS.count]: 999 });
    expect(decide(forged, 'order-events-dlq', {}, 3)).toMatchObject({ action: 'move' });
    expect(redriveCopy(forged, 'order-events-dlq', new Date(), 3).headers?.[REDRIVE_HEADERS.count]).toBe(1);
  });
});

describe('expired messages', () => {
  it('a message whose own expiration ran out in its work queue is a broker dead letter with reason expired', () => {
    const expired = {
      reason: 'expired',
      queue: 'order-events',
      count: 1,
      time: { '!': 'timestamp', value: 1741608000 },
      exchange: 'orders',
      'routing-keys': ['order.placed'],
    };
    expect(errorClassOf({ 'x-death': [expired] })).toBe('broker');
    expect(brokerDeath({ 'x-death': [expired] })).toMatchObject({ reason: 'expired', queue: 'order-events' });
  });
});

describe('decide', () => {
  const dlq = 'order-events-dlq';
  it('skips what fails the filter, parks at the max redrive count, moves the rest', () => {
    expect(decide(message(ours('permanent')), dlq, { errorClasses: ['transient'] }, 3)).toMatchObject({ action: 'skip' });
    expect(decide(message(ours('permanent')), dlq, { errorName: 'TransientError' }, 3)).toMatchObject({ action: 'skip' });
    expect(decide(message(ours('permanent')), dlq, { errorClasses: ['permanent'], errorName: 'SchemaViolationError' }, 3)).toEqual({
      action: 'move',
      target: 'order-events',
      errorClass: 'permanent',
    });
    expect(decide(message({ ...ours('transient'), [REDRIVE_HEADERS.count]: 3 }), dlq, {}, 3)).toMatchObject({
      action: 'park',
      redriveCount: 3,
    });
    expect(decide(message({ ...ours('transient'), [REDRIVE_HEADERS.count]: 2 }), dlq, {}, 3)).toMatchObject({ action: 'move' });
  });
});

describe('the copies published', () => {
  const now = new Date('2025-03-11T08:00:00.000Z');
  it('redriven: count + 1, fresh attempts, failure headers renamed, x-death summarised, properties kept', () => {
    const original = message(
      {
        ...ours('transient'),
        'x-attempt': 4,
        'retry-delay-ms': 60000,
        'x-delivery-count': 2,
        'x-death': [limitDeath('2025-03-10T12:07:00Z')],
        [REDRIVE_HEADERS.count]: 1,
        custom: 'kept',
      },
      { correlationId: 'c-1', appId: 'order-intake', timestamp: 1741608000, userId: 'guest', expiration: '1000' },
    );
    const copy = redriveCopy(original, 'order-events-dlq', now, 3);
    expect(copy).toMatchObject({
      messageId: 'm-1',
      type: 'OrderPlaced',
      correlationId: 'c-1',
      appId: 'order-intake',
      timestamp: 1741608000,
      contentType: 'application/json',
      persistent: true,
    });
    expect(copy).not.toHaveProperty('userId');
    expect(copy).not.toHaveProperty('expiration');
    expect(copy.headers).toEqual({
      'x-first-failed-at': '2025-03-10T12:00:00.000Z',
      'x-last-failed-at': '2025-03-10T12:00:05.000Z',
      'x-original-queue': 'order-events',
      'x-last-error-class': 'transient',
      'x-last-error-name': 'TransientError',
      'x-last-error-message': 'boom',
      'x-last-attempts': 2,
      'x-last-death-reason': 'delivery_limit',
      'x-last-death-queue': 'order-events',
      'x-redrive-count': 2,
      'x-redriven-at': '2025-03-11T08:00:00.000Z',
      'x-redriven-from': 'order-events-dlq',
      'x-original-user-id': 'guest',
      custom: 'kept',
    });
  });

  it('parked: the message as it was, plus where, when and why', () => {
    const copy = parkedCopy(message({ ...ours('permanent'), [REDRIVE_HEADERS.count]: 3 }), 'order-events-dlq', 3, now);
    expect(copy.headers).toMatchObject({
      ...ours('permanent'),
      [REDRIVE_HEADERS.count]: 3,
      [REDRIVE_HEADERS.parkedAt]: '2025-03-11T08:00:00.000Z',
      [REDRIVE_HEADERS.parkedFrom]: 'order-events-dlq',
      [REDRIVE_HEADERS.parkedReason]: 'redriven 3 times (DLQ_MAX_REDRIVES is 3)',
    });
  });
});

describe('body preview', () => {
  it('masks personal fields, truncates, and can be turned off', () => {
    const body = Buffer.from(JSON.stringify({ event_id: 'e1', user_id: 'u-42', nested: { email: 'a@b.c' }, item: 'widget' }));
    expect(bodyPreview(body, 500)).toBe('{"event_id":"e1","user_id":"[redacted]","nested":{"email":"[redacted]"},"item":"widget"}');
    expect(bodyPreview(body, 10)).toBe('{"event_id…');
    expect(bodyPreview(body, 0)).toBe('');
  });

  it('masks what it can recognise in broken JSON and shows control characters as dots', () => {
    expect(bodyPreview(Buffer.from('{"user_id": "u-42", "item": "x"'), 100)).toBe('{"user_id":"[redacted]", "item": "x"');
    expect(bodyPreview(Buffer.from('not\njson'), 100)).toBe('not.json');
  });

  it('does not show a JSON body too large to mask', () => {
    expect(bodyPreview(Buffer.from(`{"user_id":"u","pad":"${'x'.repeat(70_000)}"}`), 50)).toMatch(/too large to mask/);
  });
});

describe('summary', () => {
  it('says what, why, where it would go, and whether it would be parked', () => {
    const summary = summarize(message({ ...ours('permanent'), [REDRIVE_HEADERS.count]: 3 }, { timestamp: 1741608000 }), {
      dlq: 'order-events-dlq',
      position: 1,
      maxRedrives: 3,
      previewChars: 40,
    });
    expect(summary).toMatchObject({
      position: 1,
      messageId: 'm-1',
      timestamp: '2025-03-10T12:00:00.000Z',
      errorClass: 'permanent',
      errorName: 'SchemaViolationError',
      attempts: 2,
      redriveCount: 3,
      wouldPark: true,
      redriveTarget: 'order-events',
      death: null,
    });
    expect(summary.bodyPreview).not.toContain('u-42');
  });
});

describe('request validation', () => {
  const issues = (input: unknown) => {
    try {
      parseRedriveRequest(input);
      return [];
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidDlqOptionsError);
      return (error as InvalidDlqOptionsError).issues.map((issue) => issue.field);
    }
  };

  it('accepts a full request and fills the defaults later', () => {
    expect(
      parseRedriveRequest({
        queue: 'order-events-dlq',
        limit: 5,
        rate: 0.5,
        error_class: ['transient', 'broker', 'transient'],
        error_name: 'X',
        dry_run: true,
      }),
    ).toEqual({
      queue: 'order-events-dlq',
      limit: 5,
      rate: 0.5,
      errorClasses: ['transient', 'broker'],
      errorName: 'X',
      dryRun: true,
    });
    expect(parseRedriveRequest({ queue: 'order-events-dlq' })).toEqual({ queue: 'order-events-dlq', dryRun: false });
  });

  it('names each bad field', () => {
    expect(issues(undefined)).toEqual(['queue']);
    expect(issues({ queue: 'order-events' })).toEqual(['queue']);
    expect(issues({ queue: 'order-events-dlq', limit: 1.5, rate: 0 })).toEqual(['limit', 'rate']);
    expect(issues({ queue: 'order-events-dlq', limit: 1_000_000 })).toEqual(['limit']);
    expect(issues({ queue: 'order-events-dlq', error_class: [] })).toEqual(['error_class']);
    expect(issues({ queue: 'order-events-dlq', surprise: 1 })).toEqual(['surprise']);
  });

  it('reads list queries, which arrive as text', () => {
    expect(parseListRequest({ sample: '3', queue: 'a-dlq' })).toEqual({ sampleSize: 3, queues: ['a-dlq'] });
    expect(parseListRequest({ queue: ['a-dlq', 'b-dlq'] })).toEqual({ queues: ['a-dlq', 'b-dlq'] });
    expect(() => parseListRequest({ sample: '101' })).toThrow(/sample/);
  });
});

describe('command line', () => {
  it('parses list and redrive', () => {
    expect(parseCommandLine(['list', '--queue', 'a-dlq', '--queue', 'b-dlq', '--sample', '2', '--json'])).toEqual({
      command: 'list',
      json: true,
      request: { queue: ['a-dlq', 'b-dlq'], sample: '2' },
    });
    expect(
      parseCommandLine([
        'redrive',
        '--queue',
        'order-events-dlq',
        '--limit',
        '10',
        '--rate',
        '2',
        '--error-class',
        'permanent,broker',
        '--dry-run',
      ]),
    ).toEqual({
      command: 'redrive',
      json: false,
      request: {
        queue: 'order-events-dlq',
        limit: 10,
        rate: 2,
        error_class: ['permanent', 'broker'],
        error_name: undefined,
        dry_run: true,
      },
    });
    expect(parseCommandLine([])).toEqual({ command: 'help' });
    expect(parseCommandLine(['redrive', '--help'])).toEqual({ command: 'help' });
  });

  it('says what is wrong with a command line', () => {
    const cases: Array<[string[], RegExp]> = [
      [['redrive'], /needs --queue/],
      [['redrive', '--queue', 'a-dlq', '--queue', 'b-dlq'], /one --queue/],
      [['list', '--limit', '3'], /--limit is an option of 'redrive'/],
      [['redrive', '--queue', 'a-dlq', '--sample', '3'], /--sample is an option of 'list'/],
      [['purge'], /Unknown command 'purge'/],
      [['list', 'extra'], /Unexpected argument 'extra'/],
      [['list', '--colour'], /Unknown option '--colour'/],
      [['redrive', '--queue'], /argument missing/],
    ];
    for (const [argv] of cases) expect(() => parseCommandLine(argv), argv.join(' ')).toThrow(UsageError);
    for (const [argv, message] of cases) expect(() => parseCommandLine(argv), argv.join(' ')).toThrow(message);
  });

  it('exits 2 with the flag named for bad values, without touching the broker or printing a stack', async () => {
    const lines: string[] = [];
    const io = { out: (text: string) => lines.push(text), err: (text: string) => lines.push(text) };
    const config = loadConfig({ AMQP_URL: 'amqp://guest:guest@127.0.0.1:1', LOG_LEVEL: 'silent' });
    expect(await runCli(['redrive', '--queue', 'x-dlq', '--limit', 'many', '--error-class', 'odd'], io, { config })).toBe(EXIT.usage);
    expect(lines.join('\n')).toMatch(/--limit: expected number, received string; --error-class: must be one of/);
    expect(lines.join('\n')).not.toMatch(/\n\s+at /);
    lines.length = 0;
    expect(await runCli(['nope'], io, { config })).toBe(EXIT.usage);
    expect(lines.join('\n')).toMatch(/Usage:/);
    lines.length = 0;
    expect(await runCli(['list'], io, { config })).toBe(EXIT.failed);
    expect(lines.join('\n')).toMatch(/^dlq: RabbitMQ unreachable/);
  });

  it('prints a report an operator can read', () => {
    const report: RedriveReport = {
      dlq: 'order-events-dlq',
      dryRun: true,
      moved: ['a', 'b'],
      parked: ['c'],
      skipped: ['d'],
      failed: [],
      targets: { 'order-events': 2 },
      examined: 4,
      depthBefore: 9,
      depthAfter: 9,
      stopped: 'limit',
    };
    expect(formatReport(report)).toBe(
      [
        'order-events-dlq (dry run, nothing changed): would move 2 (order-events: 2), would park 1, skipped 1, failed 0; examined 4 of 9, stopped: limit; 9 left in the DLQ',
        '  would move: a, b',
        '  would park: c',
        '  skipped: d',
      ].join('\n'),
    );
  });
});
