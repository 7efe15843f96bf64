/**
 * The DLQ reprocessor's logic, shared by the admin HTTP endpoints (handlers/dlq-reprocessor.ts) and the
 * command (`npm run dlq`, shared/dlq/cli.ts). See reprocessor.ts for what it guarantees.
 */
export * from './errors';
export {
  REDRIVE_JOB_MESSAGE_TYPE,
  type RedriveJob,
  RedriveJobMessage,
  RedriveJobs,
  type RedriveJobsOptions,
} from './jobs';
export { lockQueueName } from './lock';
export * from './message';
export * from './options';
export * from './reprocessor';
