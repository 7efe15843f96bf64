/**
 * The wire contract's events: one zod definition per event gives both the TypeScript type and the runtime
 * check, plus the AMQP properties every message carries.
 */
import { randomUUID } from 'node:crypto';
import * as z from 'zod';
import { ROUTES as CONTRACT_ROUTES } from '../contract/routes';
import { storableText } from '../contract/validation';

const base = {
  event_id: z.uuid(),
  order_id: z.uuid(),
  timestamp: z.iso.datetime({ offset: true }),
  user_id: storableText().trim().min(1).max(200),
  item: storableText().trim().min(1).max(200),
  quantity: z.number().int().positive().max(1_000_000),
};

export const OrderPlaced = z.object({ ...base, event_type: z.literal('OrderPlaced') });
export const InventoryReserved = z.object({ ...base, event_type: z.literal('InventoryReserved') });
export const InventoryFailed = z.object({
  ...base,
  event_type: z.literal('InventoryFailed'),
  reason: storableText().min(1).max(200),
});

/** Any event of the contract, told apart by `event_type`. */
export const DomainEvent = z.discriminatedUnion('event_type', [OrderPlaced, InventoryReserved, InventoryFailed]);

/** What inventory announces about an order: the events the notification and status functions consume. */
export const InventoryOutcome = z.discriminatedUnion('event_type', [InventoryReserved, InventoryFailed]);

export type OrderPlaced = z.infer<typeof OrderPlaced>;
export type InventoryReserved = z.infer<typeof InventoryReserved>;
export type InventoryFailed = z.infer<typeof InventoryFailed>;
export type DomainEvent = z.infer<typeof DomainEvent>;
export type EventType = DomainEvent['event_type'];

/**
 * The event types a schema of this module accepts, read from the schema itself (its `event_type` literals), so
 * a function's list of handled types is never restated by hand.
 */
export function eventTypesOf(schema: z.ZodType): EventType[] {
  const def = (schema as { def?: { options?: z.ZodType[]; shape?: { event_type?: { def?: { values?: unknown[] } } } } }).def;
  if (def?.options) return def.options.flatMap(eventTypesOf);
  const values = def?.shape?.event_type?.def?.values;
  if (!values) throw new TypeError('eventTypesOf: not an event schema (no event_type literal)');
  return values as EventType[];
}

/** The messageId and type every message of the contract carries: its body's event_id and event_type. */
export const eventIdentity = (event: DomainEvent): { messageId: string; type: EventType } => ({
  messageId: event.event_id,
  type: event.event_type,
});

/** Where each event type is published: exchange and routing key (one for every event type, checked here). */
export const ROUTES: Readonly<Record<EventType, { exchange: string; routingKey: string }>> = CONTRACT_ROUTES;

type Fields<E extends DomainEvent> = Omit<E, 'event_id' | 'timestamp' | 'event_type'> & Partial<Pick<E, 'event_id' | 'timestamp'>>;

/** Builds a new event with a fresh `event_id` and the current time unless given. */
export function newEvent<T extends EventType>(
  eventType: T,
  fields: Fields<Extract<DomainEvent, { event_type: T }>>,
): Extract<DomainEvent, { event_type: T }> {
  return {
    ...fields,
    event_id: fields.event_id ?? randomUUID(),
    timestamp: fields.timestamp ?? new Date().toISOString(),
    event_type: eventType,
  } as Extract<DomainEvent, { event_type: T }>;
}

/** The AMQP properties every message of the contract carries (amqplib's publish options). */
export interface EventProperties {
  contentType: 'application/json';
  deliveryMode: 2;
  persistent: true;
  messageId: string;
  type: EventType;
  /** Seconds since the epoch, as AMQP timestamps are. */
  timestamp: number;
  appId: string;
  correlationId?: string;
  headers?: Record<string, unknown>;
}

/** The properties for publishing `event` from service `appId`, carrying `correlationId` when known. */
export function eventProperties(event: DomainEvent, appId: string, correlationId?: string): EventProperties {
  return {
    contentType: 'application/json',
    deliveryMode: 2,
    persistent: true,
    messageId: event.event_id,
    type: event.event_type,
    timestamp: Math.floor(Date.parse(event.timestamp) / 1000),
    appId,
    ...(correlationId ? { correlationId } : {}),
  };
}
