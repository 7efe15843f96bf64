/**
 * Errors of the DLQ reprocessor. Each says what was wrong in words an operator can act on, and carries its
 * HTTP answer for the admin endpoints (the command line maps them to exit codes).
 */
import { ConflictError, type FieldIssue, NotFoundError, type ProblemSpec, ValidationError } from '../contract/errors';

/** The queue is not a dead-letter queue this reprocessor handles (name not `<queue>-dlq`, or it does not exist). */
export class NotADlqError extends ValidationError {
  override readonly name = 'NotADlqError';
  constructor(
    readonly queue: string,
    reason: string,
  ) {
    super([{ field: 'queue', message: `'${queue}' is not a DLQ the reprocessor can use: ${reason}` }]);
    this.message = `'${queue}' is not a DLQ the reprocessor can use: ${reason}`;
  }
}

/** Another inspection or redrive of the same DLQ is running (in this process or another one). */
export class DlqBusyError extends ConflictError {
  override readonly name = 'DlqBusyError';
  override readonly problem: ProblemSpec = {
    status: 409,
    slug: 'dlq-busy',
    title: 'Another reader holds this DLQ; try again when it is done',
  };
  constructor(readonly queue: string) {
    super(`Another inspection or redrive of '${queue}' is running; try again when it has finished`);
  }
}

/** One bad field of a request or command line. */
export type DlqOptionIssue = FieldIssue;

/** Options for list or redrive are malformed; `issues` names each bad field. */
export class InvalidDlqOptionsError extends ValidationError {
  override readonly name = 'InvalidDlqOptionsError';
}

/** A DLQ holds fewer messages than the position asked for. */
export class DlqMessageNotFoundError extends NotFoundError {
  override readonly name = 'DlqMessageNotFoundError';
  constructor(queue: string, position: number) {
    super(`'${queue}' has no message at position ${position}; refresh the listing`);
  }
}

/** The message at a position is not the one the caller saw there: the DLQ changed since it was listed. */
export class DlqMessageMovedError extends ConflictError {
  override readonly name = 'DlqMessageMovedError';
  override readonly problem: ProblemSpec = { status: 409, slug: 'dlq-message-moved', title: 'The DLQ changed since it was listed' };
  constructor(queue: string, position: number, expected: string) {
    super(`Position ${position} of '${queue}' no longer holds message '${expected}'; refresh the listing`);
  }
}

/** No redrive job with this id (never started, or its record expired). */
export class RedriveJobNotFoundError extends NotFoundError {
  override readonly name = 'RedriveJobNotFoundError';
  constructor(readonly id: string) {
    super(`No redrive job '${id}' (its record is kept for an hour after it was last read)`);
  }
}

/** Only a running job can be cancelled. */
export class RedriveJobNotRunningError extends ConflictError {
  override readonly name = 'RedriveJobNotRunningError';
  override readonly problem: ProblemSpec = {
    status: 409,
    slug: 'redrive-job-not-running',
    title: 'Only a running redrive job can be cancelled',
  };
  constructor(
    readonly id: string,
    state: string,
  ) {
    super(`Redrive job '${id}' is ${state}; only a running job can be cancelled`);
  }
}
