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
import type { Logger } from '../logging';
import { BrokerUnavailableError, type OutgoingMessage, type Publisher } from '../messaging';
import type { OutboxMessage, Store } from '../store';

/** What the relay logs with: any pino-style logger (fastify's request logger too). */
export type OutboxLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** What the relay needs of a store. */
export type RelayStore = Pick<Store, 'outbox' | 'db'>;

/** The broker did not confirm within the wait; the row stays pending (and is marked if the confirm comes later). */
export class OutboxPublishTimeoutError extends Error {
  override readonly name = 'OutboxPublishTimeoutError';
  constructor(eventId: string, timeoutMs: number) {
    super(`No confirm for event ${eventId} within ${timeoutMs} ms`);
  }
}

/** `deferred`: not sent, the broker is unavailable; the row waits for the relay as it is. */
export type PublishOutcome = 'published' | 'failed' | 'deferred' | 'in_flight' | 'not_pending';

/** True for a failure that means the message never left: the broker is down or unreachable. */
export const isBrokerUnavailable = (error: unknown): error is BrokerUnavailableError => error instanceof BrokerUnavailableError;

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
  if (!set) inFlight.set(publisher, (set = new Set()));
  return set;
};

/** True while `publisher` is still waiting for the broker on this event. */
export const isInFlight = (publisher: Publisher, eventId: string): boolean => inFlightOf(publisher).has(eventId);

/** The AMQP message for a row: the stored body byte for byte, its properties, messageId = event_id. */
export function toOutgoing(row: OutboxMessage): OutgoingMessage {
  return {
    exchange: row.exchange,
    routingKey: row.routing_key,
    body: Buffer.from(row.body),
    options: { ...(row.properties as Options.Publish), messageId: row.event_id },
  };
}

/**
 * Sends one row and waits (bounded) for its confirm; resolves to the error, or undefined when confirmed.
 * Keeps the event in flight until the broker answers; a confirm that arrives after the wait still marks
 * the row published, so it is not sent again. Does not touch the row otherwise (see `settleRow`).
 */
export async function sendRow(store: RelayStore, publisher: Publisher, row: OutboxMessage, timeoutMs: number): Promise<unknown> {
  const flying = inFlightOf(publisher);
  flying.add(row.event_id);
  const attempt = publisher.publish(toOutgoing(row)).finally(() => flying.delete(row.event_id));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new OutboxPublishTimeoutError(row.event_id, timeoutMs)), timeoutMs);
  });
  try {
    await Promise.race([attempt, timeout]);
    return undefined;
  } catch (error) {
    if (error instanceof OutboxPublishTimeoutError) {
      attempt.then(() => store.outbox.markPublished([row.id])).catch(() => undefined);
    }
    return error ?? new Error('publish failed');
  } finally {
    clearTimeout(timer);
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

/**
 * Publishes one row and waits (bounded) for the confirm: marks it published, or records the failure, or
 * leaves it for the relay at once ('deferred') while the broker is down.
 * Never throws for a broker problem (only when the database fails); the outcome says what happened.
 */
export async function publishRow(
  store: RelayStore,
  publisher: Publisher,
  row: OutboxMessage,
  options: PublishRowOptions = {},
): Promise<PublishOutcome> {
  if (isInFlight(publisher, row.event_id)) return 'in_flight';
  const error = await sendRow(store, publisher, row, options.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS);
  return settleRow(store, row, error, options.logger);
}

/** The unpublished row of this event, if there is one. */
export async function pendingRow(store: RelayStore, eventId: string): Promise<OutboxMessage | undefined> {
  const row = await store.db
    .selectFrom('outbox')
    .select(['id', 'event_id', 'exchange', 'routing_key', 'body', 'properties', 'created_at', 'attempts', 'last_error'])
    .where('event_id', '=', eventId)
    .where('published_at', 'is', null)
    .executeTakeFirst();
  return row && { ...row, properties: JSON.parse(row.properties) as Record<string, unknown> };
}

/** Publishes the pending row of one event (intake's path right after commit); 'not_pending' if already sent. */
export async function publishEvent(
  store: RelayStore,
  publisher: Publisher,
  eventId: string,
  options: PublishRowOptions = {},
): Promise<PublishOutcome> {
  const row = await pendingRow(store, eventId);
  return row ? publishRow(store, publisher, row, options) : 'not_pending';
}
