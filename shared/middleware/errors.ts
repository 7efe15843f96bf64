import * as z from 'zod';
import { PermanentError, TransientError } from './failure.js';
import { InvalidRabbitMQEventError } from './rmq-event/decode.js';

/**
 * How a failed record is classified. Permanent failures go to the queue's DLQ at once; transient ones are
 * retried with growing delay. Throw a PermanentError subclass from a domain step to say "retrying won't help".
 */

export { PermanentError, TransientError } from './failure.js';

/** The body is not valid JSON (or not UTF-8 text). */
export class MalformedMessageError extends PermanentError {
  override readonly name = 'MalformedMessageError';
}

/** The body is JSON but breaks the event's schema; `issues` names the fields. */
export class SchemaViolationError extends PermanentError {
  override readonly name = 'SchemaViolationError';
  constructor(
    message: string,
    readonly issues: ReadonlyArray<{ path: string; message: string }>,
  ) {
    super(message);
  }
}

/** The `event_type` is not one this function handles. */
export class UnknownEventTypeError extends PermanentError {
  override readonly name = 'UnknownEventTypeError';
}

/** The message has no `messageId`, so it cannot be processed exactly once. */
export class MissingMessageIdError extends PermanentError {
  override readonly name = 'MissingMessageIdError';
}

/**
 * The message breaks the contract between its properties and its body: its `messageId` is not the body's
 * id, or its `type` not the body's type. The idempotency claim is keyed by messageId, so such a message
 * could have several effects (five messageIds, one event): it is dead-lettered, never processed.
 */
export class ContractViolationError extends PermanentError {
  override readonly name = 'ContractViolationError';
}

/**
 * Another invocation (another worker, or a concurrent batch) is processing a copy of this message right now:
 * whether it commits is not known yet, so this copy is retried later, when it will be a duplicate or not.
 */
export class MessageInFlightError extends TransientError {
  override readonly name = 'MessageInFlightError';
  /** Retried without using up one of the message's attempts: nothing failed. */
  readonly countsAsAttempt = false;
}

/** Could not put a failed message somewhere safe (retry or DLQ publish not confirmed): fail the batch. */
export class DeadLetterPublishError extends Error {
  override readonly name = 'DeadLetterPublishError';
}

/**
 * SQLSTATEs of contention, not failure: a deadlock victim (40P01), a serialization failure (40001), a lock not
 * obtained within lock_timeout (55P03). The same statement succeeds once the other transaction has ended.
 */
const CONTENTION_CODES = new Set(['40P01', '40001', '55P03']);

/** True when the error (or an error it wraps) is database contention: retried without using up an attempt. */
export function isLockContention(error: unknown): boolean {
  for (
    let e = error as { code?: unknown; cause?: unknown } | null | undefined, depth = 0;
    e && depth < 4;
    e = e.cause as typeof e, depth++
  ) {
    if (typeof e.code === 'string' && CONTENTION_CODES.has(e.code)) return true;
  }
  return false;
}

export type ErrorClass = 'permanent' | 'transient';

/** Errors from libraries that are permanent by nature: a retry parses the same bytes the same way. */
const permanentByNature = (error: unknown): boolean =>
  error instanceof SyntaxError || error instanceof z.ZodError || error instanceof InvalidRabbitMQEventError;

export function classifyError(error: unknown): ErrorClass {
  const flag = (error as { permanent?: unknown } | null)?.permanent;
  if (typeof flag === 'boolean') return flag ? 'permanent' : 'transient';
  return permanentByNature(error) ? 'permanent' : 'transient';
}
