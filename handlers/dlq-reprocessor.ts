/**
 * DLQ reprocessor (HTTP API, admin): the admin app over shared/dlq (shared/http/dlq-app.ts), wrapped for
 * Lambda. `npm run dlq` is the same reprocessor from the command line.
 */
import awsLambdaFastify from '@fastify/aws-lambda';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { buildDlqApp, DLQ_FUNCTION_NAME } from '../shared/http/dlq-app';
import { httpLogging } from '../shared/http/lambda-logging';

/** The fastify app behind the handler (tests close it with `app.close()`). */
export const app = buildDlqApp();

export const handler = middy(awsLambdaFastify<APIGatewayProxyEventV2>(app)).use(httpLogging({ functionName: DLQ_FUNCTION_NAME }));

// Plugins load during the cold start, not during the first request.
// Not awaited: `serverless invoke local` loads handlers with require(), which refuses top-level await; a
// failure here shows on the first request, which waits for the same ready().
void app.ready().then(undefined, () => undefined);
