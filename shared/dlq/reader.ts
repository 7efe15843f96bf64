/**
 * Reading a DLQ without losing or reordering it.
 *
 * How a quorum queue (RabbitMQ 3.10) gives messages back, verified by test/integration/dlq.test.ts and
 * by experiment:
 * - A consumer whose channel closes hands back every message it had not acked, in their original order, to
 *   the queue's "returns" list, which is delivered before the never-delivered messages. Handed-back messages
 *   come out flagged `redelivered`; never-delivered ones do not.
 * - basic.get with requeue, and nack/reject with requeue, do NOT keep the order (the messages go behind the
 *   rest of the queue, or in hash order). So nothing here ever nacks.
 * - The hand-back lands a few milliseconds after the channel closed, not before `close()` resolves.
 *
 * So a read keeps the order if it has taken everything in the returns list by the time it closes (then the
 * returns list afterwards is exactly what it held, in order, followed by the untouched rest). The reader
 * therefore uses a consumer with manual acks and a prefetch of the whole queue (up to a scan limit), reads
 * on, holding, until it has seen a never-delivered message or the whole queue before it closes, and waits for
 * the broker to have taken the messages back before it reports done, so the next reader finds them there.
 * A message is either acked (after it was safely published elsewhere) or held until `close()`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConsumeMessage } from 'amqplib';
import { within } from '../lib/within';
import type { Broker } from '../messaging';
import { NotADlqError } from './errors';

/** Ready messages and consumers of a queue. */
export interface QueueStats {
  depth: number;
  consumers: number;
}

export interface DlqReaderOptions {
  /** The queue as it was just before opening (from `queueStats`). */
  baseline: QueueStats;
  /** Most messages checked out at once (default: all of them); every held message counts against it. */
  scanLimit?: number;
  /** How long to wait for the next message before deciding there is none (default 2 s). */
  idleTimeoutMs?: number;
  /** How long `close()` waits for the broker to have taken the held messages back (default 5 s). */
  handBackTimeoutMs?: number;
}

const defaults = { scanLimit: Number.POSITIVE_INFINITY, idleTimeoutMs: 2_000, handBackTimeoutMs: 5_000 };

const notFound = (error: unknown) => /NOT_FOUND|404/.test((error as Error).message ?? '');

/** Depth (ready messages) and consumers of a queue; NotADlqError when it does not exist. */
export async function queueStats(broker: Broker, queue: string): Promise<QueueStats> {
  const channel = await broker.createChannel();
  channel.on('error', () => undefined);
  try {
    const ok = await channel.checkQueue(queue);
    return { depth: ok.messageCount, consumers: ok.consumerCount };
  } catch (error) {
    if (notFound(error)) throw new NotADlqError(queue, 'no such queue on the broker');
    throw error;
  } finally {
    await channel.close().catch(() => undefined);
  }
}

export class DlqReader {
  private readonly buffer: ConsumeMessage[] = [];
  private waiter: (() => void) | undefined;
  private closedBy: Error | undefined;
  private closed = false;
  private received = 0;
  private acked = 0;
  private sawFresh = false;

  private constructor(
    private readonly broker: Broker,
    private readonly channel: Channel,
    private readonly queue: string,
    /** Messages the broker may check out to us: the whole queue, or the scan limit. */
    readonly prefetch: number,
    private readonly options: Required<DlqReaderOptions>,
  ) {}

  /** Starts consuming `queue`. */
  static async open(broker: Broker, queue: string, options: DlqReaderOptions): Promise<DlqReader> {
    const settings = { ...defaults, ...options };
    const prefetch = Math.max(1, Math.min(settings.baseline.depth, settings.scanLimit));
    const channel = await broker.createChannel();
    const reader = new DlqReader(broker, channel, queue, prefetch, settings);
    channel.on('error', (error: Error) => {
      reader.closedBy ??= error;
    });
    channel.once('close', () => {
      reader.closed = true;
      reader.closedBy ??= new Error('channel closed');
      reader.wake();
    });
    try {
      await channel.prefetch(prefetch);
      await channel.consume(queue, (message) => reader.deliver(message), { noAck: false });
    } catch (error) {
      await channel.close().catch(() => undefined);
      if (notFound(error)) throw new NotADlqError(queue, 'no such queue on the broker');
      throw error;
    }
    return reader;
  }

  /** Why the reader stopped early (channel or connection lost), if it did. */
  get interruption(): Error | undefined {
    return this.closed ? this.closedBy : undefined;
  }

  /** The next message in queue order, or undefined when none came within the idle timeout or the channel is gone. */
  async next(): Promise<ConsumeMessage | undefined> {
    if (this.buffer.length === 0) await this.waitForDelivery();
    // After the channel is gone, buffered messages are back in the queue already: do not hand them out.
    if (this.closed) return undefined;
    return this.buffer.shift();
  }

  /** Acknowledges a message: it leaves the queue. Throws if the channel is gone (then the broker keeps it). */
  ack(message: ConsumeMessage): void {
    if (this.closed) throw this.closedBy ?? new Error('channel closed');
    this.channel.ack(message);
    this.acked++;
  }

  /**
   * Ends reading: every message not acked goes back to the head of the queue, in its original order.
   * Resolves once the broker has them back (or after handBackTimeoutMs).
   */
  async close(): Promise<void> {
    if (!this.closed) {
      await this.readPastReturns();
      this.closed = true;
      this.buffer.length = 0;
      this.wake();
      await this.channel.close().catch(() => undefined);
    }
    await this.waitForHandBack();
  }

  private deliver(message: ConsumeMessage | null): void {
    if (message === null) {
      // The broker cancelled the consumer (queue deleted): like a lost channel.
      this.closed = true;
      this.closedBy ??= new Error(`consumer of '${this.queue}' cancelled by the broker`);
    } else {
      this.received++;
      if (!message.fields.redelivered) this.sawFresh = true;
      this.buffer.push(message);
    }
    this.wake();
  }

  /** Holds on until everything handed back earlier (the returns list) is checked out to us. */
  private async readPastReturns(): Promise<void> {
    // Everything handed back earlier was in the queue at the start, so once that many arrived we are past it.
    const reachable = Math.min(this.prefetch + this.acked, this.options.baseline.depth);
    while (!this.sawFresh && !this.closed && this.received < reachable) {
      const before = this.received;
      await this.waitForDelivery();
      if (this.received === before) return; // idle: nothing more to come
    }
  }

  private async waitForDelivery(): Promise<void> {
    if (this.closed) return;
    const seen = this.received;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve();
      }, this.options.idleTimeoutMs);
      this.waiter = () => {
        if (this.received === seen && !this.closed) return;
        clearTimeout(timer);
        this.waiter = undefined;
        resolve();
      };
    });
  }

  /** The hand-back is applied after the channel closed: wait for our consumer to be gone and the messages back. */
  private async waitForHandBack(): Promise<void> {
    const { baseline, handBackTimeoutMs } = this.options;
    const expected = baseline.depth - this.acked;
    const deadline = Date.now() + handBackTimeoutMs;
    while (Date.now() < deadline) {
      // Best effort: after a cut the broker may be away for longer than we want to wait.
      const stats = await within(queueStats(this.broker, this.queue), deadline - Date.now()).catch(() => undefined);
      if (stats && stats.consumers <= baseline.consumers && stats.depth >= expected) return;
      await sleep(10);
    }
  }

  private wake(): void {
    this.waiter?.();
  }
}
