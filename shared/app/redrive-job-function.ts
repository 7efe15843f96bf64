/**
 * The DLQ redrive job function (queue `dlq-redrive-jobs`): runs the redrive jobs `POST /dlq/redrive` accepted
 * (shared/dlq/jobs.ts), one job message per invocation, to its end or until just before the function's timeout.
 * It runs in an invocation of its own, so the job advances while Lambda freezes the HTTP instance that answered.
 *
 * Per record: poisonMessages (outermost) dead-letters a message that is not a job message to
 * `dlq-redrive-jobs-dlq` with its reason (parseBody: JSON, the POST /dlq/redrive fields plus `job_id`, and a
 * messageId and type that match), and retries one that could not start because the broker failed; the job's
 * own end (completed, cancelled, failed) is recorded on the broker and never thrown. A job is run once, however
 * often its message arrives: a second delivery is reported as a duplicate.
 *
 * No store, no inbox: the job's record on the broker is what makes it run once.
 */
import middy from '@middy/core';
import type { BatchReport, RabbitMQEvent } from 'middy-rabbitmq';
import {
  forEachRecord,
  parseBody,
  poisonMessages,
  type QueueRecord,
  type RecordContext,
  type RecordOutcome,
  rabbitmqRecords,
  structuredLogging,
} from 'middy-rabbitmq';
import { type Config, config as processConfig } from '../config';
import { DlqReprocessor, REDRIVE_JOB_MESSAGE_TYPE, RedriveJobMessage, RedriveJobs, type RedriveJobsOptions } from '../dlq';
import { lazy } from '../lib/lazy';
import { type Logger, logger as processLogger } from '../logging';
import { type Broker, messaging, type Publisher } from '../messaging';

const REDRIVE_JOB_FUNCTION_NAME = 'dlq-redrive-job';

/** What the function talks to; each has the process's own as default (tests pass their own). */
export interface RedriveJobDeps {
  /** Broker and publisher go together. */
  messaging: () => { broker: Broker; publisher: Publisher };
  config: () => Config;
  logger: () => Logger;
  /** How jobs report (tests shorten the heartbeat and the margin before the timeout). */
  redriveJobs?: Pick<RedriveJobsOptions, 'heartbeatMs' | 'stopBeforeTimeoutMs'>;
}

export function redriveJobFunction(deps: Partial<RedriveJobDeps> = {}) {
  const { messaging: connections = messaging, config = processConfig, logger = processLogger } = deps;
  const jobs = lazy(async () => {
    const { broker, publisher } = connections();
    const log = logger().child({ function: REDRIVE_JOB_FUNCTION_NAME });
    const reprocessor = new DlqReprocessor({ broker, publisher, config: config(), logger: log });
    return new RedriveJobs({ ...deps.redriveJobs, broker, publisher, reprocessor, logger: log });
  });

  const perRecord = middy<QueueRecord<RedriveJobMessage>, RecordOutcome, Error, RecordContext>()
    .use(
      poisonMessages<RedriveJobMessage>({
        publisher: () => connections().publisher,
        retryDelaysMs: () => config().retryDelaysMs,
      }) as middy.MiddlewareObj<QueueRecord<RedriveJobMessage>, RecordOutcome, Error, RecordContext>,
    )
    .use(
      parseBody<RedriveJobMessage>({
        schema: RedriveJobMessage,
        identity: (message) => ({ messageId: message.job_id, type: REDRIVE_JOB_MESSAGE_TYPE }),
      }) as middy.MiddlewareObj<QueueRecord<RedriveJobMessage>, RecordOutcome, Error, RecordContext>,
    )
    .handler(async (record, context): Promise<RecordOutcome> => {
      const run = await (await jobs()).run(record.payload, { remainingMs: () => context.getRemainingTimeInMillis() });
      if (!run.ran) {
        context.logger.info({ jobId: run.jobId, reason: run.reason }, 'dlq redrive job not run again');
        return { outcome: 'duplicate' };
      }
      return { outcome: 'processed', result: { jobId: run.job.id, state: run.job.state, ...run.job.progress } };
    });

  return middy<RabbitMQEvent, BatchReport>()
    .use(structuredLogging({ functionName: REDRIVE_JOB_FUNCTION_NAME, logger }))
    .use(rabbitmqRecords())
    .handler(forEachRecord(perRecord as unknown as Parameters<typeof forEachRecord>[0]));
}
