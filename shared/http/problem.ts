/**
 * Errors as RFC 9457 problem details (`application/problem+json`). One lookup table maps an error's code
 * (fastify's FST_ERR_*) or name (ours) to status, type and title; anything a client sent gets a 4xx, and
 * only a fault of ours is a 500 (whose detail never leaks internals).
 */
import type { FieldIssue } from '../domain/validation';
import { BODY_LIMIT_BYTES, RETRY_AFTER_SECONDS } from './limits';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  errors?: FieldIssue[];
}

export interface ProblemResponse {
  status: number;
  headers: Record<string, string>;
  body: Problem;
}

/** Bearer token missing or wrong, or the admin endpoints disabled. */
export class UnauthorizedError extends Error {
  override readonly name = 'UnauthorizedError';
}

/** No route for this method and path. */
export class RouteNotFoundError extends Error {
  override readonly name = 'RouteNotFoundError';
  constructor(method: string, url: string) {
    super(`No route for ${method} ${url.split('?')[0]}`);
  }
}

/** A stock item the store does not know. */
export class StockItemNotFoundError extends Error {
  override readonly name = 'StockItemNotFoundError';
  constructor(readonly item: string) {
    super(`No stock item '${item}'`);
  }
}

/** A body the API does not read: no Content-Type, or JSON in a charset other than UTF-8. */
export class UnsupportedMediaTypeError extends Error {
  override readonly name = 'UnsupportedMediaTypeError';
  readonly issues: readonly FieldIssue[];
  constructor(message: string) {
    super(`Content-Type ${message}`);
    this.issues = [{ field: 'content-type', message }];
  }
}

type AnyError = Error & { code?: string; statusCode?: number; issues?: readonly FieldIssue[] };

interface Mapping {
  status: number;
  slug: string;
  title: string;
  /** Detail for the client; default: the error's message. */
  detail?: string;
  errors?: (error: AnyError) => FieldIssue[];
  headers?: Record<string, string>;
}

const retryLater = { 'Retry-After': String(RETRY_AFTER_SECONDS) };
const invalidJson = (message: string) => () => [{ field: 'body', message }];
const unsupportedMediaType = (errors: Mapping['errors']): Mapping => ({
  status: 415,
  slug: 'unsupported-media-type',
  title: 'Unsupported media type',
  detail: 'Send the body as application/json, in UTF-8',
  errors,
});

/** Error code or name → how it is answered. */
const MAPPINGS: Readonly<Record<string, Mapping>> = {
  ValidationError: { status: 400, slug: 'validation-error', title: 'Invalid request', errors: (e) => [...(e.issues ?? [])] },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, slug: 'malformed-json', title: 'Body is not valid JSON', errors: invalidJson('not valid JSON') },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, slug: 'malformed-json', title: 'Body is empty', errors: invalidJson('must be a JSON object') },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, slug: 'bad-request', title: 'Content-Length does not match the body' },
  FST_ERR_CTP_BODY_TOO_LARGE: {
    status: 413,
    slug: 'body-too-large',
    title: 'Request body too large',
    detail: `The request body exceeds ${BODY_LIMIT_BYTES} bytes`,
    errors: () => [{ field: 'body', message: `larger than ${BODY_LIMIT_BYTES} bytes` }],
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: unsupportedMediaType(() => [{ field: 'content-type', message: 'must be application/json' }]),
  UnsupportedMediaTypeError: unsupportedMediaType((e) => [...(e.issues ?? [])]),
  UnauthorizedError: {
    status: 401,
    slug: 'unauthorized',
    title: 'Unauthorized',
    headers: { 'WWW-Authenticate': 'Bearer realm="admin"' },
  },
  RouteNotFoundError: { status: 404, slug: 'not-found', title: 'Not found' },
  DlqBusyError: { status: 409, slug: 'dlq-busy', title: 'Another reader holds this DLQ; try again when it is done' },
  OrderNotFoundError: { status: 404, slug: 'order-not-found', title: 'Order not found' },
  StockItemNotFoundError: { status: 404, slug: 'stock-item-not-found', title: 'Stock item not found' },
  IdempotencyConflictError: {
    status: 422,
    slug: 'idempotency-key-reused',
    title: 'Idempotency-Key reused with a different body',
    errors: () => [{ field: 'Idempotency-Key', message: 'already used with a different request body' }],
  },
  BacklogFullError: {
    status: 503,
    slug: 'overloaded',
    title: 'Too many orders waiting to be sent',
    detail: 'Orders are accepted again once the backlog of events drains; retry later',
    headers: retryLater,
  },
  StoreError: { status: 503, slug: 'database-unavailable', title: 'Database unavailable', detail: 'The database is unreachable; retry later', headers: retryLater },
  MigrationError: { status: 503, slug: 'database-unavailable', title: 'Database unavailable', detail: 'The database is not ready; retry later', headers: retryLater },
};

const INTERNAL: Mapping = {
  status: 500,
  slug: 'internal-error',
  title: 'Internal error',
  detail: 'Something went wrong on our side; the request may be retried',
};

/** Other errors fastify raises for what the client sent carry their own 4xx status. */
const clientError = (status: number): Mapping => ({ status, slug: 'bad-request', title: 'Bad request' });

const lookup = (key: string | undefined): Mapping | undefined =>
  key !== undefined && Object.hasOwn(MAPPINGS, key) ? MAPPINGS[key] : undefined;

export const problemType = (slug: string): string => `urn:problem-type:rabbit-functions:${slug}`;

/** The problem response for `error` (instance: the request path, if given). */
export function problemFor(error: unknown, instance?: string): ProblemResponse {
  const e = (error instanceof Error ? error : new Error(String(error))) as AnyError;
  const status = e.statusCode;
  const mapping =
    lookup(e.code) ??
    lookup(e.name) ??
    (status !== undefined && status >= 400 && status < 500 ? clientError(status) : INTERNAL);
  const errors = mapping.errors?.(e);
  const body: Problem = {
    type: problemType(mapping.slug),
    title: mapping.title,
    status: mapping.status,
    detail: mapping.detail ?? e.message,
    ...(instance ? { instance: instance.split('?')[0]! } : {}),
    ...(errors && errors.length > 0 ? { errors } : {}),
  };
  return { status: mapping.status, headers: { ...mapping.headers }, body };
}
