/**
 * Middy middleware for the HTTP function: one log line per invocation with the Lambda request id, API
 * Gateway's when it is unique per request (see uniqueApiRequestId), route, status, duration and cold start;
 * the request itself is logged by the app.
 *
 *   middy(awsLambdaFastify(app)).use(httpLogging({ functionName: 'order-intake' }))
 */

import type middy from '@middy/core';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { takeColdStart } from 'middy-rabbitmq/core';
import { flushTracing } from 'middy-rabbitmq/tracing';
import { type Logger, logger as processLogger } from '../logging';
import { uniqueApiRequestId } from './correlation';

export interface HttpLoggingOptions {
  functionName: string;
  /** Default: the process logger. */
  logger?: Logger;
}

type Bindings = { requestId: string; apiRequestId: string | undefined; routeKey: string | undefined; coldStart: boolean };
type Internal = { startedAt?: number; bindings?: Bindings };
type Result = { statusCode?: number } | null | undefined;
type Request = middy.Request<APIGatewayProxyEventV2, Result, Error, Context, Internal>;

export function httpLogging(options: HttpLoggingOptions): middy.MiddlewareObj<APIGatewayProxyEventV2, Result, Error, Context, Internal> {
  const root = () => options.logger ?? processLogger();
  // The invocation's logger is made only for a line that is written: a pino child costs its bindings'
  // serialisation and redaction, twice per request (bench:http's profile), for a line LOG_LEVEL=warn drops.
  const log = (request: Request) => {
    const base = root().child({ function: options.functionName });
    return request.internal.bindings ? base.child(request.internal.bindings) : base;
  };
  const elapsed = (request: Request) =>
    request.internal.startedAt === undefined ? undefined : Math.round((performance.now() - request.internal.startedAt) * 10) / 10;

  return {
    before: (request: Request) => {
      const { event, context } = request;
      request.internal.startedAt = performance.now();
      request.internal.bindings = {
        requestId: context.awsRequestId,
        // Only a real one: serverless-offline's is the same constant for every request.
        apiRequestId: uniqueApiRequestId(event),
        routeKey: event?.routeKey,
        coldStart: takeColdStart(),
      };
    },
    // Ended spans are exported before the invocation returns (Lambda may freeze the process right after).
    after: async (request: Request) => {
      if (root().isLevelEnabled('info'))
        log(request).info({ statusCode: request.response?.statusCode, durationMs: elapsed(request) }, 'invocation finished');
      await flushTracing();
    },
    onError: async (request: Request) => {
      log(request).error({ err: request.error, durationMs: elapsed(request) }, 'invocation failed');
      await flushTracing();
    },
  };
}
