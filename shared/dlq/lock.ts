/**
 * One reader per DLQ at a time, across processes: two readers would each hold part of the queue and give it
 * back interleaved, which breaks the order guarantee. The lock is an exclusive, non-durable queue named
 * after the DLQ: the broker lets only one connection hold it (another gets RESOURCE_LOCKED) and deletes it
 * when that connection goes away, so a crashed reprocessor cannot leave a DLQ locked. Within one process
 * (one connection) a set of held names does the same job. A redrive job claims itself the same way
 * (withQueueLock), so two deliveries of its message never run it twice at once.
 */
import type { Broker } from '../messaging';
import { DlqBusyError } from './errors';

export const lockQueueName = (dlq: string): string => `dlq-reprocessor.lock.${dlq}`;

const heldHere = new Set<string>();

/**
 * Runs `work` while holding the exclusive queue `name` (deleted after, or by the broker when the connection
 * goes); throws `busy()` when another connection, or this process, holds it.
 */
export async function withQueueLock<T>(broker: Broker, name: string, busy: () => Error, work: () => Promise<T>): Promise<T> {
  if (heldHere.has(name)) throw busy();
  heldHere.add(name);
  try {
    const channel = await broker.createChannel();
    channel.on('error', () => undefined);
    try {
      await channel.assertQueue(name, { exclusive: true, durable: false, arguments: { 'x-queue-type': 'classic' } });
    } catch (error) {
      await channel.close().catch(() => undefined);
      if (/RESOURCE_LOCKED|405/.test((error as Error).message)) throw busy();
      throw error;
    }
    try {
      return await work();
    } finally {
      // If the connection is gone the broker has dropped the lock queue already.
      await channel.deleteQueue(name).catch(() => undefined);
      await channel.close().catch(() => undefined);
    }
  } finally {
    heldHere.delete(name);
  }
}

/** Runs `work` while holding the DLQ's lock; DlqBusyError when someone else holds it. */
export function withDlqLock<T>(broker: Broker, dlq: string, work: () => Promise<T>): Promise<T> {
  return withQueueLock(broker, lockQueueName(dlq), () => new DlqBusyError(dlq), work);
}
