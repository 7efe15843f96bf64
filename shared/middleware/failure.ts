/**
 * The two failure classes the middleware acts on. Throw a PermanentError (or a subclass) from a record handler
 * to dead-letter the record at once; any other error, TransientError included, is retried with a delay.
 */

/** Retrying will not help: the record goes to its queue's dead-letter exchange at once. */
export class PermanentError extends Error {
  override readonly name: string = 'PermanentError';
  readonly permanent = true;
}

/** Worth retrying (a dependency is down, a lock is taken): the record is republished with a delay. */
export class TransientError extends Error {
  override readonly name: string = 'TransientError';
  readonly permanent = false;
}
