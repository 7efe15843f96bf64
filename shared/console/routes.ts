/**
 * The web console, served by the DLQ reprocessor under /console (so under `npm start` and when deployed):
 *
 *   GET /console                 the page (no data in it: it asks for the admin token, kept in sessionStorage)
 *   GET /console/console.js|css  its script and style
 *   GET /console/api/session     admin: 204 when the token is right (the page's sign-in)
 *   GET /console/api/flow        admin: every queue of the topology and every trigger (as `npm run status`)
 *
 * The page reads everything else from the admin API (/dlq, /dlq/message, /dlq/redrive, its jobs) and the order
 * routes, with `Authorization: Bearer <token>` on each request (never a token in a URL). Its assets and the
 * status code are imported on first use, so the other routes' cold start does not pay for them.
 */
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { Config } from '../config';
import { NotFoundError } from '../contract/errors';
import { adminAuth } from '../http/admin-auth';

/** No inline script or style, nothing from elsewhere, no framing: what a message carries can never run. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const send = (reply: FastifyReply, type: string, body: string) =>
  reply
    .header('content-type', `${type}; charset=utf-8`)
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-cache')
    .send(body);

const assets = () => import('./assets').then((module) => module.consoleAssets());

const flowRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  await app.register(adminAuth, { token: config.adminToken });
  // Whether a token is the admin token, and nothing else: the page's sign-in asks this before it keeps one.
  app.get('/console/api/session', async (_request, reply) => reply.code(204).send());
  app.get('/console/api/flow', async () => {
    const { collectFlow } = await import('./flow');
    return collectFlow(config);
  });
};

export const consoleRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  app.get('/console', async (_request, reply) => send(reply, 'text/html', (await assets()).html));
  app.get<{ Params: { file: string } }>('/console/:file', async (request, reply) => {
    const { file } = request.params;
    if (file === 'console.js') return send(reply, 'text/javascript', (await assets()).js);
    if (file === 'console.css') return send(reply, 'text/css', (await assets()).css);
    throw new NotFoundError(`The console has no file '${file}'`);
  });
  await app.register(flowRoutes, { config });
};
