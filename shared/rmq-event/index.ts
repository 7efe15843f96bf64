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
} from './build';
export {
  assertRabbitMQEvent,
  decodeHeaderValue,
  decodeProperties,
  decodeRabbitMQEvent,
  InvalidRabbitMQEventError,
} from './decode';
export { rabbitMQEventFromBodies } from './fixtures';
export { base64Length, envelopeBytes, MAX_INVOCATION_PAYLOAD_BYTES, messageBytes, recordBytes } from './size';
export { formatAmqpTimestamp, parseAmqpTimestamp } from './timestamp';
export * from './types';
