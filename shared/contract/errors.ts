/**
 * The error vocabulary every layer shares, defined once on the ground floor:
 * - ProblemError: an error that knows its HTTP answer (status, problem type, title), so the HTTP layer
 *   asks the error instead of looking its name up in a table; a subclass inherits or overrides it, like
 *   fastify's FST_ERR_* codes carry theirs;
 * - PermanentError / TransientError: how a failed queue record is treated, dead-lettered at once or
 *   retried later (shared/middleware/poison-messages.ts decides with them).
 */

/** One thing the client got wrong, by field name (`body` when the whole body is wrong). */
export interface FieldIssue {
  field: string;
  message: string;
}

/** How an error is answered over HTTP, as RFC 9457 problem details. */
export interface ProblemSpec {
  status: number;
  /** The problem type's last segment: urn:problem-type:rabbit-functions:<slug>. */
  slug: string;
  title: string;
  /** Shown instead of the error's message (for errors whose message is not for clients). */
  detail?: string;
  headers?: Readonly<Record<string, string>>;
}

/** Seconds a client is asked to wait (Retry-After) when the service sheds load or a dependency is away. */
export const RETRY_AFTER_SECONDS = 5;
const retryLater = { 'Retry-After': String(RETRY_AFTER_SECONDS) } as const;

/** An error that carries its HTTP answer; `issues` name the fields at fault, if any. */
export abstract class ProblemError extends Error {
  abstract readonly problem: ProblemSpec;
  readonly issues: readonly FieldIssue[] = [];
}

/** The input is malformed; `issues` names each bad field. */
export class ValidationError extends ProblemError {
  override readonly name: string = 'ValidationError';
  readonly problem: ProblemSpec = { status: 400, slug: 'validation-error', title: 'Invalid request' };
  override readonly issues: readonly FieldIssue[];
  constructor(issues: readonly FieldIssue[]) {
    super(issues.map((issue) => `${issue.field}: ${issue.message}`).join('; ') || 'Invalid input');
    this.issues = issues;
  }
}

/** The resource does not exist. */
export class NotFoundError extends ProblemError {
  override readonly name: string = 'NotFoundError';
  readonly problem: ProblemSpec = { status: 404, slug: 'not-found', title: 'Not found' };
}

/** The request conflicts with what is going on (e.g. another reader holds the DLQ). */
export class ConflictError extends ProblemError {
  override readonly name: string = 'ConflictError';
  readonly problem: ProblemSpec = { status: 409, slug: 'conflict', title: 'Conflict' };
}

/** A dependency (database, broker) is unavailable or the service sheds load: retry later. */
export class UnavailableError extends ProblemError {
  override readonly name: string = 'UnavailableError';
  readonly problem: ProblemSpec = { status: 503, slug: 'unavailable', title: 'Service unavailable', headers: retryLater };
}

/**
 * The two failure classes the queue middleware (middy-rabbitmq) acts on: PermanentError goes straight to the DLQ,
 * TransientError is retried later (the default for any error that does not say otherwise).
 */
export { PermanentError, TransientError } from 'middy-rabbitmq/core';
