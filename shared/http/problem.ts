/**
 * Errors as RFC 9457 problem details (`application/problem+json`). Our errors carry their own answer
 * (ProblemError, shared/contract/errors.ts: a subclass inherits or overrides its parent's); fastify's own
 * errors are looked up by their FST_ERR_* code; any other 4xx fastify raises keeps its status; anything
 * else is a fault of ours, a 500 whose detail never leaks internals.
 */
import { type FieldIssue, NotFoundError, ProblemError, type ProblemSpec } from '../contract/errors';
import { BODY_LIMIT_BYTES } from './limits';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

interface Problem {
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
export class UnauthorizedError extends ProblemError {
  override readonly name = 'UnauthorizedError';
  readonly problem: ProblemSpec = {
    status: 401,
    slug: 'unauthorized',
    title: 'Unauthorized',
    headers: { 'WWW-Authenticate': 'Bearer realm="admin"' },
  };
}

/** No route for this method and path. */
export class RouteNotFoundError extends NotFoundError {
  override readonly name = 'RouteNotFoundError';
  constructor(method: string, url: string) {
    super(`No route for ${method} ${url.split('?')[0]}`);
  }
}

/** A stock item the store does not know. */
export class StockItemNotFoundError extends NotFoundError {
  override readonly name = 'StockItemNotFoundError';
  override readonly problem: ProblemSpec = { status: 404, slug: 'stock-item-not-found', title: 'Stock item not found' };
  constructor(readonly item: string) {
    super(`No stock item '${item}'`);
  }
}

const UNSUPPORTED_MEDIA_TYPE: ProblemSpec = {
  status: 415,
  slug: 'unsupported-media-type',
  title: 'Unsupported media type',
  detail: 'Send the body as application/json, in UTF-8',
};

/** A body the API does not read: no Content-Type, or JSON in a charset other than UTF-8. */
export class UnsupportedMediaTypeError extends ProblemError {
  override readonly name = 'UnsupportedMediaTypeError';
  readonly problem = UNSUPPORTED_MEDIA_TYPE;
  override readonly issues: readonly FieldIssue[];
  constructor(message: string) {
    super(`Content-Type ${message}`);
    this.issues = [{ field: 'content-type', message }];
  }
}

type FastifyError = Error & { code?: string; statusCode?: number };

/** fastify's own errors about what the client sent, by code, with the fields they concern. */
const FASTIFY_ERRORS: Readonly<Record<string, ProblemSpec & { issues?: FieldIssue[] }>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: {
    status: 400,
    slug: 'malformed-json',
    title: 'Body is not valid JSON',
    issues: [{ field: 'body', message: 'not valid JSON' }],
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    status: 400,
    slug: 'malformed-json',
    title: 'Body is empty',
    issues: [{ field: 'body', message: 'must be a JSON object' }],
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, slug: 'bad-request', title: 'Content-Length does not match the body' },
  FST_ERR_CTP_BODY_TOO_LARGE: {
    status: 413,
    slug: 'body-too-large',
    title: 'Request body too large',
    detail: `The request body exceeds ${BODY_LIMIT_BYTES} bytes`,
    issues: [{ field: 'body', message: `larger than ${BODY_LIMIT_BYTES} bytes` }],
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { ...UNSUPPORTED_MEDIA_TYPE, issues: [{ field: 'content-type', message: 'must be application/json' }] },
};

const INTERNAL: ProblemSpec = {
  status: 500,
  slug: 'internal-error',
  title: 'Internal error',
  detail: 'Something went wrong on our side; the request may be retried',
};

/** Other errors fastify raises for what the client sent carry their own 4xx status. */
const clientError = (status: number): ProblemSpec => ({ status, slug: 'bad-request', title: 'Bad request' });

export const problemType = (slug: string): string => `urn:problem-type:rabbit-functions:${slug}`;

/** How `error` is answered, and the fields it names. */
function answerFor(error: FastifyError): { spec: ProblemSpec; issues: readonly FieldIssue[] } {
  if (error instanceof ProblemError) return { spec: error.problem, issues: error.issues };
  const known = error.code !== undefined && Object.hasOwn(FASTIFY_ERRORS, error.code) ? FASTIFY_ERRORS[error.code] : undefined;
  if (known) return { spec: known, issues: known.issues ?? [] };
  const status = error.statusCode;
  return { spec: status !== undefined && status >= 400 && status < 500 ? clientError(status) : INTERNAL, issues: [] };
}

/** The problem response for `error` (instance: the request path, if given). */
export function problemFor(error: unknown, instance?: string): ProblemResponse {
  const e = (error instanceof Error ? error : new Error(String(error))) as FastifyError;
  const { spec, issues } = answerFor(e);
  const body: Problem = {
    type: problemType(spec.slug),
    title: spec.title,
    status: spec.status,
    detail: spec.detail ?? e.message,
    ...(instance ? { instance: instance.split('?')[0]! } : {}),
    ...(issues.length > 0 ? { errors: [...issues] } : {}),
  };
  return { status: spec.status, headers: { ...spec.headers }, body };
}
