/** The HTTP API's fixed limits. */

/** Largest request body accepted (413 above). An order is well under 1 KiB. */
export const BODY_LIMIT_BYTES = 16 * 1024;

/** Seconds a client is asked to wait (Retry-After) when intake sheds load or the database is away. */
export const RETRY_AFTER_SECONDS = 5;

/** How long /health waits for the broker or the database before calling it down. */
export const HEALTH_TIMEOUT_MS = 2_000;

/** Longest Idempotency-Key and X-Correlation-Id accepted. */
export const MAX_KEY_LENGTH = 200;
