/**
 * Structured logging: one JSON line per event worth knowing, via pino (fast, JSON by default, built-in
 * redaction). Secrets and personal data are redacted by default, wherever they appear in a log object,
 * and passwords inside URLs are masked. On a terminal (not in Lambda, not with LOG_FORMAT=json) each line is
 * printed readably by pino-pretty instead (middy-rabbitmq/log-format), after the same redaction.
 */

import { type LogFormat, logFormat, prettyDestination } from 'middy-rabbitmq/log-format';
import { traceMixin } from 'middy-rabbitmq/tracing';
import { type DestinationStream, destination, type Logger, pino, stdSerializers, stdTimeFunctions } from 'pino';
import { config } from '../config';
import { redactFields } from './redact';

export type { Logger } from 'pino';

/** Field names whose values never reach a log line. */
export const REDACTED_FIELDS = [
  'password',
  'pass',
  'secret',
  'token',
  'adminToken',
  'authorization',
  'Authorization',
  'cookie',
  'apiKey',
  'api_key',
  'amqpUrl',
  'databaseUrl',
  'email',
  'phone',
  'address',
  'user_id',
  'userId',
] as const;

const REDACTED = new Set<string>(REDACTED_FIELDS);
const CENSOR = '[redacted]';

/** Masks `user:password@` in any URL inside a string. */
const maskUrlCredentials = (text: string): string => text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]+):[^@/\s]+@/gi, '$1:***@');

export interface LoggerOptions {
  /** Minimum level written (default from LOG_LEVEL). */
  level?: string;
  /** `service` field on every line (default SERVICE_NAME). */
  service?: string;
  /** Where lines go (default stdout); tests pass a stream to read them back. */
  destination?: DestinationStream;
  /** JSON lines or readable ones (default: JSON into a given destination, else logFormat(): LOG_FORMAT, Lambda, terminal). */
  format?: LogFormat;
}

/** A logger with redaction (JSON lines, or readable ones); child loggers add fields such as function name or request id. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? config().logLevel,
      base: { service: options.service ?? config().serviceName },
      timestamp: stdTimeFunctions.isoTime,
      messageKey: 'message',
      // A line's object is redacted at any depth by one walk (./redact.ts: pino's wildcard paths cost ten times
      // as much, on every line and every child logger). Pino's own redaction keeps the top-level fields only,
      // which is what reaches child loggers' bindings: bind ids and names there, not objects holding personal data.
      formatters: { level: (label) => ({ level: label }), log: (object) => redactFields(object, REDACTED, CENSOR) },
      redact: { paths: [...REDACTED_FIELDS], censor: CENSOR },
      // trace_id and span_id on every line written in a span (shared/tracing).
      mixin: traceMixin,
      hooks: {
        logMethod(args, method) {
          const masked = args.map((arg) => (typeof arg === 'string' ? maskUrlCredentials(arg) : arg));
          method.apply(this, masked as Parameters<typeof method>);
        },
      },
      serializers: {
        err: (error: unknown) => {
          const serialized = stdSerializers.err(error as Error);
          // The stack repeats the message: masked as well.
          return {
            ...serialized,
            message: maskUrlCredentials(serialized.message ?? ''),
            ...(typeof serialized.stack === 'string' ? { stack: maskUrlCredentials(serialized.stack) } : {}),
          };
        },
      },
    },
    (options.format ?? (options.destination ? 'json' : logFormat())) === 'pretty'
      ? prettyDestination({ messageKey: 'message', ...(options.destination ? { destination: options.destination } : {}) })
      : (options.destination ?? destination({ sync: true })),
  );
}

let root: Logger | undefined;

/** The process-wide logger. */
export function logger(): Logger {
  root ??= createLogger();
  return root;
}
