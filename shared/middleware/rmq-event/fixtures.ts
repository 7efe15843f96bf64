/**
 * Events from message bodies, without a broker: for fixture files, `invoke` and tests.
 */
import { buildRabbitMQEvent, localEventSourceArn } from './build.js';
import type { RabbitMQEvent, RabbitMQProperties } from './types.js';

/** Properties the wire contract derives from a JSON body: its event_id, event_type and timestamp. */
function contractProperties(body: object): RabbitMQProperties {
  const { event_id, event_type, timestamp } = body as Record<string, unknown>;
  const millis = typeof timestamp === 'string' ? Date.parse(timestamp) : Number.NaN;
  return {
    contentType: 'application/json',
    messageId: typeof event_id === 'string' ? event_id : undefined,
    type: typeof event_type === 'string' ? event_type : undefined,
    timestamp: Number.isNaN(millis) ? undefined : Math.floor(millis / 1000),
  };
}

/**
 * A valid `aws:rmq` event carrying `bodies` on one queue. Every message is persistent (deliveryMode 2); a JSON
 * object body is serialized and gets contentType application/json, messageId from its event_id, type from
 * its event_type and timestamp from its timestamp; strings and Buffers are sent as they are. `properties`
 * (headers as plain values, timestamp in seconds) apply to every message and win over the derived ones.
 */
export function rabbitMQEventFromBodies(options: {
  queue: string;
  vhost?: string;
  bodies: Array<string | object>;
  properties?: RabbitMQProperties;
  redelivered?: boolean;
  eventSourceArn?: string;
}): RabbitMQEvent {
  const { queue, vhost = '/', redelivered = false, eventSourceArn = localEventSourceArn() } = options;
  const given = Object.fromEntries(Object.entries(options.properties ?? {}).filter(([, v]) => v !== undefined));
  return buildRabbitMQEvent({
    eventSourceArn,
    vhost,
    messages: options.bodies.map((body) => {
      const raw = typeof body === 'string' || body instanceof Uint8Array;
      const content = raw ? Buffer.from(body) : Buffer.from(JSON.stringify(body), 'utf8');
      const properties = { deliveryMode: 2, ...(raw ? {} : contractProperties(body)), ...given };
      return { queue, message: { content, fields: { redelivered }, properties } };
    }),
  });
}
