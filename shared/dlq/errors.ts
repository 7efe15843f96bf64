/** Errors of the DLQ reprocessor. Each says what was wrong in words an operator can act on. */

/** Base class: anything the reprocessor refuses or cannot do. */
export class DlqError extends Error {
  override readonly name: string = 'DlqError';
}

/** The queue is not a dead-letter queue this reprocessor handles (name not `<queue>-dlq`, or it does not exist). */
export class NotADlqError extends DlqError {
  override readonly name = 'NotADlqError';
  constructor(
    readonly queue: string,
    reason: string,
  ) {
    super(`'${queue}' is not a DLQ the reprocessor can use: ${reason}`);
  }
}

/** Another inspection or redrive of the same DLQ is running (in this process or another one). */
export class DlqBusyError extends DlqError {
  override readonly name = 'DlqBusyError';
  constructor(readonly queue: string) {
    super(`Another inspection or redrive of '${queue}' is running; try again when it has finished`);
  }
}

/** One bad field of a request or command line. */
export interface DlqOptionIssue {
  field: string;
  message: string;
}

/** Options for list or redrive are malformed; `issues` names each bad field. */
export class InvalidDlqOptionsError extends DlqError {
  override readonly name = 'InvalidDlqOptionsError';
  constructor(readonly issues: readonly DlqOptionIssue[]) {
    super(issues.map((issue) => `${issue.field}: ${issue.message}`).join('; ') || 'Invalid options');
  }
}
