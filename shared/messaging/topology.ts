/**
 * The broker topology, declared from this one module, idempotently, by whatever starts first.
 *
 * - `orders`, `inventory`: topic exchanges the services publish to.
 * - work queues (quorum): each dead-letters to `dlx` with its own name as routing key, after
 *   `deliveryLimit` deliveries (the broker's safety net against a batch that keeps failing).
 * - `<queue>-dlq` (quorum): bound to `dlx` under the work queue's name; poison messages end here.
 * - `retry` (headers exchange) and one `retry-<delay>ms` queue per configured delay: a message published to
 *   `retry` with routing key = its work queue and header `retry-delay-ms` waits out the queue's TTL, then is
 *   dead-lettered through the default exchange, whose routing key (the work queue's name) brings it home.
 *   One queue per delay keeps every message in it on the same TTL, so none waits behind a longer one.
 * - `parking-lot` (quorum): messages redriven too often are parked here, bound to `dlx` as `parking-lot`.
 * - `dlq-redrive-jobs` (quorum, with its DLQ): the app's own queue, outside the wire contract, that feeds the
 *   `dlqRedriveJob` function the redrive jobs `POST /dlq/redrive` accepts (shared/dlq/jobs.ts). Declared like a
 *   work queue, so a job message that cannot run is dead-lettered with its reason, never dropped.
 */
import type { Channel, ChannelModel } from 'amqplib';
import { RETRY_DELAY_HEADER } from 'middy-rabbitmq/core';
import { EXCHANGES } from '../contract/routes';

export { EXCHANGES, RETRY_DELAY_HEADER };

export interface WorkQueue {
  name: string;
  bindings: ReadonlyArray<{ exchange: string; pattern: string }>;
}

/** The contract's work queues and what feeds them. */
export const WORK_QUEUES: readonly WorkQueue[] = [
  { name: 'order-events', bindings: [{ exchange: EXCHANGES.orders, pattern: 'order.placed' }] },
  { name: 'inventory-events', bindings: [{ exchange: EXCHANGES.inventory, pattern: 'inventory.*' }] },
  { name: 'order-status-events', bindings: [{ exchange: EXCHANGES.inventory, pattern: 'inventory.*' }] },
];

export const PARKING_LOT_QUEUE = 'parking-lot';

/** The queue the DLQ redrive job function is fed from (functions/dlq-redrive-job.yml). */
export const REDRIVE_JOBS_QUEUE = 'dlq-redrive-jobs';

/** Queues of the app's own functions, outside the wire contract: declared as work queues (with a DLQ) too. */
export const FUNCTION_QUEUES: readonly WorkQueue[] = [{ name: REDRIVE_JOBS_QUEUE, bindings: [] }];

export const dlqName = (queue: string): string => `${queue}-dlq`;
export const retryQueueName = (delayMs: number): string => `retry-${delayMs}ms`;

export interface TopologyOptions {
  /** Deliveries before a work queue dead-letters a message (RabbitMQ `x-delivery-limit`). */
  deliveryLimit: number;
  /** Delays of the retry queues, in milliseconds. */
  retryDelaysMs: readonly number[];
  /** Extra work queues beyond the contract's (tests, new functions). */
  extraQueues?: readonly WorkQueue[];
  /**
   * The broker's major version. RabbitMQ 4 gives every quorum queue a delivery limit of 20 by default, after
   * which a message with nowhere to dead-letter is dropped; DLQs and the parking lot must never drop, so on 4+
   * they are declared without a limit (-1). RabbitMQ 3 has no default limit and no -1, so they get no argument.
   */
  brokerMajorVersion?: number;
}

interface QueueSpec {
  name: string;
  arguments: Record<string, unknown>;
  bindings: ReadonlyArray<{ exchange: string; pattern: string; arguments?: Record<string, unknown> }>;
}

export interface Topology {
  exchanges: ReadonlyArray<{ name: string; type: 'topic' | 'headers' }>;
  queues: readonly QueueSpec[];
}

// Quorum queues dead-letter at-least-once only with reject-publish overflow; without it a dead letter could
// be dropped if the target is unavailable at that instant.
const safeDeadLettering = { 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' };

/** The full topology for these options, as data: what `declareTopology` declares. */
export function topology(options: TopologyOptions): Topology {
  const known = new Set([...WORK_QUEUES, ...FUNCTION_QUEUES].map((queue) => queue.name));
  const workQueues = [...WORK_QUEUES, ...FUNCTION_QUEUES, ...(options.extraQueues ?? []).filter((queue) => !known.has(queue.name))];
  const quorum = { 'x-queue-type': 'quorum' };
  // Terminal queues (nothing to dead-letter to): never drop a message for having been read too often.
  const terminal = (options.brokerMajorVersion ?? 3) >= 4 ? { ...quorum, 'x-delivery-limit': -1 } : quorum;
  const queues: QueueSpec[] = [];
  for (const queue of workQueues) {
    queues.push({
      name: queue.name,
      arguments: {
        ...quorum,
        ...safeDeadLettering,
        'x-dead-letter-exchange': EXCHANGES.deadLetter,
        'x-dead-letter-routing-key': queue.name,
        'x-delivery-limit': options.deliveryLimit,
      },
      bindings: queue.bindings,
    });
    queues.push({
      name: dlqName(queue.name),
      arguments: terminal,
      bindings: [{ exchange: EXCHANGES.deadLetter, pattern: queue.name }],
    });
  }
  for (const delay of options.retryDelaysMs) {
    queues.push({
      name: retryQueueName(delay),
      arguments: { ...quorum, ...safeDeadLettering, 'x-message-ttl': delay, 'x-dead-letter-exchange': '' },
      bindings: [{ exchange: EXCHANGES.retry, pattern: '', arguments: { 'x-match': 'all', [RETRY_DELAY_HEADER]: delay } }],
    });
  }
  queues.push({
    name: PARKING_LOT_QUEUE,
    arguments: terminal,
    bindings: [{ exchange: EXCHANGES.deadLetter, pattern: PARKING_LOT_QUEUE }],
  });
  return {
    exchanges: [
      { name: EXCHANGES.orders, type: 'topic' },
      { name: EXCHANGES.inventory, type: 'topic' },
      { name: EXCHANGES.deadLetter, type: 'topic' },
      { name: EXCHANGES.retry, type: 'headers' },
    ],
    queues,
  };
}

/** The broker already has a queue or exchange of that name with other settings; retrying will not help. */
export class TopologyMismatchError extends Error {
  override readonly name = 'TopologyMismatchError';
  readonly fatal = true;
}

/**
 * Declares every exchange, queue and binding; safe to run any number of times, from any process.
 * Uses its own channel, because a mismatch closes the channel it happens on; `keepChannel` leaves it open after
 * a success (a connection that declares once, as a function container's does, saves the close).
 */
export async function declareTopology(
  connection: ChannelModel,
  options: TopologyOptions,
  { keepChannel = false }: { keepChannel?: boolean } = {},
): Promise<Topology> {
  const wanted = topology({ brokerMajorVersion: brokerMajorVersion(connection), ...options });
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  let current = '';
  try {
    for (const exchange of wanted.exchanges) {
      current = `exchange '${exchange.name}'`;
      await channel.assertExchange(exchange.name, exchange.type, { durable: true });
    }
    for (const queue of wanted.queues) {
      current = `queue '${queue.name}'`;
      await channel.assertQueue(queue.name, { durable: true, arguments: queue.arguments });
      for (const binding of queue.bindings) {
        await channel.bindQueue(queue.name, binding.exchange, binding.pattern, binding.arguments);
      }
    }
  } catch (error) {
    await closeQuietly(channel);
    const message = error instanceof Error ? error.message : String(error);
    if (/PRECONDITION_FAILED|inequivalent arg/.test(message)) {
      throw new TopologyMismatchError(
        `RabbitMQ already has ${current} declared with other settings (${message}). ` +
          'Delete it (it must be empty or its messages moved first) or align DELIVERY_LIMIT / RETRY_DELAYS_MS with it.',
      );
    }
    throw error;
  }
  // keepChannel: the channel stays open, idle, and ends with its connection. Closing it costs amqplib two stack
  // captures (the second when the broker's close-ok arrives, which nothing here can suppress).
  if (!keepChannel) await closeQuietly(channel);
  return wanted;
}

/** The major version the broker announced when the connection opened (undefined if it did not say). */
function brokerMajorVersion(connection: ChannelModel): number | undefined {
  const version = (connection as unknown as { connection?: { serverProperties?: { version?: unknown } } }).connection?.serverProperties
    ?.version;
  const major = Number.parseInt(String(version ?? ''), 10);
  return Number.isFinite(major) ? major : undefined;
}

/**
 * Closes the declaring channel, without the stack trace amqplib captures on every close (`stackCapture`, kept
 * only as the text of a later "channel closed" error). Under NODE_OPTIONS=--enable-source-maps (serverless.yml)
 * reading that first stack makes Node parse the bundle's whole source map: in bench:http's cold burst a tenth of
 * each new container's CPU (~0.5 s per container with 15 starting at once on 2 cores), for a stack nobody reads.
 */
async function closeQuietly(channel: Channel): Promise<void> {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0; // amqplib captures it synchronously, inside close()
  let closing: Promise<void>;
  try {
    closing = channel.close();
  } catch {
    return;
  } finally {
    Error.stackTraceLimit = limit;
  }
  await closing.catch(() => undefined);
}
