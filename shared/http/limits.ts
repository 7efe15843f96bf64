/** The HTTP API's fixed limits. */

/** Largest request body accepted (413 above). An order is well under 1 KiB. */
export const BODY_LIMIT_BYTES = 16 * 1024;

/** How long /health waits for the broker or the database before calling it down. */
export const HEALTH_TIMEOUT_MS = 2_000;

/** Longest Idempotency-Key and X-Correlation-Id accepted. */
export const MAX_KEY_LENGTH = 200;
