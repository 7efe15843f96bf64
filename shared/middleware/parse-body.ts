/**
 * Parse body: per-record middleware that turns the message body into a typed, schema-validated payload.
 * Unparseable JSON, a schema violation or an event type this function does not handle is a permanent error,
 * so the poison-message middleware sends the message to its DLQ at once with that reason.
 *
 *   middy(recordHandler).use(parseBody({ schema: OrderPlaced }))
 */
import type middy from '@middy/core';
import type { z } from 'zod';
import {
  ContractViolationError,
  MalformedMessageError,
  MissingMessageIdError,
  SchemaViolationError,
  UnknownEventTypeError,
} from './errors.js';
import type { QueueRecord, RecordContext } from './types.js';

export interface ParseBodyOptions<T> {
  /** The zod schema of the payload (one source for the type and the check). */
  schema: z.ZodType<T>;
  /** Event types this function handles (checked on `event_type` before the schema, for a clearer reason). */
  eventTypes?: readonly string[];
  /**
   * What the message's `messageId` and `type` properties must be for this payload (e.g. the body's event_id
   * and event_type). A message that says otherwise is a ContractViolationError: the idempotency claim is
   * keyed by messageId, and one event must not be processed under several ids.
   */
  identity?: (payload: T) => { messageId: string; type: string };
}

export function parseBody<T>(options: ParseBodyOptions<T>): middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext> {
  const { schema, eventTypes, identity } = options;
  const decoder = new TextDecoder('utf-8', { fatal: true });
  return {
    before: (request) => {
      let json: unknown;
      try {
        json = JSON.parse(decoder.decode(request.event.body));
      } catch (error) {
        throw new MalformedMessageError(`Body is not valid JSON: ${(error as Error).message}`);
      }
      const eventType = (json as { event_type?: unknown } | null)?.event_type;
      if (eventTypes && !eventTypes.includes(String(eventType))) {
        throw new UnknownEventTypeError(
          `Unknown event type ${JSON.stringify(eventType ?? null)}; this function handles ${eventTypes.join(', ')}`,
        );
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        const issues = parsed.error.issues.map((issue) => ({ path: issue.path.join('.') || '(body)', message: issue.message }));
        throw new SchemaViolationError(`Schema violation: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, issues);
      }
      if (identity) checkIdentity(request.event, identity(parsed.data));
      request.event.payload = parsed.data;
    },
  };
}

function checkIdentity(record: QueueRecord<unknown>, expected: { messageId: string; type: string }): void {
  if (!record.messageId) throw new MissingMessageIdError('Message has no messageId; it cannot be processed exactly once');
  if (record.messageId !== expected.messageId) {
    throw new ContractViolationError(
      `messageId ${JSON.stringify(record.messageId)} is not the body's id ${JSON.stringify(expected.messageId)}`,
    );
  }
  const type = record.properties.type;
  if (type !== expected.type) {
    throw new ContractViolationError(
      `type property ${JSON.stringify(type ?? null)} is not the body's type ${JSON.stringify(expected.type)}`,
    );
  }
}
