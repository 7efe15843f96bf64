/**
 * The ground floor: what the wire contract and every layer share, importing nothing of theirs. Exchanges
 * and routes (routes.ts), the error vocabulary (errors.ts), validation at the edges
 * (validation.ts); the wire headers of retries and dead letters are the queue middleware's (middy-rabbitmq).
 * Domain, webhook, dlq,
 * middleware, runner and HTTP import downwards from here, never sideways.
 */

export * from './errors';
export * from './routes';
export * from './validation';
