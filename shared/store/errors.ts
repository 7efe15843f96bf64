/**
 * Named errors of the storage layer, so callers can tell "the database is unreachable" from "this key exists".
 */
import { type ProblemSpec, RETRY_AFTER_SECONDS, UnavailableError } from '../contract/errors';

const retryLater = { 'Retry-After': String(RETRY_AFTER_SECONDS) };

/** The store could not be opened, migrated or reached; the message names the database (password redacted). */
export class StoreError extends UnavailableError {
  override readonly name: string = 'StoreError';
  override readonly problem: ProblemSpec = {
    status: 503,
    slug: 'database-unavailable',
    title: 'Database unavailable',
    detail: 'The database is unreachable; retry later',
    headers: retryLater,
  };
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A migration failed; the database is left at the last migration that succeeded. */
export class MigrationError extends StoreError {
  override readonly name = 'MigrationError';
  override readonly problem: ProblemSpec = {
    status: 503,
    slug: 'database-unavailable',
    title: 'Database unavailable',
    detail: 'The database is not ready; retry later',
    headers: retryLater,
  };
}

/** An insert hit a unique constraint (e.g. an order id or idempotency key that already exists). */
export class DuplicateError extends Error {
  override readonly name = 'DuplicateError';
}

/** A pagination cursor that this store did not produce. */
export class InvalidCursorError extends Error {
  override readonly name = 'InvalidCursorError';
  constructor() {
    super('Invalid pagination cursor');
  }
}

/** True for a unique-constraint violation from either back end (SQLite or PostgreSQL). */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** A one-line description of a driver error; Node's AggregateError (several addresses tried) has no message. */
export function describeError(error: unknown): string {
  if (error instanceof AggregateError && !error.message) {
    return error.errors.map(describeError).join('; ') || 'unknown error';
  }
  if (error instanceof Error) return (error.message || (error as { code?: string }).code || error.name).replace(/\s+/g, ' ');
  return String(error);
}
