/** The POST /order body schema, the idempotency hash and the header checks, without broker or database. */

import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseInput, storableText, ValidationError } from '../../shared/contract/validation';
import { canonicalJson, ListOrdersQuery, PlaceOrderRequest, requestHash } from '../../shared/domain/orders';
import { DomainEvent, newEvent } from '../../shared/events';
import { authorizationFailure, idempotencyKey, saneCorrelationId } from '../../shared/http';

const fieldsOf = (input: unknown): string[] => {
  try {
    parseInput(PlaceOrderRequest, input);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return (error as ValidationError).issues.map((issue) => issue.field);
  }
  return [];
};

describe('PlaceOrderRequest', () => {
  it('accepts a valid order and trims its strings', () => {
    expect(parseInput(PlaceOrderRequest, { user_id: ' u-1 ', item: 'widget', quantity: 3 })).toEqual({
      user_id: 'u-1',
      item: 'widget',
      quantity: 3,
    });
  });

  it.each([
    [{ user_id: 'u', item: 'widget', quantity: 0 }, ['quantity']],
    [{ user_id: 'u', item: 'widget', quantity: 1.5 }, ['quantity']],
    [{ user_id: 'u', item: 'widget', quantity: '2' }, ['quantity']],
    [{ user_id: 'u', item: 'widget', quantity: 2_000_000 }, ['quantity']],
    [{ user_id: '', item: 'widget', quantity: 1 }, ['user_id']],
    [{ user_id: 'u', quantity: 1 }, ['item']],
    [{ user_id: 'u', item: 'widget', quantity: 1, qty: 1 }, ['qty']],
    [{}, ['user_id', 'item', 'quantity']],
  ])('names the bad field of %j', (input, fields) => {
    expect(fieldsOf(input)).toEqual(fields);
  });

  it.each([null, 'order', [1, 2], 42])('names the body when it is not an object (%j)', (input) => {
    expect(fieldsOf(input)).toEqual(['body']);
  });
});

describe('storableText', () => {
  it.each([
    ['a NUL', 'a\u0000b', /NUL/],
    ['a lone high surrogate', '\ud800', /well-formed/],
    ['a lone low surrogate', 'x\udc00y', /well-formed/],
    ['surrogates in the wrong order', '\udc00\ud800', /well-formed/],
  ])('refuses %s', (_what, text, message) => {
    expect(() => parseInput(storableText(), text, 'name')).toThrow(message);
  });

  it('takes any other text, characters outside the BMP included', () => {
    for (const text of ['widget', '🦄', 'é\u00a0ü', 'tab\there', '\uffff']) expect(parseInput(storableText(), text)).toBe(text);
  });

  it('guards every string of the event schemas, so a broker message with a NUL is a schema violation', () => {
    const fields = { order_id: randomUUID(), user_id: 'u', item: 'widget', quantity: 1 };
    const reserved = newEvent('InventoryReserved', fields);
    const failed = newEvent('InventoryFailed', { ...fields, reason: 'out_of_stock' });
    expect(DomainEvent.safeParse(reserved).success).toBe(true);
    for (const bad of [
      { ...reserved, user_id: 'u\u0000' },
      { ...reserved, item: '\ud800' },
      { ...failed, reason: 'out\u0000of_stock' },
    ]) {
      expect(DomainEvent.safeParse(bad).success).toBe(false);
    }
  });
});

describe('request hash for Idempotency-Key', () => {
  it('does not depend on key order or surrounding whitespace', () => {
    const a = parseInput(PlaceOrderRequest, { user_id: 'u', item: 'widget', quantity: 2 });
    const b = parseInput(PlaceOrderRequest, { quantity: 2, item: ' widget', user_id: 'u' });
    expect(requestHash(a)).toBe(requestHash(b));
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 1 }] })).toBe('{"a":[{"c":1,"d":2}],"b":1}');
  });

  it('differs for another quantity', () => {
    const a = parseInput(PlaceOrderRequest, { user_id: 'u', item: 'widget', quantity: 2 });
    expect(requestHash(a)).not.toBe(requestHash({ ...a, quantity: 3 }));
  });
});

describe('GET /orders query', () => {
  it('defaults the limit and names a bad one', () => {
    expect(parseInput(ListOrdersQuery, {}, 'query').limit).toBe(20);
    expect(parseInput(ListOrdersQuery, { limit: '5' }, 'query').limit).toBe(5);
    for (const limit of ['0', '101', 'abc', '2.5']) {
      expect(() => parseInput(ListOrdersQuery, { limit }, 'query')).toThrow(/limit: must be an integer from 1 to 100/);
    }
  });
});

describe('headers', () => {
  it('accepts a sane Idempotency-Key and refuses others, naming the header', () => {
    expect(idempotencyKey(undefined)).toBeUndefined();
    expect(idempotencyKey('order-2024-05-01-0001')).toBe('order-2024-05-01-0001');
    for (const bad of ['', 'has space', 'x'.repeat(201), 'é']) {
      expect(() => idempotencyKey(bad)).toThrow(/Idempotency-Key/);
    }
  });

  it('keeps a sane X-Correlation-Id only', () => {
    expect(saneCorrelationId('req-123:abc')).toBe('req-123:abc');
    expect(saneCorrelationId('JKJaXmPLvHcESHA=')).toBe('JKJaXmPLvHcESHA=');
    expect(saneCorrelationId('bad id\nInjected: yes')).toBeUndefined();
    expect(saneCorrelationId('x'.repeat(201))).toBeUndefined();
    expect(saneCorrelationId(['a', 'b'])).toBeUndefined();
  });

  it('authorizes only the admin bearer token, and nothing when admin is disabled', () => {
    const token = 'a-long-enough-admin-token';
    expect(authorizationFailure(`Bearer ${token}`, token)).toBeUndefined();
    expect(authorizationFailure(`bearer ${token}`, token)).toBeUndefined();
    expect(authorizationFailure(undefined, token)).toMatch(/Bearer/);
    expect(authorizationFailure(`Bearer ${token}x`, token)).toMatch(/Invalid/);
    expect(authorizationFailure(`Basic ${token}`, token)).toMatch(/Bearer/);
    expect(authorizationFailure(`Bearer ${token}`, undefined)).toMatch(/disabled/);
  });
});
