/** The Lambda `Context` an in-process invocation gets, with a deadline from the function's timeout. */
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';

export interface ContextOptions {
  functionName: string;
  timeoutSeconds: number;
  memorySize: number;
  region?: string;
  requestId?: string;
}

/** Like an execution environment's: one log stream for the life of this process. */
const logStreamName = `local/[$LATEST]${randomUUID().replaceAll('-', '')}`;

/** The deprecated callbacks; made once, shared by every context (one is built per invocation). */
function unsupported(name: string): () => never {
  return () => {
    throw new Error(`context.${name}() is deprecated in Lambda; return or throw from the handler instead`);
  };
}
const done = unsupported('done');
const fail = unsupported('fail');
const succeed = unsupported('succeed');

function remainingUntil(deadline: number): () => number {
  return () => Math.max(0, deadline - Date.now());
}

/**
 * Contexts for one function: what does not change between its invocations (region, ARN, names) is worked out
 * once, so an invocation pays for its deadline and one object. The region is read when the factory is made.
 */
export function lambdaContextFactory(options: Omit<ContextOptions, 'requestId'>): (requestId?: string) => Context {
  const { functionName } = options;
  const region = options.region ?? process.env.AWS_REGION ?? 'local-1';
  const invokedFunctionArn = `arn:aws:lambda:${region}:000000000000:function:${functionName}`;
  const memoryLimitInMB = String(options.memorySize);
  const logGroupName = `/aws/lambda/${functionName}`;
  const timeoutMs = options.timeoutSeconds * 1000;
  return (requestId) => ({
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn,
    memoryLimitInMB,
    awsRequestId: requestId ?? randomUUID(),
    logGroupName,
    logStreamName,
    getRemainingTimeInMillis: remainingUntil(Date.now() + timeoutMs),
    done,
    fail,
    succeed,
  });
}

export function createLambdaContext(options: ContextOptions): Context {
  return lambdaContextFactory(options)(options.requestId);
}
