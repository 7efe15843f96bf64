/**
 * Redrive jobs: a redrive asked for over HTTP runs in the background and is polled, as SQS's message move
 * tasks are (StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask), so no request waits for a
 * redrive and API Gateway's 30 s never cuts one off. `npm run dlq -- redrive` still runs synchronously.
 *
 *   const jobs = new RedriveJobs({ broker, publisher, reprocessor });
 *   const job = await jobs.start({ queue: 'order-events-dlq', limit: 10 });   // running (or 409 / 400 at once)
 *   await jobs.get(job.id);                                                   // progress, then the report
 *   await jobs.cancel(job.id);                                                // stops before the next message
 *
 * The job runs in the process that accepted it, holding the DLQ's lock (one redrive per DLQ, as SQS allows one
 * task per source queue). Its record lives on the broker, so any instance of the function (serverless-offline
 * starts several; so does Lambda) answers for any job:
 * - `dlq-redrive-job.<id>` holds one message, the job's latest state as JSON (`x-max-length` 1, drop-head):
 *   the runner republishes it on progress and every HEARTBEAT_MS; a reader takes it and hands it back;
 * - `dlq-redrive-job.<id>.cancel` is consumed by the runner: a message there cancels the job.
 * Both expire an hour after their last use. A job whose state has not been refreshed for STALE_AFTER_MS is
 * reported `failed`: the process running it has gone (what it moved stays moved, the rest is in the DLQ).
 */
import { randomUUID } from 'node:crypto';
import type { Channel, GetMessage } from 'amqplib';
import { type Logger, logger as processLogger } from '../logging';
import type { Broker, Publisher } from '../messaging';
import { RedriveJobNotFoundError, RedriveJobNotRunningError } from './errors';
import type { RedriveOptions, RedriveReportSoFar } from './options';
import type { DlqReprocessor, RedriveReport } from './reprocessor';

/** SQS's task states, in lower case. */
type RedriveJobState = 'running' | 'cancelling' | 'completed' | 'cancelled' | 'failed';

export interface RedriveJob {
  id: string;
  dlq: string;
  state: RedriveJobState;
  /** What was asked (the reprocessor's defaults filled in where it was silent are in `report`). */
  request: { limit: number | null; rate: number | null; errorClasses: string[]; errorName: string | null; dryRun: boolean };
  progress: { examined: number; moved: number; parked: number; skipped: number; failed: number; depthBefore: number };
  /** The redrive's report once it ended. */
  report: RedriveReport | null;
  /** Why it failed or was interrupted. */
  error: string | null;
  startedAt: string;
  updatedAt: string;
  finishedAt: string | null;
  /** Grows with every published state, so a reader keeps the newest. */
  version: number;
}

export interface RedriveJobsOptions {
  broker: Broker;
  publisher: Publisher;
  reprocessor: Pick<DlqReprocessor, 'redrive'>;
  logger?: Logger;
  /** How often a running job republishes its state (default 2 s). */
  heartbeatMs?: number;
  /** A running job not refreshed for this long is reported failed (default 15 s). */
  staleAfterMs?: number;
}

const defaults = { heartbeatMs: 2_000, staleAfterMs: 15_000 };
/** Progress is published at most this often between heartbeats. */
const PROGRESS_EVERY_MS = 250;
/** The job's queues live on for an hour after their last use. */
const RECORD_TTL_MS = 60 * 60 * 1000;
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const jobQueueName = (id: string): string => `dlq-redrive-job.${id}`;
const cancelQueueName = (id: string): string => `${jobQueueName(id)}.cancel`;
const recordQueueArguments = { 'x-queue-type': 'classic', 'x-max-length': 1, 'x-overflow': 'drop-head', 'x-expires': RECORD_TTL_MS };

const finished = (state: RedriveJobState) => state === 'completed' || state === 'cancelled' || state === 'failed';

const progressOf = (report: Readonly<RedriveReportSoFar>): RedriveJob['progress'] => ({
  examined: report.examined,
  moved: report.moved.length,
  parked: report.parked.length,
  skipped: report.skipped.length,
  failed: report.failed.length,
  depthBefore: report.depthBefore,
});

/** The state a finished redrive leaves its job in. */
const endState = (report: RedriveReport): RedriveJobState =>
  report.stopped === 'aborted' ? 'cancelled' : report.stopped === 'interrupted' ? 'failed' : 'completed';

/** A state message as the runner wrote it; anything else in the record queue (another client's) is ignored. */
function parseState(content: Buffer): RedriveJob[] {
  try {
    const state = JSON.parse(content.toString('utf8')) as RedriveJob;
    return state && typeof state === 'object' && typeof state.version === 'number' && typeof state.state === 'string' ? [state] : [];
  } catch {
    return [];
  }
}

export class RedriveJobs {
  private readonly broker: Broker;
  private readonly publisher: Publisher;
  private readonly reprocessor: Pick<DlqReprocessor, 'redrive'>;
  private readonly log: Logger;
  private readonly heartbeatMs: number;
  private readonly staleAfterMs: number;

  constructor(options: RedriveJobsOptions) {
    const merged = { ...defaults, ...options };
    this.broker = merged.broker;
    this.publisher = merged.publisher;
    this.reprocessor = merged.reprocessor;
    this.log = (merged.logger ?? processLogger()).child({ component: 'dlq-redrive-jobs' });
    this.heartbeatMs = merged.heartbeatMs;
    this.staleAfterMs = merged.staleAfterMs;
  }

  /**
   * Starts a redrive in the background and resolves once it holds the DLQ (its first state is published):
   * a DLQ that is busy or not a DLQ rejects here (DlqBusyError, NotADlqError), as a synchronous redrive would.
   */
  async start(options: Omit<RedriveOptions, 'signal' | 'onProgress'>): Promise<RedriveJob> {
    const id = randomUUID();
    const now = new Date().toISOString();
    const job: RedriveJob = {
      id,
      dlq: options.queue,
      state: 'running',
      request: {
        limit: options.limit ?? null,
        rate: options.rate ?? null,
        errorClasses: [...(options.errorClasses ?? [])],
        errorName: options.errorName ?? null,
        dryRun: options.dryRun ?? false,
      },
      progress: { examined: 0, moved: 0, parked: 0, skipped: 0, failed: 0, depthBefore: 0 },
      report: null,
      error: null,
      startedAt: now,
      updatedAt: now,
      finishedAt: null,
      version: 0,
    };
    const abort = new AbortController();
    const channel = await this.broker.createChannel();
    channel.on('error', () => undefined);
    try {
      await channel.assertQueue(jobQueueName(id), { durable: true, arguments: recordQueueArguments });
      await channel.assertQueue(cancelQueueName(id), { durable: true, arguments: { ...recordQueueArguments, 'x-max-length': 10 } });
    } catch (error) {
      await channel.close().catch(() => undefined);
      throw error;
    }

    const publisher = this.statePublisher(job);
    let started: () => void = () => undefined;
    const holding = new Promise<void>((resolve) => {
      started = resolve;
    });
    let lastProgressAt = 0;
    const redrive = this.reprocessor.redrive({
      ...options,
      signal: abort.signal,
      onProgress: (report) => {
        job.progress = progressOf(report);
        started();
        if (Date.now() - lastProgressAt >= PROGRESS_EVERY_MS) {
          lastProgressAt = Date.now();
          publisher.publish();
        }
      },
    });
    // Busy, not a DLQ, broker gone: the redrive rejects before it reports any progress.
    const refused = await Promise.race([
      holding.then(() => undefined),
      redrive.then(
        () => undefined,
        (error: unknown) => error,
      ),
    ]);
    if (refused !== undefined) {
      await this.deleteRecord(channel, id);
      throw refused;
    }

    let consumerTag: string;
    try {
      ({ consumerTag } = await channel.consume(cancelQueueName(id), (message) => {
        if (!message) return;
        channel.ack(message);
        if (job.state !== 'running') return;
        job.state = 'cancelling';
        publisher.publish();
        abort.abort();
      }));
    } catch (error) {
      // No way to cancel it: stop the redrive before its next message and answer the failure instead.
      abort.abort();
      await redrive.catch(() => undefined);
      await this.deleteRecord(channel, id);
      throw error;
    }
    await publisher.publish();
    const heartbeat = setInterval(() => publisher.publish(), this.heartbeatMs);
    const log = this.log.child({ jobId: id, dlq: job.dlq, dryRun: job.request.dryRun });
    log.info('dlq redrive job started');

    // The job goes on after the answer; its end is recorded on the broker, never thrown.
    void redrive
      .then(
        (report) => {
          job.report = report;
          job.progress = progressOf(report);
          job.state = endState(report);
          job.error = report.error ?? null;
        },
        (error: unknown) => {
          job.state = 'failed';
          job.error = `${(error as Error).name}: ${(error as Error).message}`;
        },
      )
      .then(async () => {
        clearInterval(heartbeat);
        job.finishedAt = new Date().toISOString();
        await publisher.publish();
        await channel.cancel(consumerTag).catch(() => undefined);
        await channel.close().catch(() => undefined);
        log.info({ state: job.state, ...job.progress }, 'dlq redrive job ended');
      })
      .catch((error: unknown) => log.error({ err: error }, 'dlq redrive job could not record its end'));
    return { ...job };
  }

  /** The job's latest state; RedriveJobNotFoundError for an unknown id. */
  async get(id: string): Promise<RedriveJob> {
    if (!JOB_ID.test(id)) throw new RedriveJobNotFoundError(id);
    const channel = await this.broker.createChannel();
    channel.on('error', () => undefined);
    try {
      const job = await this.readRecord(channel, id);
      if (!finished(job.state) && Date.now() - Date.parse(job.updatedAt) > this.staleAfterMs) {
        return {
          ...job,
          state: 'failed',
          error: `the process running this job stopped reporting at ${job.updatedAt}: what it moved stays moved, the rest is still in the DLQ`,
        };
      }
      return job;
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  /** Asks a running job to stop before its next message; resolves with its state (`cancelling`). */
  async cancel(id: string): Promise<RedriveJob> {
    const job = await this.get(id);
    if (job.state === 'cancelling') return job;
    if (job.state !== 'running') throw new RedriveJobNotRunningError(id, job.state);
    try {
      await this.publisher.publish({
        exchange: '',
        routingKey: cancelQueueName(id),
        body: Buffer.from(JSON.stringify({ cancel: true, at: new Date().toISOString() })),
        options: { contentType: 'application/json', persistent: true },
      });
    } catch (error) {
      // The job ended (and its cancel queue expired) between the read and the publish.
      const now = await this.get(id);
      if (finished(now.state)) throw new RedriveJobNotRunningError(id, now.state);
      throw error;
    }
    return { ...job, state: 'cancelling' };
  }

  /** Publishes the job's state, one publish at a time, newest last; a failed publish is logged, never thrown. */
  private statePublisher(job: RedriveJob): { publish(): Promise<void> } {
    let chain = Promise.resolve();
    return {
      publish: () => {
        chain = chain.then(async () => {
          job.version++;
          job.updatedAt = new Date().toISOString();
          try {
            await this.publisher.publish({
              exchange: '',
              routingKey: jobQueueName(job.id),
              body: Buffer.from(JSON.stringify(job)),
              options: { contentType: 'application/json', persistent: true, messageId: `${job.id}.${job.version}` },
            });
          } catch (error) {
            this.log.warn({ jobId: job.id, err: error }, 'could not record the redrive job state; the next one will');
          }
        });
        return chain;
      },
    };
  }

  /** Takes every state message there (normally one), hands them back, and keeps the newest. */
  private async readRecord(channel: Channel, id: string): Promise<RedriveJob> {
    const queue = jobQueueName(id);
    try {
      await channel.checkQueue(queue);
    } catch (error) {
      if (/NOT_FOUND|404/.test((error as Error).message)) throw new RedriveJobNotFoundError(id);
      throw error;
    }
    // Another reader may hold the message for a moment: try again briefly.
    for (let attempt = 0; attempt < 50; attempt++) {
      const taken: GetMessage[] = [];
      for (let message = await channel.get(queue); message !== false; message = await channel.get(queue)) taken.push(message);
      if (taken.length > 0) {
        channel.nackAll(true);
        const states = taken.flatMap((message) => parseState(message.content));
        if (states.length > 0) return states.reduce((newest, state) => (state.version > newest.version ? state : newest));
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new RedriveJobNotFoundError(id);
  }

  private async deleteRecord(channel: Channel, id: string): Promise<void> {
    await channel.deleteQueue(jobQueueName(id)).catch(() => undefined);
    await channel.deleteQueue(cancelQueueName(id)).catch(() => undefined);
    await channel.close().catch(() => undefined);
  }
}
