/** The admin bearer-token check, shared by every admin endpoint (stock, DLQ reprocessor). */
import { createHash, timingSafeEqual } from 'node:crypto';
import { expose } from './expose';
import { UnauthorizedError } from './problem';

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Why a request is not authorized, or undefined when its bearer token is the admin token. */
export function authorizationFailure(header: unknown, adminToken: string | undefined): string | undefined {
  if (!adminToken) return 'Admin endpoints are disabled (ADMIN_TOKEN is not set)';
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!match) return 'Send the admin token as "Authorization: Bearer <token>"';
  // Equal-length digests, so the comparison takes the same time whatever the token.
  return timingSafeEqual(digest(match[1]!), digest(adminToken)) ? undefined : 'Invalid admin token';
}

/**
 * The admin bearer-token check as a plugin: registered inside a route plugin, its hook guards exactly that
 * plugin's routes (exposed into the registering scope, encapsulated from the rest of the app). A token
 * that is unset refuses every request: admin is off by default.
 */
export const adminAuth = expose<{ token: string | undefined }>('admin-auth', async (app, { token }) => {
  app.addHook('onRequest', async (request) => {
    const failure = authorizationFailure(request.headers.authorization, token);
    if (failure) throw new UnauthorizedError(failure);
  });
});
