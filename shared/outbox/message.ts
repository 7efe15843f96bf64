/**
 * The outbox row of an event: where it goes (its route), the AMQP properties it is published with, and the
 * trace context of the span that caused it (the active one: the HTTP request, or the record being handled).
 */
import { toShortstr } from 'middy-rabbitmq/amqp';
import { traceHeaders } from 'middy-rabbitmq/tracing';
import { type DomainEvent, eventProperties, ROUTES } from '../events';
import type { NewOutboxMessage } from '../store';

export function outboxMessage(event: DomainEvent, appId: string, correlationId?: string): NewOutboxMessage {
  const route = ROUTES[event.event_type];
  return {
    event_id: event.event_id,
    exchange: route.exchange,
    routing_key: route.routingKey,
    body: event,
    // Cut to a shortstr: a correlationId that arrived with bytes that are not UTF-8 can be longer once
    // decoded, and an event amqplib refuses to publish would stay in the outbox for ever.
    properties: eventProperties(event, appId, toShortstr(correlationId)),
    ...traceHeaders(),
  };
}
