/**
 * Fault suite: POST /order fuzzed over real HTTP. fast-check generates bodies (valid orders, orders with
 * fields missing, mistyped or out of range, unknown and prototype-polluting fields, arbitrary JSON, text,
 * bytes, deep nesting, bodies around and over the size limit), content types, content encodings, framing
 * (Content-Length or chunked), Idempotency-Keys (including reused ones) and correlation ids, against the
 * real intake app listening on a port.
 *
 * Every answer must be a 2xx or a 4xx, never a 5xx and never a dropped connection; a 4xx is a problem+json
 * document whose status matches; a 202 means the order was really stored as sent. At the end the app still
 * answers GET /health. The run count is fixed, so the suite is bounded.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVhost, type TestVhost } from '../support/vhost';

const RUNS = 500;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One raw HTTP request (node:http, so any bytes and header values a client could send get through). */
function send(
  port: number,
  request: { method: string; path: string; headers: Record<string, string>; body: Buffer; chunked: boolean },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = { ...request.headers, ...(request.chunked ? {} : { 'content-length': String(request.body.length) }) };
    const req = http.request({ host: '127.0.0.1', port, method: request.method, path: request.path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    // A server may answer (413, 415) and close before it has read the whole body; the answer is what counts.
    req.on('error', (error) => reject(error));
    if (request.chunked) {
      const half = Math.floor(request.body.length / 2);
      req.write(request.body.subarray(0, half));
      req.end(request.body.subarray(half));
    } else {
      req.end(request.body);
    }
  });
}

// Header values a client can put on the wire: visible ASCII, spaces and Latin-1, no CR/LF.
const headerChar = fc
  .oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) },
    { weight: 1, arbitrary: fc.constant(0x20) },
    { weight: 1, arbitrary: fc.integer({ min: 0xa0, max: 0xff }) },
  )
  .map((code) => String.fromCharCode(code));
const headerValue = (max: number) => fc.array(headerChar, { minLength: 0, maxLength: max }).map((chars) => chars.join(''));

const weirdString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '',
    ' ',
    '   widget  ',
    '\u0000',
    '\ud800',
    'widget\n',
    'x'.repeat(201),
    'x'.repeat(5_000),
    '🦄'.repeat(60),
    '<script>',
    "' or 1=1 --",
  ),
);
const weirdNumber = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 1, 1.5, 1_000_000, 1_000_001, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2, 1e308, -0),
);
const anyValue = fc.oneof(
  weirdString,
  weirdNumber,
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue(), { maxLength: 3 }),
  fc.object({ maxDepth: 2 }),
);

const validOrder = fc.record({
  user_id: fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 20 })),
  item: fc.constantFrom('widget', 'gizmo', 'doohickey', 'unobtainium', ' widget '),
  quantity: fc.integer({ min: 1, max: 1_000_000 }),
});
/** An order with some fields missing, replaced by anything, or joined by fields nobody asked for. */
const mangledOrder = fc
  .tuple(
    validOrder,
    fc.record({ user_id: anyValue, item: anyValue, quantity: anyValue }, { requiredKeys: [] }),
    fc.subarray(['user_id', 'item', 'quantity']),
    fc.dictionary(
      fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'status', 'order_id')),
      anyValue,
      { maxKeys: 3 },
    ),
  )
  .map(([order, replaced, dropped, extra]) => {
    const body: Record<string, unknown> = { ...order, ...replaced };
    for (const key of dropped) delete body[key];
    for (const [key, value] of Object.entries(extra))
      Object.defineProperty(body, key, { value, enumerable: true, configurable: true, writable: true });
    return body;
  });

const body = fc.oneof(
  { weight: 4, arbitrary: validOrder.map((o) => Buffer.from(JSON.stringify(o))) },
  { weight: 6, arbitrary: mangledOrder.map((o) => Buffer.from(JSON.stringify(o))) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2_000 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 100_000 }).map((depth) => Buffer.from('['.repeat(depth) + ']'.repeat(depth))) },
  {
    weight: 1,
    // Around the 16 KiB limit: a valid order padded with an unknown field, just under and over.
    arbitrary: fc.integer({ min: 16 * 1024 - 200, max: 64 * 1024 }).map((size) => {
      const base = JSON.stringify({ user_id: 'u-big', item: 'widget', quantity: 1, pad: '' });
      return Buffer.from(base.replace('"pad":""', `"pad":"${'p'.repeat(Math.max(0, size - base.length))}"`));
    }),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        '',
        '{}',
        'null',
        '{"user_id":"u","item":"widget","quantity":1,"__proto__":{"polluted":true}}',
        '{"user_id":"u","item":"widget","quantity":1,"constructor":{"prototype":{"polluted":true}}}',
        '{"user_id":"u","item":"widget","quantity":1,"quantity":2}',
        '{"user_id":"u","item":"widget","quantity":1',
        '\ufeff{"user_id":"u","item":"widget","quantity":1}',
        '{"user_id":"u","item":"widget","quantity":1e400}',
      )
      .map((s) => Buffer.from(s)),
  },
);

/** Absent, or one of `values`; absent most of the time (`absentWeight` to 1). */
const sometimes = <T>(values: fc.Arbitrary<T>, absentWeight: number) =>
  fc.oneof({ weight: absentWeight, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: values });

// Mostly JSON, so most requests get past the media-type check to the validation that matters.
const contentType = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'application/json;charset="utf-8"; foo=bar',
    ),
  },
  { weight: 1, arbitrary: fc.constant(null) },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.constantFrom(
        'application/json; charset=utf-16le',
        'application/json; charset=latin1',
        'text/plain',
        'text/json',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=xyz',
        'application/octet-stream',
        'application/problem+json',
        'application/vnd.api+json',
        '*/*',
        '',
      ),
      headerValue(40),
    ),
  },
);

const request = fc.record({
  body,
  contentType,
  contentEncoding: sometimes(fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-bogus'), 8),
  // A small pool of keys so some are reused, with the same body (202 again) or another one (422).
  idempotencyKey: sometimes(fc.oneof(fc.constantFrom('fuzz-key-1', 'fuzz-key-2', 'fuzz-key-3'), headerValue(250)), 2),
  correlationId: sometimes(headerValue(300), 2),
  accept: sometimes(fc.constantFrom('application/json', 'text/html', '*/*', 'application/xml'), 2),
  chunked: fc.boolean(),
  path: fc.oneof(
    { weight: 12, arbitrary: fc.constant('/order') },
    { weight: 1, arbitrary: fc.constantFrom('/order?debug=1', '/order/', '/order?user_id=x&quantity=9') },
  ),
});

describe('POST /order fuzzed over real HTTP', () => {
  let vhost: TestVhost;
  let dir: string;
  let app: FastifyInstance;
  let port: number;

  beforeAll(async () => {
    vhost = await createVhost('fault-fuzz');
    dir = await mkdtemp(join(tmpdir(), 'fault-fuzz-'));
    Object.assign(process.env, {
      AMQP_URL: vhost.url,
      AMQP_URLS: '',
      DATABASE_URL: '',
      SQLITE_PATH: join(dir, 'app.sqlite'),
      LOG_LEVEL: 'silent',
      ADMIN_TOKEN: '',
    });
    ({ app } = (await import('../../handlers/order-intake')) as { app: FastifyInstance });
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as { port: number }).port;
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    const { closeMessaging } = await import('../../shared/messaging');
    await closeMessaging();
    await vhost?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it(`answers ${RUNS} generated requests with a 2xx or a well-formed 4xx, never a 5xx, and stays up`, async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = {};
        if (r.contentType !== null) headers['content-type'] = r.contentType;
        if (r.contentEncoding !== null) headers['content-encoding'] = r.contentEncoding;
        if (r.idempotencyKey !== null) headers['idempotency-key'] = r.idempotencyKey;
        if (r.correlationId !== null) headers['x-correlation-id'] = r.correlationId;
        if (r.accept !== null) headers.accept = r.accept;
        const answer = await send(port, { method: 'POST', path: r.path, headers, body: r.body, chunked: r.chunked });
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);

        expect(answer.status, `answer: ${answer.body.slice(0, 300)}`).toBeGreaterThanOrEqual(200);
        expect(answer.status, `answer: ${answer.body.slice(0, 300)}`).toBeLessThan(500);
        if (answer.status >= 400) {
          // A client error says what was wrong, in the format the API promises.
          expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
          const problem = JSON.parse(answer.body) as { status: number; title: string };
          expect(problem.status).toBe(answer.status);
          expect(problem.title).toEqual(expect.any(String));
          return;
        }
        // Accepted: the order is stored exactly as it was sent (trimmed), and can be read back.
        expect(answer.status).toBe(202);
        const accepted = JSON.parse(answer.body) as { order_id: string; status: string };
        expect(accepted.status).toBe('accepted');
        const sent = JSON.parse(r.body.toString('utf8').replace(/^\ufeff/, '')) as { user_id: string; item: string; quantity: number };
        const stored = await send(port, {
          method: 'GET',
          path: `/orders/${accepted.order_id}`,
          headers: {},
          body: Buffer.alloc(0),
          chunked: false,
        });
        expect(stored.status).toBe(200);
        expect(JSON.parse(stored.body)).toMatchObject({ user_id: sent.user_id.trim(), item: sent.item.trim(), quantity: sent.quantity });
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
    console.log(
      `[fault] POST /order fuzz: ${RUNS} requests, answers by status ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`,
    );

    // Nothing polluted a prototype on the way.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // The process is still up and healthy.
    const health = await send(port, { method: 'GET', path: '/health', headers: {}, body: Buffer.alloc(0), chunked: false });
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'ok' });
  }, 180_000);
});
