/**
 * The headers this system puts on messages it republishes: the attempt counter and delay of the retry path,
 * and what a dead letter says about its failure. One definition for everyone who writes or reads them: the
 * trigger (messages it cannot turn into an event), the poison-message middleware (records that failed), the
 * topology (retry queues), the DLQ reprocessor (what it shows and redrives).
 */

/** Our header counting deliveries of a message through the retry queues (the first delivery is 1). */
export const ATTEMPT_HEADER = 'x-attempt';

/** Header that selects a retry queue (one per delay) on the `retry` headers exchange. */
export const RETRY_DELAY_HEADER = 'retry-delay-ms';

/** Headers a retried or dead-lettered message gains. */
export const FAILURE_HEADERS = {
  errorClass: 'x-error-class',
  errorName: 'x-error-name',
  errorMessage: 'x-error-message',
  firstFailedAt: 'x-first-failed-at',
  lastFailedAt: 'x-last-failed-at',
  attempts: 'x-attempts',
  originalQueue: 'x-original-queue',
} as const;

/**
 * Why a message was dead-lettered (`x-error-class`): `permanent` and `transient` come from the function's
 * middleware; `unrepresentable` (no `aws:rmq` form) and `payload-too-large` (can never fit an invocation)
 * from the trigger, before any function saw the message.
 */
export type FailureClass = 'permanent' | 'transient' | 'unrepresentable' | 'payload-too-large';

export interface Failure {
  errorClass: FailureClass;
  /** The error's name, e.g. SchemaViolationError. */
  name: string;
  message: string;
  /** Deliveries so far (the attempt header's value). */
  attempts: number;
  /** The queue the message was consumed from. */
  queue: string;
  /** x-first-failed-at of an earlier failure, if the message carries one. */
  firstFailedAt?: unknown;
}

/** Longest error message kept in a header. */
const MAX_ERROR_MESSAGE_LENGTH = 1_000;

/**
 * The failure headers for `failure` at `now`. `x-original-queue` is always the queue the message was consumed
 * from, never a value the message brought along: a header a producer sets must not choose where a copy goes.
 * A brought-along `x-first-failed-at` is kept only when it is a date.
 */
export function failureHeaders(failure: Failure, now = new Date()): Record<string, string | number> {
  const at = now.toISOString();
  const earlier =
    typeof failure.firstFailedAt === 'string' && !Number.isNaN(Date.parse(failure.firstFailedAt)) ? failure.firstFailedAt : undefined;
  return {
    [FAILURE_HEADERS.errorClass]: failure.errorClass,
    [FAILURE_HEADERS.errorName]: failure.name,
    [FAILURE_HEADERS.errorMessage]: failure.message.slice(0, MAX_ERROR_MESSAGE_LENGTH),
    [FAILURE_HEADERS.firstFailedAt]: earlier ?? at,
    [FAILURE_HEADERS.lastFailedAt]: at,
    [FAILURE_HEADERS.attempts]: failure.attempts,
    [FAILURE_HEADERS.originalQueue]: failure.queue,
  };
}

/** The attempt header's value: a whole number from 1, else 1 (a first delivery). */
export function attemptOf(headers: Readonly<Record<string, unknown>> | undefined): number {
  const value = Number(headers?.[ATTEMPT_HEADER]);
  return Number.isSafeInteger(value) && value >= 1 ? value : 1;
}
