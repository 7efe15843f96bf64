/** Helpers for tests that talk to the real broker. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ChannelModel, GetMessage } from 'amqplib';
import amqp from 'amqplib';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export interface TestAmqp {
  connection: ChannelModel;
  channel: Channel;
  close(): Promise<void>;
}

/**
 * A plain amqplib connection for a test, independent of the code under test. With TCP_NODELAY: amqplib leaves
 * Nagle's algorithm on, so of a burst of publishes only the first left at once and the rest waited for the
 * broker's delayed ACK (40-50 ms measured here), longer than some tests' batching windows.
 */
export async function openTestAmqp(): Promise<TestAmqp> {
  const connection = await amqp.connect(AMQP_URL, { noDelay: true });
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  channel.on('error', () => undefined);
  return {
    connection,
    channel,
    close: async () => {
      await connection.close().catch(() => undefined);
    },
  };
}

/** Polls `queue` with basic.get until a message arrives or `timeoutMs` passes. */
export async function getMessage(channel: Channel, queue: string, timeoutMs = 5_000): Promise<GetMessage> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = await channel.get(queue, { noAck: false });
    if (message) return message;
    if (Date.now() > deadline) throw new Error(`No message arrived in '${queue}' within ${timeoutMs} ms`);
    await sleep(25);
  }
}

/** Every message in `queue`, taken out (acked), in queue order. */
export async function drainQueue(channel: Channel, queue: string): Promise<GetMessage[]> {
  const taken: GetMessage[] = [];
  for (;;) {
    const message = await channel.get(queue, { noAck: true });
    if (!message) return taken;
    taken.push(message);
  }
}

/** Purges each queue that exists; tests start from empty contract queues. */
export async function purgeQueues(connection: ChannelModel, queues: readonly string[]): Promise<void> {
  for (const queue of queues) {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    await channel.purgeQueue(queue).catch(() => undefined);
    await channel.close().catch(() => undefined);
  }
}

/** A queue's counts, via a passive declare on a channel of its own. */
async function checkQueue(connection: ChannelModel, queue: string): Promise<{ messageCount: number; consumerCount: number }> {
  const channel = await connection.createChannel();
  try {
    return await channel.checkQueue(queue);
  } finally {
    await channel.close().catch(() => undefined);
  }
}

/** Message count of a queue, via a passive declare. */
export async function queueDepth(connection: ChannelModel, queue: string): Promise<number> {
  return (await checkQueue(connection, queue)).messageCount;
}

/** How many consumers a queue has now, via a passive declare. */
export async function queueConsumers(connection: ChannelModel, queue: string): Promise<number> {
  return (await checkQueue(connection, queue)).consumerCount;
}
