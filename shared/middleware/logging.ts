/**
 * Structured logging: batch-level middleware that gives the invocation a logger carrying function name,
 * request id and cold start, puts it on `context.logger`, and writes one line when the invocation ends
 * (with its report and duration) or fails. Per-record lines come from `forEachRecord`, on child loggers
 * that add message id, queue, attempt and correlation id.
 *
 *   middy(handler).use(structuredLogging({ functionName: 'notification' }))
 */
import type middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { type Logger, pino } from 'pino';
import { takeColdStart } from './lib/cold-start.js';

export interface StructuredLoggingOptions {
  /** Defaults to the Lambda context's function name. */
  functionName?: string;
  /** The logger to derive from, or a function giving it at the first invocation (default: defaultLogger()). */
  logger?: Logger | (() => Logger);
}

let fallback: Logger | undefined;
/** The logger used when none is given: plain pino JSON at LOG_LEVEL (default info). */
export const defaultLogger = (): Logger => (fallback ??= pino({ level: process.env.LOG_LEVEL ?? 'info' }));

type Request = middy.Request<unknown, unknown, Error, Context & { logger?: Logger }, { startedAt?: number }>;

export function structuredLogging(
  options: StructuredLoggingOptions = {},
): middy.MiddlewareObj<unknown, unknown, Error, Context & { logger?: Logger }> {
  const given = options.logger;
  const base = (): Logger => (typeof given === 'function' ? given() : (given ?? defaultLogger()));
  const before = (request: Request): void => {
    const { context } = request;
    request.internal.startedAt = performance.now();
    context.logger = base().child({
      function: options.functionName ?? context.functionName,
      requestId: context.awsRequestId,
      coldStart: takeColdStart(),
    });
  };
  const elapsed = (request: Request) =>
    request.internal.startedAt === undefined ? undefined : Math.round((performance.now() - request.internal.startedAt) * 10) / 10;

  const after = (request: Request): void => {
    request.context.logger?.info({ report: request.response, durationMs: elapsed(request) }, 'invocation finished');
  };
  // Safe when `before` never ran: falls back to the process logger.
  const onError = (request: Request): void => {
    const log = request.context.logger ?? base().child({ function: options.functionName });
    log.error({ err: request.error, durationMs: elapsed(request) }, 'invocation failed; the batch will be redelivered');
  };
  return { before, after, onError } as middy.MiddlewareObj<unknown, unknown, Error, Context & { logger?: Logger }>;
}
