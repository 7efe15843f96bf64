/** The HTTP function's middy logging middleware: one JSON line per invocation, also when it fails. */
import middy from '@middy/core';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { createLambdaContext } from 'serverless-offline-rabbitmq';
import { describe, expect, it } from 'vitest';
import { httpLogging } from '../../shared/http';
import { createLogger } from '../../shared/logging';

const event = { version: '2.0', routeKey: 'POST /order', requestContext: { requestId: 'api-req-1' } } as unknown as APIGatewayProxyEventV2;

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ level: 'info', destination: { write: (line: string) => lines.push(JSON.parse(line)) } });
  return { lines, logger };
}

describe('httpLogging', () => {
  it('writes one line with function, request ids, route, status and duration', async () => {
    const { lines, logger } = capture();
    const handler = middy(async () => ({ statusCode: 202, body: '{}' })).use(httpLogging({ functionName: 'order-intake', logger }));
    const context = createLambdaContext({ functionName: 'order-intake', timeoutSeconds: 30, memorySize: 512, requestId: 'lambda-req-1' });
    await handler(event, context);
    await handler(event, context);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      function: 'order-intake',
      requestId: 'lambda-req-1',
      apiRequestId: 'api-req-1',
      routeKey: 'POST /order',
      statusCode: 202,
      durationMs: expect.any(Number),
      message: 'invocation finished',
    });
    expect(lines[1]!.coldStart).toBe(false);
  });

  it("leaves out serverless-offline's API Gateway request id, the same constant for every request", async () => {
    const { lines, logger } = capture();
    const handler = middy(async () => ({ statusCode: 202, body: '{}' })).use(httpLogging({ functionName: 'order-intake', logger }));
    const offline = {
      ...event,
      requestContext: { accountId: 'offlineContext_accountId', apiId: 'offlineContext_apiId', requestId: 'offlineContext_resourceId' },
    } as unknown as APIGatewayProxyEventV2;
    const context = createLambdaContext({ functionName: 'order-intake', timeoutSeconds: 30, memorySize: 512, requestId: 'lambda-req-2' });
    await handler(offline, context);
    expect(lines[0]).toMatchObject({ requestId: 'lambda-req-2', message: 'invocation finished' });
    expect(lines[0]).not.toHaveProperty('apiRequestId');
  });

  it('logs a failed invocation at error level and lets the error through', async () => {
    const { lines, logger } = capture();
    const handler = middy(async () => {
      throw new Error('boom');
    }).use(httpLogging({ functionName: 'order-intake', logger }));
    const context = createLambdaContext({ functionName: 'order-intake', timeoutSeconds: 30, memorySize: 512 });
    await expect(handler(event, context)).rejects.toThrow('boom');
    expect(lines).toEqual([
      expect.objectContaining({ level: 'error', message: 'invocation failed', err: expect.objectContaining({ message: 'boom' }) }),
    ]);
  });
});
