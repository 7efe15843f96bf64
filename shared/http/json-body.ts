/**
 * What the API reads as a request body: JSON in UTF-8, on the routes that take one, so each route only
 * checks what the JSON says. An exposed plugin (it replaces the app's body parsers, which are app-wide):
 *
 *   POST without Content-Type            415: a body of unknown type is not guessed to be JSON
 *   another media type                   415: application/json is the only parser
 *   a charset other than UTF-8           415: JSON between systems is UTF-8 (RFC 8259); utf-16 or latin1
 *                                        bytes would be misread, not refused
 *   bytes that are not UTF-8             400 (body), rather than U+FFFD stored in their place
 *   GET or HEAD with a body              400 (body), rather than a body silently ignored
 *
 * Under Lambda (@fastify/aws-lambda) the event holds the whole body, so its Content-Length header frames
 * nothing: serverless-offline, for one, JSON-parses a body and passes `null` on as no body and `"hi"` as
 * `hi`, yet keeps the client's Content-Length, which fastify then reports as a Content-Length mismatch.
 * There the header is set to the length of the body the event holds.
 */
import type { FastifyRequest } from 'fastify';
import { ValidationError } from '../contract/errors';
import { expose } from './expose';
import { UnsupportedMediaTypeError } from './problem';

/** Methods whose routes read no body. */
const BODYLESS = new Set(['GET', 'HEAD']);

/** Charset labels that name UTF-8 (the parameter itself is optional). */
const UTF8_LABELS = new Set(['utf-8', 'utf8']);

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i;

/** The charset parameter of a Content-Type, lower-cased; undefined when it has none. */
const charsetOf = (contentType: string | undefined): string | undefined => CHARSET.exec(contentType ?? '')?.[1]?.toLowerCase();

interface LambdaEvent {
  body?: unknown;
  isBase64Encoded?: unknown;
}

/** The API Gateway event, when @fastify/aws-lambda decorated the request with it. */
const lambdaEvent = (request: FastifyRequest): LambdaEvent | undefined =>
  (request as { awsLambda?: { event?: LambdaEvent } }).awsLambda?.event;

/** The byte length of the body @fastify/aws-lambda hands fastify for `event`. */
const eventBodyLength = (event: LambdaEvent): number =>
  typeof event.body === 'string' ? Buffer.byteLength(event.body, event.isBase64Encoded === true ? 'base64' : 'utf8') : 0;

const hasBody = (headers: FastifyRequest['headers']): boolean =>
  headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');

/** Why the request's framing is refused before its body is read, if it is. */
function framingProblem(request: FastifyRequest): Error | undefined {
  const { headers, method } = request;
  if (BODYLESS.has(method)) {
    return hasBody(headers) ? new ValidationError([{ field: 'body', message: `must be empty for ${method}` }]) : undefined;
  }
  return headers['content-type'] === undefined ? new UnsupportedMediaTypeError('must be application/json') : undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The body as text; a byte-order mark is dropped, as JSON parsers may do (RFC 8259). */
function utf8Text(body: Buffer): string {
  try {
    return utf8.decode(body);
  } catch {
    throw new ValidationError([{ field: 'body', message: 'not valid UTF-8' }]);
  }
}

export const jsonBodyPlugin = expose('json-body', async (app) => {
  // fastify's own JSON parser (prototype poisoning refused, as by default), fed only UTF-8 text.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser<Buffer>('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const charset = charsetOf(request.headers['content-type']);
    if (charset !== undefined && !UTF8_LABELS.has(charset)) throw new UnsupportedMediaTypeError('charset must be utf-8');
    parseJson(request, utf8Text(body), done);
  });

  // preParsing: after every onRequest hook (the admin token is checked first), before the body is read.
  app.addHook('preParsing', async (request) => {
    if (request.is404) return;
    const event = lambdaEvent(request);
    if (event) request.raw.headers['content-length'] = String(eventBodyLength(event));
    const problem = framingProblem(request);
    if (problem) throw problem;
  });
});
