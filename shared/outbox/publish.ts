/**
 * Publishing outbox rows with confirms: a row is marked published only after the broker confirmed it, and a
 * failure is recorded on the row, which stays pending for the next round.
 *
 * Delivery is at least once, never at most once: a crash (or a lost database) between the confirm and
 * `markPublished` sends the same row again on the next round, with the same `messageId` (the row's
 * event_id). Two relays on one database (several workers, or intake's own publish racing the loop) can
 * also both send a row. Consumers therefore dedupe by messageId (the inbox); within one process the same
 * publisher never has the same event in flight twice.
 *
 * A row whose publish found the broker unavailable (known down, or unreachable) was never sent: it is
 * `deferred`, left as it is for the next round, and not counted as a failed attempt.
 */
import type { Options } from 'amqplib';
import { extractTraceContext, publishSpan, type TraceHeaders } from 'middy-rabbitmq/tracing';
import { within } from '../lib/within';
import type { Logger } from '../logging';
import { BrokerUnavailableError, type OutgoingMessage, type Publisher } from '../messaging';
import type { NewOutboxMessage, OutboxMessage, Store } from '../store';

/** What the relay logs with: any pino-style logger (fastify's request logger too). */
export type OutboxLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** What the relay needs of a store. */
export type RelayStore = Pick<Store, 'outbox'>;

/** The broker did not confirm within the wait; the row stays pending (and is marked if the confirm comes later). */
class OutboxPublishTimeoutError extends Error {
  override readonly name = 'OutboxPublishTimeoutError';
  constructor(eventId: string, timeoutMs: number) {
    super(`No confirm for event ${eventId} within ${timeoutMs} ms`);
  }
}

/** `deferred`: not sent, the broker is unavailable; the row waits for the relay as it is. */
export type PublishOutcome = 'published' | 'failed' | 'deferred';

/** True for a failure that means the message never left: the broker is down or unreachable. */
const isBrokerUnavailable = (error: unknown): error is BrokerUnavailableError => error instanceof BrokerUnavailableError;

export interface PublishRowOptions {
  /** How long to wait for the confirm (default 10 s). A publish still under way afterwards keeps going. */
  timeoutMs?: number;
  logger?: OutboxLogger;
}

export const DEFAULT_PUBLISH_TIMEOUT_MS = 10_000;

/** Event ids each publisher has on the wire, so a slow publish is not sent again by the next round. */
const inFlight = new WeakMap<Publisher, Set<string>>();

const inFlightOf = (publisher: Publisher): Set<string> => {
  let set = inFlight.get(publisher);
  if (!set) {
    set = new Set();
    inFlight.set(publisher, set);
  }
  return set;
};

/** True while `publisher` is still waiting for the broker on this event. */
export const isInFlight = (publisher: Publisher, eventId: string): boolean => inFlightOf(publisher).has(eventId);

/** The AMQP publish options of an outbox message: its stored properties, messageId = event_id, the publish span's trace headers. */
const publishOptions = (message: Pick<NewOutboxMessage, 'event_id' | 'properties'>, trace: TraceHeaders): Options.Publish => {
  const properties = message.properties as Options.Publish;
  return { ...properties, messageId: message.event_id, headers: { ...properties.headers, ...trace } };
};

/**
 * Publishes one outbox message in a span of its own, a child of the span that caused the event (stored with
 * the row): the message carries the publish span's context, so the consumer continues the same trace.
 */
const publishTraced = (
  publisher: Publisher,
  message: { event_id: string; exchange: string; routing_key: string; traceparent?: string | null; tracestate?: string | null },
  outgoing: (trace: TraceHeaders) => OutgoingMessage,
): Promise<void> =>
  publishSpan(
    { exchange: message.exchange, routingKey: message.routing_key, messageId: message.event_id },
    extractTraceContext({ traceparent: message.traceparent, tracestate: message.tracestate }),
    (trace) => publisher.publish(outgoing(trace)),
  );

/** The AMQP message for a row: the stored body byte for byte, its properties, messageId = event_id. */
const toOutgoing = (row: OutboxMessage, trace: TraceHeaders): OutgoingMessage => ({
  exchange: row.exchange,
  routingKey: row.routing_key,
  body: Buffer.from(row.body),
  options: publishOptions(row, trace),
});

/**
 * Sends one row and waits (bounded) for its confirm; resolves to the error, or undefined when confirmed.
 * Keeps the event in flight until the broker answers; a confirm that arrives after the wait still marks
 * the row published, so it is not sent again. Does not touch the row otherwise (see `settleRow`).
 */
export async function sendRow(store: RelayStore, publisher: Publisher, row: OutboxMessage, timeoutMs: number): Promise<unknown> {
  const flying = inFlightOf(publisher);
  flying.add(row.event_id);
  const attempt = publishTraced(publisher, row, (trace) => toOutgoing(row, trace)).finally(() => flying.delete(row.event_id));
  try {
    await within(attempt, timeoutMs, () => new OutboxPublishTimeoutError(row.event_id, timeoutMs));
    return undefined;
  } catch (error) {
    if (error instanceof OutboxPublishTimeoutError) {
      attempt.then(() => store.outbox.markPublished([row.id])).catch(() => undefined);
    }
    return error ?? new Error('publish failed');
  }
}

/**
 * Marks the row published (no error), or records the failure on it (it stays pending). A row the broker was
 * unavailable for is left untouched ('deferred'): during an outage that would be a write and a warning per
 * row per round, for a send that never happened; the caller logs the outage once.
 */
export async function settleRow(store: RelayStore, row: OutboxMessage, error: unknown, logger?: OutboxLogger): Promise<PublishOutcome> {
  if (error === undefined) {
    await store.outbox.markPublished([row.id]);
    return 'published';
  }
  if (isBrokerUnavailable(error)) return 'deferred';
  logger?.warn({ err: error, eventId: row.event_id, attempts: row.attempts + 1 }, 'outbox publish failed; will retry');
  await store.outbox.recordFailure(row.id, error).catch(() => undefined);
  return 'failed';
}

/** The AMQP message for an event just committed: the body as the outbox stored it (its JSON), its properties. */
const outgoingOf = (message: NewOutboxMessage, trace: TraceHeaders): OutgoingMessage => ({
  exchange: message.exchange,
  routingKey: message.routing_key,
  body: Buffer.from(JSON.stringify(message.body)),
  options: publishOptions(message, trace),
});

/**
 * Publishes events just committed, from memory (their rows are not read back): all sent at once, each with
 * its confirm; those confirmed within `timeoutMs` are marked published with ONE statement, and a confirm
 * that comes later still marks its row. Whatever was not confirmed stays pending for the relay (and a lease
 * the caller took on it ends, unless a confirm may still come); while the broker is known down that is at
 * once ('deferred'). Never throws for a broker problem, only when the database fails; the outcomes are in
 * the messages' order.
 */
export async function publishCommitted(
  store: Pick<Store, 'outbox'>,
  publisher: Publisher,
  messages: readonly NewOutboxMessage[],
  options: PublishRowOptions = {},
): Promise<PublishOutcome[]> {
  if (messages.length === 0) return [];
  const timeoutMs = options.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
  const flying = inFlightOf(publisher);
  const attempts = messages.map((message) => {
    flying.add(message.event_id);
    return publishTraced(publisher, message, (trace) => outgoingOf(message, trace)).finally(() => flying.delete(message.event_id));
  });
  const errors = await Promise.all(
    attempts.map((attempt, i) =>
      within(attempt, timeoutMs, () => new OutboxPublishTimeoutError(messages[i]!.event_id, timeoutMs)).then(
        () => undefined,
        (error: unknown) => error ?? new Error('publish failed'),
      ),
    ),
  );
  await store.outbox.markPublishedByEventId(messages.filter((_, i) => errors[i] === undefined).map((message) => message.event_id));
  // Refused or never sent: the caller's lease ends now, so a relay sends them as soon as it can. One still
  // waiting for its confirm keeps its lease: the late confirm marks it.
  const failed = (error: unknown) => error !== undefined && !(error instanceof OutboxPublishTimeoutError);
  await store.outbox.release(messages.filter((_, i) => failed(errors[i])).map((message) => message.event_id));
  return errors.map((error, i) => {
    if (error === undefined) return 'published';
    if (error instanceof OutboxPublishTimeoutError) {
      attempts[i]!.then(() => store.outbox.markPublishedByEventId([messages[i]!.event_id])).catch(() => undefined);
    }
    if (isBrokerUnavailable(error)) return 'deferred';
    options.logger?.warn({ err: error, eventId: messages[i]!.event_id }, 'publish after commit failed; the outbox relay will send it');
    return 'failed';
  });
}
