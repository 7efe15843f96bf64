/**
 * The correlation id of a request: the client's `X-Correlation-Id` when it is sane, else API Gateway's
 * request id when it really is one request's own (see uniqueApiRequestId), else a new UUID. Echoed in the
 * response header and carried on the order and on every message the order causes.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Logger } from '../logging';
import { expose } from './expose';
import { MAX_KEY_LENGTH } from './limits';

declare module 'fastify' {
  interface FastifyRequest {
    correlationId: string;
  }
}

const CORRELATION_HEADER = 'x-correlation-id';

const SANE = new RegExp(`^[A-Za-z0-9._:@/+=-]{1,${MAX_KEY_LENGTH}}$`);

/** The header value if it is one printable token of reasonable length; undefined otherwise. */
export const saneCorrelationId = (value: unknown): string | undefined =>
  typeof value === 'string' && SANE.test(value) ? value : undefined;

/**
 * serverless-offline fills API Gateway's fields with constants of its own: every HTTP API (v2) event it builds
 * has `requestContext.requestId` "offlineContext_resourceId" (v1 events get a UUID, but the same
 * `offlineContext_apiId`, `offlineContext_accountId`...), its authorizer events "random-request-id", its
 * WebSocket events "1234567890". None of them names one request.
 */
const EMULATOR_VALUE = /^offlineContext_/;
const EMULATOR_CONSTANTS: ReadonlySet<string> = new Set(['random-request-id', '1234567890']);

type RequestContext = { requestId?: unknown; apiId?: unknown; accountId?: unknown };

/**
 * API Gateway's request id for this event, only when it is really unique per request: a sane token, not an
 * emulator's constant, from an event that no emulator built (none of serverless-offline's `offlineContext_`
 * values in its request context), in a process no emulator runs (`IS_OFFLINE`, which serverless-offline sets
 * for its handlers, and `IS_LOCAL`, which `serverless invoke local` and `npm run invoke` set: a fixture replayed
 * is not a new request). Undefined otherwise, so the caller makes a new id.
 */
export function uniqueApiRequestId(event: unknown, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.IS_OFFLINE || env.IS_LOCAL) return undefined;
  const context = (event as { requestContext?: RequestContext } | null | undefined)?.requestContext;
  if (!context) return undefined;
  const emulated = [context.apiId, context.accountId].some((value) => typeof value === 'string' && EMULATOR_VALUE.test(value));
  const id = saneCorrelationId(context.requestId);
  if (emulated || id === undefined || EMULATOR_VALUE.test(id) || EMULATOR_CONSTANTS.has(id)) return undefined;
  return id;
}

/** API Gateway's request id, when @fastify/aws-lambda decorated the request with the event and the id is unique. */
const apiGatewayRequestId = (request: FastifyRequest): string | undefined =>
  uniqueApiRequestId((request as { awsLambda?: { event?: unknown } }).awsLambda?.event);

export const correlationPlugin = expose('correlation', async (app) => {
  app.decorateRequest('correlationId', '');
  app.addHook('onRequest', async (request, reply) => {
    request.correlationId = saneCorrelationId(request.headers[CORRELATION_HEADER]) ?? apiGatewayRequestId(request) ?? randomUUID();
    // On fastify's logger for this request alone (see tracing.ts): bound in place, no second child per request.
    const own = request.log as Partial<Pick<Logger, 'setBindings'>>;
    if (request.log !== app.log && own.setBindings) own.setBindings({ correlationId: request.correlationId });
    else request.log = request.log.child({ correlationId: request.correlationId });
    reply.header('X-Correlation-Id', request.correlationId);
  });
});
