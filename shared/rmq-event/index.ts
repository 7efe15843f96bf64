/**
 * The `aws:rmq` event (Amazon MQ for RabbitMQ -> Lambda): its type, its runtime check, and a codec between it
 * and amqplib messages that reproduces what AWS sends.
 */
export * from './types';
export { formatAmqpTimestamp, parseAmqpTimestamp } from './timestamp';
export {
  buildRabbitMQEvent,
  encodeHeaderValue,
  localEventSourceArn,
  toRabbitMQMessage,
  type AmqpMessageLike,
} from './build';
export {
  assertRabbitMQEvent,
  decodeHeaderValue,
  decodeProperties,
  decodeRabbitMQEvent,
  InvalidRabbitMQEventError,
} from './decode';
export { rabbitMQEventFromBodies } from './fixtures';
