/**
 * The inputs of `list` and `redrive`, validated once for both the HTTP API and the command line (same field
 * names: snake_case, as the HTTP body has them). Bad input is an InvalidDlqOptionsError naming the field.
 */
import * as z from 'zod';
import { PARKING_LOT_QUEUE } from '../messaging';
import { type DlqOptionIssue, InvalidDlqOptionsError } from './errors';
import { DLQ_ERROR_CLASSES, type DlqErrorClass } from './message';

/** Highest `limit` and `rate` a request may ask for. */
const MAX_REDRIVE_LIMIT = 100_000;
const MAX_REDRIVE_RATE = 1_000;
const MAX_SAMPLE_SIZE = 100;

const DlqName = z
  .string()
  .trim()
  .min(5)
  .max(255)
  .regex(/^[A-Za-z0-9._:-]+-dlq$/, 'must be the name of a DLQ (`<queue>-dlq`)');

const ErrorClass = z.enum(DLQ_ERROR_CLASSES as [DlqErrorClass, ...DlqErrorClass[]], {
  error: `must be one of ${DLQ_ERROR_CLASSES.join(', ')}`,
});

/** POST /dlq/redrive body, and `dlq redrive` flags (and, with the job's id, a redrive job's message: jobs.ts). */
export const RedriveRequest = z.strictObject({
  queue: DlqName,
  limit: z.number().int().min(1).max(MAX_REDRIVE_LIMIT).optional(),
  rate: z.number().positive().max(MAX_REDRIVE_RATE).optional(),
  error_class: z.preprocess((value) => (typeof value === 'string' ? [value] : value), z.array(ErrorClass).min(1)).optional(),
  error_name: z.string().trim().min(1).max(200).optional(),
  dry_run: z.boolean().optional(),
});

/** GET /dlq query, and `dlq list` flags. Query strings arrive as text, hence the coercion. */
const ListRequest = z.strictObject({
  queue: z.preprocess((value) => (typeof value === 'string' ? [value] : value), z.array(DlqName).min(1).max(50)).optional(),
  sample: z.coerce.number().int().min(0).max(MAX_SAMPLE_SIZE).optional(),
});

/** GET /dlq/message query: one message by its position, optionally checked against the id the caller saw there. */
const MessageRequest = z.strictObject({
  queue: z.union([z.literal(PARKING_LOT_QUEUE), DlqName], { error: 'must be the name of a DLQ (`<queue>-dlq`) or parking-lot' }),
  position: z.coerce.number().int().min(1).max(MAX_SAMPLE_SIZE),
  message_id: z.string().min(1).max(255).optional(),
});

/** What a redrive does; the reprocessor fills in what is left out from configuration. */
export interface RedriveOptions {
  /** The DLQ, `<queue>-dlq`. */
  queue: string;
  /** Most messages moved or parked (default DLQ_REDRIVE_LIMIT). */
  limit?: number;
  /** Most messages published per second (default DLQ_REDRIVE_RATE). */
  rate?: number;
  /** Only messages of these classes are redriven; the rest are skipped and stay where they are. */
  errorClasses?: readonly DlqErrorClass[];
  /** Only messages whose x-error-name is this are redriven. */
  errorName?: string;
  /** Report what would happen, change nothing. */
  dryRun?: boolean;
  /** Start no new message after this many milliseconds (the HTTP handler stays inside its Lambda timeout). */
  maxDurationMs?: number;
  /** Stops before the next message when aborted; what was moved stays moved, the rest stays in the DLQ. */
  signal?: AbortSignal;
  /**
   * Called with the report so far once the DLQ is locked and its depth read, then before each message (a
   * redrive job publishes its progress from it). It must not throw or keep the report.
   */
  onProgress?: (report: Readonly<RedriveReportSoFar>) => void;
}

/** The counts a redrive's progress shows (the report's fields, read while it runs). */
export interface RedriveReportSoFar {
  dlq: string;
  dryRun: boolean;
  moved: readonly string[];
  parked: readonly string[];
  skipped: readonly string[];
  failed: readonly unknown[];
  examined: number;
  depthBefore: number;
}

export interface ListOptions {
  /** DLQs to show (default: the DLQ of every work queue). */
  queues?: readonly string[];
  /** Messages shown per DLQ (default DLQ_SAMPLE_SIZE). */
  sampleSize?: number;
}

const issuesOf = (error: z.ZodError): DlqOptionIssue[] =>
  error.issues.flatMap((issue) => {
    const message = issue.message.replace(/^Invalid input: /, '');
    if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => ({ field: key, message: 'unknown field' }));
    return [{ field: issue.path.length > 0 ? String(issue.path[0]) : 'body', message }];
  });

function parse<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const result = schema.safeParse(input ?? {});
  if (!result.success) throw new InvalidDlqOptionsError(issuesOf(result.error));
  return result.data;
}

/** Validates a redrive request (HTTP body or command-line flags); InvalidDlqOptionsError names the bad fields. */
export function parseRedriveRequest(input: unknown): RedriveOptions {
  return redriveOptionsOf(parse(RedriveRequest, input));
}

/** A validated redrive request as the reprocessor's options. */
export function redriveOptionsOf(request: z.infer<typeof RedriveRequest>): RedriveOptions {
  const classes = request.error_class;
  return {
    queue: request.queue,
    ...(request.limit !== undefined ? { limit: request.limit } : {}),
    ...(request.rate !== undefined ? { rate: request.rate } : {}),
    ...(classes ? { errorClasses: [...new Set(classes)] } : {}),
    ...(request.error_name !== undefined ? { errorName: request.error_name } : {}),
    dryRun: request.dry_run ?? false,
  };
}

/** Validates a list request (HTTP query or command-line flags). */
export function parseListRequest(input: unknown): ListOptions {
  const request = parse(ListRequest, input);
  return {
    ...(request.queue !== undefined ? { queues: request.queue } : {}),
    ...(request.sample !== undefined ? { sampleSize: request.sample } : {}),
  };
}

export interface MessageOptions {
  queue: string;
  /** 1-based position in the DLQ (at most the largest sample a listing shows). */
  position: number;
  /** The messageId the caller saw at that position; MessageMovedError when another message is there now. */
  messageId?: string;
}

/** Validates a message request (HTTP query). */
export function parseMessageRequest(input: unknown): MessageOptions {
  const request = parse(MessageRequest, input);
  return {
    queue: request.queue,
    position: request.position,
    ...(request.message_id !== undefined ? { messageId: request.message_id } : {}),
  };
}
