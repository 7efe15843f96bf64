/**
 * The problem+json error handler and not-found handler for the whole app (an exposed plugin, so both apply
 * to every route plugin registered after it).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { expose } from './expose';
import { PROBLEM_CONTENT_TYPE, problemFor, RouteNotFoundError } from './problem';

function sendProblem(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const problem = problemFor(error, request.url);
  if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
  else request.log.debug({ err: error, status: problem.status }, 'request refused');
  return reply.code(problem.status).headers(problem.headers).type(PROBLEM_CONTENT_TYPE).send(problem.body);
}

export const problemPlugin = expose('problem+json', async (app) => {
  app.setErrorHandler((error, request, reply) => sendProblem(error, request, reply));
  app.setNotFoundHandler((request, reply) => sendProblem(new RouteNotFoundError(request.method, request.url), request, reply));
});
