/**
 * The `aws:rmq` event (Amazon MQ for RabbitMQ -> Lambda): its type, its runtime check, and a codec between it
 * and amqplib messages that reproduces what AWS sends.
 */

export {
  type AmqpMessageLike,
  buildRabbitMQEvent,
  encodeHeaderValue,
  localEventSourceArn,
  MAX_HEADER_DEPTH,
  toRabbitMQMessage,
  UnrepresentableMessageError,
} from './build.js';
export {
  assertRabbitMQEvent,
  decodeHeaderValue,
  decodeProperties,
  decodeRabbitMQEvent,
  InvalidRabbitMQEventError,
} from './decode.js';
export { rabbitMQEventFromBodies } from './fixtures.js';
export { base64Length, envelopeBytes, MAX_INVOCATION_PAYLOAD_BYTES, messageBytes, recordBytes } from './size.js';
export { formatAmqpTimestamp, parseAmqpTimestamp } from './timestamp.js';
export * from './types.js';
