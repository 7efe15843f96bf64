/**
 * The correlation id of a request: the client's `X-Correlation-Id` when it is sane, else API Gateway's
 * request id (when invoked through Lambda), else a new UUID. Echoed in the response header and carried on
 * the order and on every message the order causes.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
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

/** API Gateway's request id, when @fastify/aws-lambda decorated the request with the event. */
const apiGatewayRequestId = (request: FastifyRequest): string | undefined => {
  const lambda = (request as { awsLambda?: { event?: { requestContext?: { requestId?: unknown } } } }).awsLambda;
  return saneCorrelationId(lambda?.event?.requestContext?.requestId);
};

export const correlationPlugin = expose('correlation', async (app) => {
  app.decorateRequest('correlationId', '');
  app.addHook('onRequest', async (request, reply) => {
    request.correlationId = saneCorrelationId(request.headers[CORRELATION_HEADER]) ?? apiGatewayRequestId(request) ?? randomUUID();
    request.log = request.log.child({ correlationId: request.correlationId });
    reply.header('X-Correlation-Id', request.correlationId);
  });
});
