/**
 * Order intake (HTTP API): POST /order, GET /orders, GET /orders/{order_id}, GET /health, admin stock.
 * The fastify app lives in shared/http; this entry only wraps it for Lambda. Store and broker open on first
 * use and are reused while the container lives.
 */
import awsLambdaFastify from '@fastify/aws-lambda';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { buildApp, FUNCTION_NAME, httpLogging } from '../shared/http';

/** The fastify app behind the handler (tests close it with `app.close()`). */
export const app = buildApp();

export const handler = middy(awsLambdaFastify<APIGatewayProxyEventV2>(app)).use(httpLogging({ functionName: FUNCTION_NAME }));

// Plugins load during the cold start, not during the first request.
// Not awaited: `serverless invoke local` loads handlers with require(), which refuses top-level await; a
// failure here shows on the first request, which waits for the same ready().
void app.ready().then(undefined, () => undefined);
