/**
 * DLQ reprocessor (HTTP API, admin): a thin fastify app over shared/dlq, wrapped for Lambda.
 *
 *   GET  /dlq?queue=<dlq>&sample=<n>   each DLQ's depth and first messages (nothing removed, order kept),
 *                                      and the parking lot's depth                       → 200 DlqListing
 *   POST /dlq/redrive                  {queue, limit?, rate?, error_class?, error_name?, dry_run?}
 *                                      moves messages back to their work queue           → 200 RedriveReport
 *
 * Both need `Authorization: Bearer <ADMIN_TOKEN>` (401 without it, with a wrong one, or when ADMIN_TOKEN is
 * unset). Bad input is a 400 problem+json naming the field; a DLQ another list/redrive is reading is a 409.
 * The token check and the problem+json answers are order intake's (shared/http), not copies.
 */
import { randomUUID } from 'node:crypto';
import awsLambdaFastify from '@fastify/aws-lambda';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import Fastify, { type FastifyInstance, type FastifyPluginAsync, LogController } from 'fastify';
import { type Config, config as processConfig } from '../shared/config';
import { DlqReprocessor, parseListRequest, parseRedriveRequest } from '../shared/dlq';
import { authorizationFailure } from '../shared/http/admin-auth';
import { correlationPlugin } from '../shared/http/correlation';
import { httpLogging } from '../shared/http/lambda-logging';
import { problemPlugin } from '../shared/http/problem-plugin';
import { UnauthorizedError } from '../shared/http/problem';
import { type Logger, logger as processLogger } from '../shared/logging';
import { type Broker, messaging, type Publisher } from '../shared/messaging';

export const FUNCTION_NAME = 'dlq-reprocessor';

export interface DlqAppOptions {
  /** Broker and publisher go together (default: the process-wide messaging()). */
  broker?: Broker;
  publisher?: Publisher;
  /** Default: the process configuration (ADMIN_TOKEN, DLQ_*). */
  config?: Config;
  logger?: Logger;
  /** DLQs shown besides the work queues' own. */
  extraQueues?: readonly string[];
  /** A redrive starts no new message after this long, to answer inside the function's 60 s timeout (default 45 s). */
  maxDurationMs?: number;
  /** How long a read waits for the next message before deciding there is none (default 2 s). */
  idleTimeoutMs?: number;
}

const defaults = { maxDurationMs: 45_000 };

/** The admin routes: token first, then the reprocessor; its errors become what the problem plugin answers. */
const dlqRoutes = (reprocessor: DlqReprocessor, cfg: Config, maxDurationMs: number): FastifyPluginAsync => async (app) => {
  app.addHook('onRequest', async (request) => {
    const failure = authorizationFailure(request.headers.authorization, cfg.adminToken);
    if (failure) throw new UnauthorizedError(failure);
  });

  app.get('/dlq', async (request) => reprocessor.list(parseListRequest(request.query)));

  app.post('/dlq/redrive', async (request) => {
    const report = await reprocessor.redrive({ ...parseRedriveRequest(request.body), maxDurationMs });
    request.log.info(
      { dlq: report.dlq, dryRun: report.dryRun, moved: report.moved.length, parked: report.parked.length, skipped: report.skipped.length, failed: report.failed.length, stopped: report.stopped },
      'dlq redrive requested',
    );
    return report;
  });
};

/** The app behind the handler; tests build their own with injected broker, publisher and config. */
export function buildDlqApp(options: DlqAppOptions = {}): FastifyInstance {
  if (Boolean(options.broker) !== Boolean(options.publisher)) throw new TypeError('buildDlqApp: pass broker and publisher together');
  const { maxDurationMs } = { ...defaults, ...options };
  const cfg = options.config ?? processConfig();
  const log = options.logger ?? processLogger().child({ function: FUNCTION_NAME });
  const { broker, publisher } = options.broker && options.publisher ? { broker: options.broker, publisher: options.publisher } : messaging();
  const reprocessor = new DlqReprocessor({
    broker,
    publisher,
    config: cfg,
    logger: log,
    ...(options.extraQueues ? { extraQueues: options.extraQueues } : {}),
    ...(options.idleTimeoutMs ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
  });
  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    bodyLimit: 16 * 1024,
  });
  app.removeContentTypeParser('text/plain');
  app.register(problemPlugin);
  app.register(correlationPlugin);
  app.register(dlqRoutes(reprocessor, cfg, maxDurationMs));
  app.addHook('onResponse', async (request, reply) => {
    const line = { method: request.method, path: request.url.split('?')[0], statusCode: reply.statusCode, durationMs: Math.round(reply.elapsedTime) };
    if (reply.statusCode >= 500) request.log.error(line, 'request completed');
    else request.log.info(line, 'request completed');
  });
  return app as unknown as FastifyInstance;
}

/** The fastify app behind the handler (tests close it with `app.close()`). */
export const app = buildDlqApp();

export const handler = middy(awsLambdaFastify<APIGatewayProxyEventV2>(app)).use(httpLogging({ functionName: FUNCTION_NAME }));

// Plugins load during the cold start, not during the first request.
// Not awaited: `serverless invoke local` loads handlers with require(), which refuses top-level await; a
// failure here shows on the first request, which waits for the same ready().
void app.ready().then(undefined, () => undefined);
