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

export function createLambdaContext(options: ContextOptions): Context {
  const region = options.region ?? process.env.AWS_REGION ?? 'local-1';
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: options.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${options.functionName}`,
    memoryLimitInMB: String(options.memorySize),
    awsRequestId: options.requestId ?? randomUUID(),
    logGroupName: `/aws/lambda/${options.functionName}`,
    logStreamName,
    getRemainingTimeInMillis: remainingUntil(deadline),
    done,
    fail,
    succeed,
  };
}
