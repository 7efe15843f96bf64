/**
 * The HTTP apps never load fastify's schema compilers (ajv, fast-json-stringify: a quarter of the intake bundle,
 * left out of it): requests are validated with zod, and a route that declares a JSON schema is refused when the
 * app starts, with a message that says where validation lives, instead of failing on its first request.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpApp } from '../../shared/http/base-app';
import { createLogger } from '../../shared/logging';

const apps: Array<{ close(): Promise<unknown> }> = [];
const app = () => {
  const made = createHttpApp({ functionName: 'schema-test', logger: createLogger({ level: 'silent' }) });
  apps.push(made);
  return made;
};

describe('HTTP apps without fastify schema compilers', () => {
  afterEach(async () => {
    for (const made of apps.splice(0)) await made.close();
  });

  it('serves routes without schemas, JSON in and out', async () => {
    const made = app();
    made.post('/echo', async (request) => ({ got: request.body }));
    const response = await made.inject({ method: 'POST', url: '/echo', payload: { a: 1 } });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ got: { a: 1 } });
  });

  it('refuses a route with a body schema at start, naming zod as the way to validate', async () => {
    const made = app();
    made.post('/typed', { schema: { body: { type: 'object' } } }, async () => ({}));
    await expect(made.ready()).rejects.toThrow(/Route schemas are not compiled here \(validation\): validate requests with zod/);
  });

  it('refuses a response schema too', async () => {
    const made = app();
    made.get('/typed', { schema: { response: { 200: { type: 'object' } } } }, async () => ({}));
    await expect(made.ready()).rejects.toThrow(/Route schemas are not compiled here \(serialization\)/);
  });
});
