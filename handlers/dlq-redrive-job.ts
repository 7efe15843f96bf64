/**
 * DLQ redrive job (queue `dlq-redrive-jobs`): runs the redrive jobs the DLQ reprocessor's `POST /dlq/redrive`
 * accepted, in an invocation of its own (shared/app/redrive-job-function.ts).
 */
import { type RedriveJobDeps, redriveJobFunction } from '../shared/app/redrive-job-function';

/** The handler with its dependencies (tests pass their own). */
export const createHandler = (deps: Partial<RedriveJobDeps> = {}) => redriveJobFunction(deps);

export const handler = createHandler();
