/**
 * The DLQ reprocessor's admin API, on the same base as order intake (createHttpApp) and behind the same
 * admin-token plugin:
 *
 *   GET  /dlq?queue=<dlq>&sample=<n>           each DLQ's depth and first messages (nothing removed, order
 *                                              kept), and the parking lot's depth               → 200 DlqListing
 *   GET  /dlq/message?queue=<dlq>&position=<n>[&message_id=<id>]
 *                                              one message in full (properties, body masked)   → 200 DlqMessageDetail
 *   POST /dlq/redrive                          {queue, limit?, rate?, error_class?, error_name?, dry_run?}
 *                                              starts a redrive job                             → 202 RedriveJob, Location
 *   GET  /dlq/redrive/jobs/<id>                the job's state, progress, and report once done  → 200 RedriveJob
 *   POST /dlq/redrive/jobs/<id>/cancel         stops it before its next message                 → 202 RedriveJob
 *
 * A redrive runs as a job (shared/dlq/jobs.ts), as SQS's message move tasks do, so no request outlives API
 * Gateway's 30 s: this app only accepts it (a job message on `dlq-redrive-jobs`), and the `dlqRedriveJob`
 * queue function runs it, so the job advances even while Lambda freezes this instance between requests.
 * `npm run dlq -- redrive` stays synchronous. All of it needs `Authorization: Bearer
 * <ADMIN_TOKEN>` (401 without it, with a wrong one, or when ADMIN_TOKEN is unset). Bad input is a 400
 * problem+json naming the field; a DLQ another list/redrive is reading is a 409 (the reprocessor's errors carry
 * those answers). The web console (shared/console) is served under /console by the same app.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { type Config, config as processConfig } from '../config';
import { consoleRoutes } from '../console/routes';
import type { DlqReprocessor, RedriveJob, RedriveJobs, RedriveJobsOptions } from '../dlq';
import { lazy } from '../lib/lazy';
import { type Logger, logger as processLogger } from '../logging';
import { type Broker, messaging, type Publisher } from '../messaging';
import { adminAuth } from './admin-auth';
import { createHttpApp } from './base-app';

export const DLQ_FUNCTION_NAME = 'dlq-reprocessor';

export interface DlqAppOptions {
  /** Broker and publisher go together (default: the process-wide messaging()). */
  broker?: Broker;
  publisher?: Publisher;
  /** Default: the process configuration (ADMIN_TOKEN, DLQ_*). */
  config?: Config;
  logger?: Logger;
  /** DLQs shown besides the work queues' own. */
  extraQueues?: readonly string[];
  /** How long a read waits for the next message before deciding there is none (default 2 s). */
  idleTimeoutMs?: number;
  /** How redrive jobs are read (tests shorten the staleness) and where they are sent (tests use a queue of their own). */
  redriveJobs?: Pick<RedriveJobsOptions, 'staleAfterMs' | 'jobQueue'>;
}

/** Where a job's state is read. */
const jobPath = (id: string): string => `/dlq/redrive/jobs/${id}`;

const jobView = (job: RedriveJob) => ({ ...job, statusUrl: jobPath(job.id) });

/**
 * The reprocessor and its jobs, with the module they come from: loaded on the first /dlq request, not at the
 * function's cold start (in a deployed zip, shared/dlq is a chunk of its own: scripts/esbuild-plugins.cjs).
 */
interface DlqServices {
  reprocessor: DlqReprocessor;
  jobs: RedriveJobs;
  /** The requests' parsers (shared/dlq/options.ts). */
  parse: Pick<typeof import('../dlq'), 'parseListRequest' | 'parseMessageRequest' | 'parseRedriveRequest'>;
}

const dlqRoutes: FastifyPluginAsync<{ services: () => Promise<DlqServices>; config: Config }> = async (app, { services, config }) => {
  await app.register(adminAuth, { token: config.adminToken });

  app.get('/dlq', async (request) => {
    const { parse, reprocessor } = await services();
    return reprocessor.list(parse.parseListRequest(request.query));
  });

  app.get('/dlq/message', async (request) => {
    const { parse, reprocessor } = await services();
    return reprocessor.message(parse.parseMessageRequest(request.query));
  });

  app.post('/dlq/redrive', async (request, reply) => {
    const { parse, jobs } = await services();
    const job = await jobs.submit(parse.parseRedriveRequest(request.body));
    request.log.info({ jobId: job.id, dlq: job.dlq, dryRun: job.request.dryRun }, 'dlq redrive job requested');
    return reply.code(202).header('location', jobPath(job.id)).send(jobView(job));
  });

  app.get<{ Params: { id: string } }>('/dlq/redrive/jobs/:id', async (request) => {
    const { jobs } = await services();
    return jobView(await jobs.get(request.params.id));
  });

  app.post<{ Params: { id: string } }>('/dlq/redrive/jobs/:id/cancel', async (request, reply) => {
    const { jobs } = await services();
    const job = await jobs.cancel(request.params.id);
    request.log.info({ jobId: job.id, dlq: job.dlq }, 'dlq redrive job cancel requested');
    return reply.code(202).header('location', jobPath(job.id)).send(jobView(job));
  });
};

/** The app behind the DLQ handler; tests build their own with injected broker, publisher and config. */
export function buildDlqApp(options: DlqAppOptions = {}): FastifyInstance {
  if (Boolean(options.broker) !== Boolean(options.publisher)) throw new TypeError('buildDlqApp: pass broker and publisher together');
  const config = options.config ?? processConfig();
  const logger = options.logger ?? processLogger().child({ function: DLQ_FUNCTION_NAME });
  const { broker, publisher } =
    options.broker && options.publisher ? { broker: options.broker, publisher: options.publisher } : messaging();
  const services = lazy(async (): Promise<DlqServices> => {
    const { DlqReprocessor, RedriveJobs, parseListRequest, parseMessageRequest, parseRedriveRequest } = await import('../dlq');
    const reprocessor = new DlqReprocessor({
      broker,
      publisher,
      config,
      logger,
      ...(options.extraQueues ? { extraQueues: options.extraQueues } : {}),
      ...(options.idleTimeoutMs ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
    });
    const jobs = new RedriveJobs({ ...options.redriveJobs, broker, publisher, reprocessor, logger });
    return { reprocessor, jobs, parse: { parseListRequest, parseMessageRequest, parseRedriveRequest } };
  });
  const app = createHttpApp({ functionName: DLQ_FUNCTION_NAME, logger });
  app.register(dlqRoutes, { services, config });
  app.register(consoleRoutes, { config });
  return app;
}
