/**
 * The ground floor: what the wire contract and every layer share, importing nothing of theirs. Header names
 * (headers.ts), exchanges and routes (routes.ts), the error vocabulary (errors.ts), validation at the edges
 * (validation.ts). Domain, webhook, dlq,
 * middleware, runner and HTTP import downwards from here, never sideways.
 */
export * from './errors';
export * from './headers';
export * from './routes';
export * from './validation';
