/**
 * Errors of the DLQ reprocessor. Each says what was wrong in words an operator can act on, and carries its
 * HTTP answer for the admin endpoints (the command line maps them to exit codes).
 */
import { ConflictError, type FieldIssue, type ProblemSpec, ValidationError } from '../contract/errors';

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
