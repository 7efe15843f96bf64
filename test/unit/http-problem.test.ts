/**
 * problem+json: the error → status table, and the app's answers to bad requests that never reach the
 * database or the broker (a store that cannot open and a broker nobody listens on prove it).
 */

import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config';
import { ValidationError } from '../../shared/contract/errors';
import { BacklogFullError, IdempotencyConflictError, OrderNotFoundError } from '../../shared/domain/orders';
import { buildApp, PROBLEM_CONTENT_TYPE, problemFor, problemType, UnauthorizedError, UnsupportedMediaTypeError } from '../../shared/http';
import { createLogger } from '../../shared/logging';
import { Broker, Publisher } from '../../shared/messaging';
import { StoreError } from '../../shared/store';

const fastifyError = (code: string, statusCode: number) => Object.assign(new Error(code), { code, statusCode });

describe('problemFor', () => {
  it.each([
    [new ValidationError([{ field: 'quantity', message: 'too small' }]), 400],
    [fastifyError('FST_ERR_CTP_INVALID_JSON_BODY', 400), 400],
    [fastifyError('FST_ERR_CTP_EMPTY_JSON_BODY', 400), 400],
    [fastifyError('FST_ERR_CTP_BODY_TOO_LARGE', 413), 413],
    [fastifyError('FST_ERR_CTP_INVALID_MEDIA_TYPE', 415), 415],
    [new UnsupportedMediaTypeError('charset must be utf-8'), 415],
    [new UnauthorizedError('no token'), 401],
    [new OrderNotFoundError('7b0a3c5e-2f4d-4c8a-9b61-3d2e8f1a6c90'), 404],
    [new IdempotencyConflictError('k'), 422],
    [new BacklogFullError(10, 10), 503],
    [new StoreError('db down'), 503],
    [fastifyError('FST_ERR_SOMETHING_NEW', 431), 431],
    [new Error('boom'), 500],
    ['not even an error', 500],
  ])('maps %s to %i', (error, status) => {
    const problem = problemFor(error, '/order?x=1');
    expect(problem.status).toBe(status);
    expect(problem.body).toMatchObject({ status, instance: '/order' });
    expect(problem.body.type).toMatch(/^urn:problem-type:rabbit-functions:/);
    expect(problem.body.title).toBeTruthy();
  });

  it('names the fields of a validation error', () => {
    const problem = problemFor(new ValidationError([{ field: 'quantity', message: 'too small' }]));
    expect(problem.body.errors).toEqual([{ field: 'quantity', message: 'too small' }]);
  });

  it('asks to retry later when shedding load, and challenges for a bearer token', () => {
    expect(problemFor(new BacklogFullError(10, 10)).headers['Retry-After']).toMatch(/^\d+$/);
    expect(problemFor(new UnauthorizedError('x')).headers['WWW-Authenticate']).toMatch(/^Bearer/);
  });

  it('never shows an internal error message to the client', () => {
    expect(problemFor(new Error('password=hunter2 at db:5432')).body.detail).not.toMatch(/hunter2/);
  });
});

describe('the app refuses bad requests before touching store or broker', () => {
  let app: FastifyInstance;
  let broker: Broker;
  let publisher: Publisher;

  beforeAll(async () => {
    broker = new Broker({ urls: ['amqp://guest:guest@127.0.0.1:1'], maxAttempts: 1 });
    publisher = new Publisher(broker);
    app = buildApp({
      store: () => Promise.reject(new StoreError('no database in a unit test')),
      broker,
      publisher,
      config: loadConfig({}),
      logger: createLogger({ level: 'silent' }),
    });
    await app.ready();
  });

  afterAll(async () => {
    await app.close();
    await broker.close();
  });

  const post = (payload: string | Buffer, contentType = 'application/json') =>
    app.inject({ method: 'POST', url: '/order', payload, headers: { 'content-type': contentType } });
  // Valid but for its quantity: a request that gets as far as validation is a 400 naming quantity.
  const ORDER = JSON.stringify({ user_id: 'u', item: 'w', quantity: 0 });

  it.each([
    ['malformed JSON', () => post('{"user_id": "u",'), 400, 'body'],
    ['an empty JSON body', () => post(''), 400, 'body'],
    ['a text/plain body', () => post('user_id=u', 'text/plain'), 415, 'content-type'],
    ['a form body', () => post('user_id=u', 'application/x-www-form-urlencoded'), 415, 'content-type'],
    ['a body over 16 KiB', () => post(JSON.stringify({ user_id: 'u', item: 'x'.repeat(17 * 1024), quantity: 1 })), 413, 'body'],
    ['a negative quantity', () => post(JSON.stringify({ user_id: 'u', item: 'w', quantity: -1 })), 400, 'quantity'],
    ['a malformed order id', () => app.inject({ method: 'GET', url: '/orders/not-a-uuid' }), 400, 'order_id'],
    ['a bad page size', () => app.inject({ method: 'GET', url: '/orders?limit=0' }), 400, 'limit'],
    [
      'a bad Idempotency-Key',
      () => app.inject({ method: 'POST', url: '/order', payload: {}, headers: { 'idempotency-key': 'a b' } }),
      400,
      'Idempotency-Key',
    ],
    ['a body without Content-Type', () => app.inject({ method: 'POST', url: '/order', payload: ORDER }), 415, 'content-type'],
    ['a POST with neither body nor Content-Type', () => app.inject({ method: 'POST', url: '/order' }), 415, 'content-type'],
    ['a UTF-16 body', () => post(Buffer.from(ORDER, 'utf16le'), 'application/json; charset=utf-16le'), 415, 'content-type'],
    ['JSON labelled UTF-16', () => post(ORDER, 'application/json; charset=UTF-16'), 415, 'content-type'],
    ['JSON labelled Latin-1', () => post(ORDER, 'application/json; charset="latin1"'), 415, 'content-type'],
    [
      'bytes that are not UTF-8',
      () => post(Buffer.concat([Buffer.from('{"user_id":"'), Buffer.from([0xe9]), Buffer.from('","item":"w","quantity":1}')])),
      400,
      'body',
    ],
    [
      'a GET with a body',
      () => app.inject({ method: 'GET', url: '/orders', payload: '{}', headers: { 'content-type': 'application/json' } }),
      400,
      'body',
    ],
    ['a GET with a body and no Content-Type', () => app.inject({ method: 'GET', url: '/health', payload: 'x' }), 400, 'body'],
  ])('answers %s with a problem naming the field', async (_what, send, status, field) => {
    const response = await send();
    expect(response.statusCode).toBe(status);
    expect(response.headers['content-type']).toMatch(PROBLEM_CONTENT_TYPE);
    const body = response.json();
    expect(body).toMatchObject({ status, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
    expect(body.errors.map((e: { field: string }) => e.field)).toContain(field);
  });

  it.each(['null', '"hi"', '42', '[1]', '\ufeffnull'])(
    'answers JSON that is not an object (%s) with 400: the body must be a JSON object',
    async (body) => {
      const response = await post(body);
      expect(response.statusCode).toBe(400);
      expect(response.headers['content-type']).toMatch(PROBLEM_CONTENT_TYPE);
      expect(response.json().errors).toEqual([{ field: 'body', message: 'must be a JSON object' }]);
    },
  );

  it('reads JSON in UTF-8, with or without the charset parameter and a byte-order mark', async () => {
    for (const [payload, contentType] of [
      [ORDER, 'application/json; charset=utf-8'],
      [ORDER, 'Application/JSON;charset="UTF-8"'],
      [`\ufeff${ORDER}`, 'application/json'],
      [JSON.stringify({ user_id: 'ü-🦄', item: 'w', quantity: 0 }), 'application/json'],
    ]) {
      const response = await post(payload!, contentType);
      expect(response.json().errors, `${contentType}: ${response.body}`).toEqual([{ field: 'quantity', message: expect.any(String) }]);
    }
  });

  it('answers an unknown route with 404 problem+json', async () => {
    const response = await app.inject({ method: 'DELETE', url: '/order' });
    expect(response.statusCode).toBe(404);
    expect(response.headers['content-type']).toMatch(PROBLEM_CONTENT_TYPE);
    expect(response.json()).toMatchObject({ status: 404, instance: '/order' });
  });

  it('answers admin requests with 401 when ADMIN_TOKEN is unset, whatever the token', async () => {
    const response = await app.inject({ method: 'GET', url: '/admin/stock', headers: { authorization: 'Bearer some-token-of-any-kind' } });
    expect(response.statusCode).toBe(401);
    expect(response.json().detail).toMatch(/disabled/);
  });

  it('answers 503, not 500, when the database cannot be opened', async () => {
    const response = await app.inject({ method: 'GET', url: '/orders' });
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBeDefined();
  });

  it('reports both dependencies down on /health', async () => {
    const response = await app.inject({ method: 'GET', url: '/health' });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toEqual({ status: 'unavailable', checks: { broker: 'down', database: 'down' }, down: ['broker', 'database'] });
  });

  it('echoes a sane X-Correlation-Id and replaces a bad one', async () => {
    const kept = await app.inject({ method: 'GET', url: '/nope', headers: { 'x-correlation-id': 'corr-1' } });
    expect(kept.headers['x-correlation-id']).toBe('corr-1');
    const replaced = await app.inject({ method: 'GET', url: '/nope', headers: { 'x-correlation-id': 'bad id' } });
    expect(replaced.headers['x-correlation-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('errors carry their own answer', () => {
  it('a subclass inherits its parent\u2019s status and type, whatever it is named; a rename changes nothing', async () => {
    const { NotFoundError, UnavailableError } = await import('../../shared/contract/errors');
    class ParcelMissingError extends NotFoundError {}
    class RenamedStoreError extends (await import('../../shared/store/errors')).StoreError {}
    expect(problemFor(new ParcelMissingError('no parcel 7')).body).toMatchObject({
      status: 404,
      type: problemType('not-found'),
      detail: 'no parcel 7',
    });
    expect(problemFor(new RenamedStoreError('down')).body).toMatchObject({ status: 503, type: problemType('database-unavailable') });
    expect(problemFor(new UnavailableError('busy')).headers).toEqual({ 'Retry-After': '5' });
  });

  it('an error that only looks like ours by name is a 500', () => {
    const impostor = Object.assign(new Error('x'), { name: 'ValidationError' });
    expect(problemFor(impostor).status).toBe(500);
  });
});
