/**
 * Redrive jobs: a redrive asked for over HTTP runs as a job and is polled, as SQS's message move tasks are
 * (StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask), so no request waits for a redrive and
 * API Gateway's 30 s never cuts one off. `npm run dlq -- redrive` still runs synchronously.
 *
 *   const jobs = new RedriveJobs({ broker, publisher, reprocessor });
 *   const job = await jobs.submit({ queue: 'order-events-dlq', limit: 10 });  // HTTP: accepted (or 409 / 400 at once)
 *   await jobs.run(message, { remainingMs });                                 // the job function: runs it to its end
 *   await jobs.get(job.id);                                                   // progress, then the report
 *   await jobs.cancel(job.id);                                                // stops before the next message
 *
 * The HTTP function only accepts a job: it checks what it can at once (not a DLQ: 400; another list or
 * redrive holds the DLQ: 409, by briefly taking the DLQ's lock), records the job's first state and publishes
 * a job message, with confirms, to `dlq-redrive-jobs`. The `dlqRedriveJob` function, fed from that queue by an
 * event source mapping (locally by the RabbitMQ trigger), runs the redrive holding the DLQ's lock, so the job
 * advances in an invocation of its own instead of an HTTP instance Lambda freezes after the answer. If another
 * reader took the DLQ between the answer and the job's start, the job ends `failed`, saying so; nothing moved.
 * The job stops before its function's timeout (`failed`, what moved stays moved, the rest is in the DLQ).
 *
 * Its record lives on the broker, so any instance of either function answers for any job:
 * - `dlq-redrive-job.<id>` holds one message, the job's latest state as JSON (`x-max-length` 1, drop-head):
 *   the job function republishes it on progress and every HEARTBEAT_MS; a reader takes it and hands it back;
 * - `dlq-redrive-job.<id>.cancel` is read by the job function: a message there cancels the job (before it
 *   starts, or before its next message).
 * Both expire an hour after their last use. A job is run once: its message carries its id, the function claims
 * it (an exclusive queue, `dlq-redrive-job.<id>.run`) and runs it only if its record says no function picked
 * it up yet, so a redelivered or duplicated job message is a no-op. A picked-up job whose state has not been
 * refreshed for STALE_AFTER_MS is reported `failed`: the invocation running it has gone (what it moved stays
 * moved, the rest is in the DLQ). A job waiting for the function (`pickedUpAt` null) is `running`, not stale.
 */
import { randomUUID } from 'node:crypto';
import type { Channel, GetMessage } from 'amqplib';
import * as z from 'zod';
import { type Logger, logger as processLogger } from '../logging';
import { type Broker, type Publisher, REDRIVE_JOBS_QUEUE } from '../messaging';
import { RedriveJobNotFoundError, RedriveJobNotRunningError } from './errors';
import { withQueueLock } from './lock';
import { type RedriveOptions, type RedriveReportSoFar, RedriveRequest, redriveOptionsOf } from './options';
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
  /** When the job function took it up; null while it waits in `dlq-redrive-jobs`. */
  pickedUpAt: string | null;
  updatedAt: string;
  finishedAt: string | null;
  /** Grows with every published state, so a reader keeps the newest. */
  version: number;
}

/** The job message's `type` property. */
export const REDRIVE_JOB_MESSAGE_TYPE = 'DlqRedriveJob';

/** A job message's body: the redrive request as POST /dlq/redrive takes it, and the job's id (= its messageId). */
export const RedriveJobMessage = RedriveRequest.extend({ job_id: z.uuid() });
export type RedriveJobMessage = z.infer<typeof RedriveJobMessage>;

export interface RedriveJobsOptions {
  broker: Broker;
  publisher: Publisher;
  reprocessor: Pick<DlqReprocessor, 'redrive' | 'inspect'>;
  logger?: Logger;
  /** How often a running job republishes its state (default 2 s). */
  heartbeatMs?: number;
  /** A picked-up job not refreshed for this long is reported failed (default 15 s). */
  staleAfterMs?: number;
  /** The job function stops a redrive this long before its timeout (default 10 s). */
  stopBeforeTimeoutMs?: number;
  /** The queue job messages go to (default `dlq-redrive-jobs`; tests use their own). */
  jobQueue?: string;
}

/** What the job function has to go by: the time its invocation has left. */
export interface RedriveJobLimits {
  remainingMs: () => number;
}

/** What became of one job message: run to its end, or not run (already run, running elsewhere, or gone). */
export type RedriveJobRun = { ran: true; job: RedriveJob } | { ran: false; jobId: string; reason: string };

const defaults = { heartbeatMs: 2_000, staleAfterMs: 15_000, stopBeforeTimeoutMs: 10_000, jobQueue: REDRIVE_JOBS_QUEUE };
/** Progress is published at most this often between heartbeats. */
const PROGRESS_EVERY_MS = 250;
/** The job's queues live on for an hour after their last use. */
const RECORD_TTL_MS = 60 * 60 * 1000;
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const jobQueueName = (id: string): string => `dlq-redrive-job.${id}`;
const cancelQueueName = (id: string): string => `${jobQueueName(id)}.cancel`;
const claimQueueName = (id: string): string => `${jobQueueName(id)}.run`;
const recordQueueArguments = { 'x-queue-type': 'classic', 'x-max-length': 1, 'x-overflow': 'drop-head', 'x-expires': RECORD_TTL_MS };
const cancelQueueArguments = { ...recordQueueArguments, 'x-max-length': 10 };

const finished = (state: RedriveJobState) => state === 'completed' || state === 'cancelled' || state === 'failed';

const progressOf = (report: Readonly<RedriveReportSoFar>): RedriveJob['progress'] => ({
  examined: report.examined,
  moved: report.moved.length,
  parked: report.parked.length,
  skipped: report.skipped.length,
  failed: report.failed.length,
  depthBefore: report.depthBefore,
});

/** A state message as a job function wrote it; anything else in the record queue (another client's) is ignored. */
function parseState(content: Buffer): RedriveJob[] {
  try {
    const state = JSON.parse(content.toString('utf8')) as RedriveJob;
    return state && typeof state === 'object' && typeof state.version === 'number' && typeof state.state === 'string'
      ? [{ ...state, pickedUpAt: state.pickedUpAt ?? null }]
      : [];
  } catch {
    return [];
  }
}

/** The job message's body for these options (POST /dlq/redrive's field names). */
function jobMessageBody(id: string, options: RedriveOptions): Buffer {
  const message: RedriveJobMessage = {
    job_id: id,
    queue: options.queue,
    ...(options.limit !== undefined ? { limit: options.limit } : {}),
    ...(options.rate !== undefined ? { rate: options.rate } : {}),
    ...(options.errorClasses ? { error_class: [...options.errorClasses] } : {}),
    ...(options.errorName !== undefined ? { error_name: options.errorName } : {}),
    dry_run: options.dryRun ?? false,
  };
  return Buffer.from(JSON.stringify(message));
}

/** Thrown inside the claim when another delivery of the job's message holds it. */
class JobClaimedElsewhere extends Error {
  override readonly name = 'JobClaimedElsewhere';
}

export class RedriveJobs {
  private readonly broker: Broker;
  private readonly publisher: Publisher;
  private readonly reprocessor: Pick<DlqReprocessor, 'redrive' | 'inspect'>;
  private readonly log: Logger;
  private readonly heartbeatMs: number;
  private readonly staleAfterMs: number;
  private readonly stopBeforeTimeoutMs: number;
  private readonly jobQueue: string;

  constructor(options: RedriveJobsOptions) {
    const merged = { ...defaults, ...options };
    this.broker = merged.broker;
    this.publisher = merged.publisher;
    this.reprocessor = merged.reprocessor;
    this.log = (merged.logger ?? processLogger()).child({ component: 'dlq-redrive-jobs' });
    this.heartbeatMs = merged.heartbeatMs;
    this.staleAfterMs = merged.staleAfterMs;
    this.stopBeforeTimeoutMs = merged.stopBeforeTimeoutMs;
    this.jobQueue = merged.jobQueue;
  }

  /**
   * Accepts a redrive as a job (the HTTP side): rejects at once a queue that is not a DLQ (NotADlqError) or a
   * DLQ another reader holds (DlqBusyError), records the job's first state, and publishes its message with
   * confirms. Resolves with the job (`running`, `pickedUpAt` null) once the broker has both.
   */
  async submit(options: Omit<RedriveOptions, 'signal' | 'onProgress' | 'maxDurationMs'>): Promise<RedriveJob> {
    // Takes the DLQ's lock and lets go: the job function takes it again for the redrive.
    await this.reprocessor.inspect(options.queue, 0);
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
      pickedUpAt: null,
      updatedAt: now,
      finishedAt: null,
      version: 1,
    };
    const channel = await this.broker.createChannel();
    channel.on('error', () => undefined);
    try {
      await channel.assertQueue(jobQueueName(id), { durable: true, arguments: recordQueueArguments });
      await channel.assertQueue(cancelQueueName(id), { durable: true, arguments: cancelQueueArguments });
      await this.publishState(job);
      await this.publisher.publish({
        exchange: '',
        routingKey: this.jobQueue,
        body: jobMessageBody(id, options),
        options: {
          contentType: 'application/json',
          persistent: true,
          messageId: id,
          type: REDRIVE_JOB_MESSAGE_TYPE,
          timestamp: Math.floor(Date.now() / 1000),
        },
      });
    } catch (error) {
      await this.deleteRecord(channel, id);
      throw error;
    }
    await channel.close().catch(() => undefined);
    this.log.info({ jobId: id, dlq: job.dlq, dryRun: job.request.dryRun }, 'dlq redrive job accepted');
    return job;
  }

  /**
   * Runs the job a job message names to its end (the job function): once, whatever the deliveries. Not run
   * when another delivery holds it, when its record says a function already took it up (a redelivery after a
   * crash, a duplicate) or has expired. Its end (completed, cancelled, failed) is recorded, never thrown; it
   * throws only when it could not start (broker unreachable), and then nothing has moved.
   */
  async run(message: RedriveJobMessage, limits: RedriveJobLimits): Promise<RedriveJobRun> {
    const { job_id: id, ...request } = message;
    const options = redriveOptionsOf(request);
    try {
      return await withQueueLock(
        this.broker,
        claimQueueName(id),
        () => new JobClaimedElsewhere(id),
        () => this.runClaimed(id, options, limits),
      );
    } catch (error) {
      if (error instanceof JobClaimedElsewhere) return { ran: false, jobId: id, reason: 'another invocation is running this job' };
      throw error;
    }
  }

  private async runClaimed(id: string, options: RedriveOptions, limits: RedriveJobLimits): Promise<RedriveJobRun> {
    const channel = await this.broker.createChannel();
    channel.on('error', () => undefined);
    try {
      const job = await this.readRecord(channel, id).catch((error: unknown) => {
        if (error instanceof RedriveJobNotFoundError) return undefined;
        throw error;
      });
      const refusal = !job
        ? 'no record of this job (it expired or was never accepted)'
        : job.pickedUpAt !== null || finished(job.state)
          ? `a function took this job up at ${job.pickedUpAt ?? job.updatedAt} (it is ${job.state})`
          : job.dlq !== options.queue
            ? `the message names ${options.queue}, the job's record ${job.dlq}`
            : undefined;
      if (!job || refusal !== undefined) return { ran: false, jobId: id, reason: refusal ?? 'no record' };
      return { ran: true, job: await this.execute(channel, job, options, limits) };
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  /** Runs the redrive of a claimed job, publishing its progress, and records how it ended. */
  private async execute(channel: Channel, job: RedriveJob, options: RedriveOptions, limits: RedriveJobLimits): Promise<RedriveJob> {
    const log = this.log.child({ jobId: job.id, dlq: job.dlq, dryRun: job.request.dryRun });
    const publisher = this.statePublisher(job);
    const end = async (state: RedriveJobState, error: string | null): Promise<RedriveJob> => {
      job.state = state;
      job.error = error;
      job.finishedAt = new Date().toISOString();
      await publisher.publish();
      log.info({ state, ...job.progress, ...(error ? { error } : {}) }, 'dlq redrive job ended');
      return { ...job };
    };
    job.pickedUpAt = new Date().toISOString();
    const cancelQueue = cancelQueueName(job.id);
    // Recreated if it expired while the job waited; a cancel asked for before the job started ends it here.
    await channel.assertQueue(cancelQueue, { durable: true, arguments: cancelQueueArguments });
    if (await channel.get(cancelQueue, { noAck: true })) return end('cancelled', null);
    // From here on, every other delivery of the job's message leaves it alone. Confirmed before anything moves:
    // if the broker does not take it, this throws with nothing moved, and the message is retried.
    job.version++;
    job.updatedAt = new Date().toISOString();
    await this.publishState(job);

    const abort = new AbortController();
    let stoppedFor: 'cancel' | 'timeout' | undefined;
    const stop = (why: 'cancel' | 'timeout') => {
      stoppedFor ??= why;
      abort.abort();
    };
    let consumerTag: string;
    try {
      ({ consumerTag } = await channel.consume(cancelQueue, (message) => {
        if (!message) return;
        channel.ack(message);
        if (job.state !== 'running') return;
        job.state = 'cancelling';
        publisher.publish();
        stop('cancel');
      }));
    } catch (error) {
      return end('failed', `could not watch for a cancel (${(error as Error).message}); nothing was moved`);
    }
    log.info('dlq redrive job started');
    const budgetMs = Math.max(0, limits.remainingMs() - this.stopBeforeTimeoutMs);
    const timeout = setTimeout(() => stop('timeout'), budgetMs);
    const heartbeat = setInterval(() => publisher.publish(), this.heartbeatMs);
    let lastProgressAt = 0;
    try {
      const report = await this.reprocessor.redrive({
        ...options,
        signal: abort.signal,
        maxDurationMs: budgetMs,
        onProgress: (soFar) => {
          job.progress = progressOf(soFar);
          if (Date.now() - lastProgressAt >= PROGRESS_EVERY_MS) {
            lastProgressAt = Date.now();
            publisher.publish();
          }
        },
      });
      job.report = report;
      job.progress = progressOf(report);
      if (report.stopped === 'deadline' || (report.stopped === 'aborted' && stoppedFor === 'timeout')) {
        return await end(
          'failed',
          `stopped before the function's timeout, after ${report.examined} message(s): what moved stays moved, the rest is still in the DLQ; start another redrive for it`,
        );
      }
      if (report.stopped === 'aborted') return await end('cancelled', null);
      if (report.stopped === 'interrupted') return await end('failed', report.error ?? 'interrupted');
      return await end('completed', null);
    } catch (error) {
      // DlqBusyError: another reader took the DLQ between the request's answer and now; nothing was moved.
      return await end('failed', `${(error as Error).name}: ${(error as Error).message}`);
    } finally {
      clearTimeout(timeout);
      clearInterval(heartbeat);
      await channel.cancel(consumerTag).catch(() => undefined);
    }
  }

  /** The job's latest state; RedriveJobNotFoundError for an unknown id. */
  async get(id: string): Promise<RedriveJob> {
    if (!JOB_ID.test(id)) throw new RedriveJobNotFoundError(id);
    const channel = await this.broker.createChannel();
    channel.on('error', () => undefined);
    try {
      const job = await this.readRecord(channel, id);
      if (job.pickedUpAt !== null && !finished(job.state) && Date.now() - Date.parse(job.updatedAt) > this.staleAfterMs) {
        return {
          ...job,
          state: 'failed',
          error: `the function running this job stopped reporting at ${job.updatedAt}: what it moved stays moved, the rest is still in the DLQ`,
        };
      }
      return job;
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  /** Asks a job to stop before its next message (or not to start); resolves with its state (`cancelling`). */
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

  /** Publishes this state of the job as its record, with confirms. */
  private publishState(job: RedriveJob): Promise<void> {
    return this.publisher.publish({
      exchange: '',
      routingKey: jobQueueName(job.id),
      body: Buffer.from(JSON.stringify(job)),
      options: { contentType: 'application/json', persistent: true, messageId: `${job.id}.${job.version}` },
    });
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
            await this.publishState(job);
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
