/**
 * Which API Gateway request id may stand for one request's correlation id (issue 14): under serverless-offline
 * every HTTP API event has requestContext.requestId "offlineContext_resourceId", so taking it gave every order
 * the same correlation id. The end-to-end check is test/integration/correlation-offline.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { uniqueApiRequestId } from '../../shared/http';

/** An HTTP API (v2) event's request context as AWS sends it (AWS's sample, fixtures/order-intake/post-order.json). */
const aws = { accountId: '123456789012', apiId: 'api-id', requestId: 'JKJaXmPLvHcESHA=' };
/** What serverless-offline 14 puts there (src/events/http/lambda-events/LambdaProxyIntegrationEventV2.js). */
const offlineV2 = { accountId: 'offlineContext_accountId', apiId: 'offlineContext_apiId', requestId: 'offlineContext_resourceId' };
/** Its REST API (v1) events: a fresh UUID, but built by the emulator all the same. */
const offlineV1 = {
  accountId: 'offlineContext_accountId',
  apiId: 'offlineContext_apiId',
  requestId: '0b6b7e5c-1f55-4c4f-8a1e-3c8d3c1c2b9a',
};

const event = (requestContext: Record<string, unknown>) => ({ version: '2.0', requestContext });

describe('uniqueApiRequestId', () => {
  it("takes API Gateway's request id in a deployed function", () => {
    expect(uniqueApiRequestId(event(aws), {})).toBe('JKJaXmPLvHcESHA=');
    expect(uniqueApiRequestId(event(aws), { AWS_LAMBDA_FUNCTION_NAME: 'rabbit-functions-prod-orderIntake' })).toBe('JKJaXmPLvHcESHA=');
  });

  it("never takes serverless-offline's constant, nor any id from an event it built", () => {
    expect(uniqueApiRequestId(event(offlineV2), {})).toBeUndefined();
    expect(uniqueApiRequestId(event({ ...aws, requestId: 'offlineContext_resourceId' }), {})).toBeUndefined();
    expect(uniqueApiRequestId(event(offlineV1), {})).toBeUndefined();
    expect(uniqueApiRequestId(event({ ...aws, requestId: 'random-request-id' }), {})).toBeUndefined();
    expect(uniqueApiRequestId(event({ ...aws, requestId: '1234567890' }), {})).toBeUndefined();
  });

  it('takes nothing in a process an emulator runs: serverless-offline (IS_OFFLINE), invoke local (IS_LOCAL)', () => {
    expect(uniqueApiRequestId(event(aws), { IS_OFFLINE: 'true' })).toBeUndefined();
    expect(uniqueApiRequestId(event(aws), { IS_LOCAL: 'true' })).toBeUndefined();
  });

  it('takes nothing that is not one sane token', () => {
    expect(uniqueApiRequestId(event({ ...aws, requestId: 'bad id\nInjected: yes' }), {})).toBeUndefined();
    expect(uniqueApiRequestId(event({ ...aws, requestId: 42 }), {})).toBeUndefined();
    expect(uniqueApiRequestId(event({ accountId: 'x' }), {})).toBeUndefined();
    expect(uniqueApiRequestId({}, {})).toBeUndefined();
    expect(uniqueApiRequestId(undefined, {})).toBeUndefined();
  });
});
