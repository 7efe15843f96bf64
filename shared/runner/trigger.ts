/**
 * One queue trigger: consumes a queue with manual acks, batches messages like Lambda's Amazon MQ event source
 * mapping, invokes the function with an `aws:rmq` event, and acknowledges here, and only here:
 * success acks the whole batch, a throw or a timeout nacks the whole batch with requeue.
 *
 * A trigger heals itself: when its channel or the connection goes away it drops what it cannot ack (the
 * broker redelivers those messages), waits, and consumes again on a fresh channel.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Broker } from '../messaging/connection';
import type { Logger } from '../logging';
import { buildRabbitMQEvent } from '../rmq-event';
import { Batcher } from './batcher';
import type { TriggerDefinition } from './definitions';
import type { Invoker } from './invokers';

export interface TriggerOptions {
  /** Invocations in flight at once for this trigger; AWS runs exactly one (the default). */
  concurrency?: number;
  /** The `eventSourceArn` of the events. */
  eventSourceArn: string;
  /** Waits before consuming again after the channel was lost: first, and cap (defaults 100 ms, 5 s). */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
}

/** One consumer on one channel; when the channel dies its session ends and a new one starts. */
interface Session {
  channel: Channel;
  consumerTag: string | undefined;
  open: boolean;
  batcher: Batcher<ConsumeMessage>;
  ready: ConsumeMessage[][];
  inFlight: Set<Promise<void>>;
}

export type TriggerState = 'idle' | 'consuming' | 'recovering' | 'stopping' | 'stopped';

export class QueueTrigger {
  private session: Session | undefined;
  private state: TriggerState = 'idle';
  private restartDelay: number;
  private readonly concurrency: number;
  private readonly log: Logger;
  private readonly inFlightAll = new Set<Promise<void>>();

  constructor(
    readonly definition: TriggerDefinition,
    private readonly broker: Broker,
    private readonly invoker: Invoker,
    logger: Logger,
    private readonly options: TriggerOptions,
  ) {
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
    this.restartDelay = options.restartDelayMs ?? 100;
    this.log = logger.child({ function: definition.functionKey, queue: definition.queue });
  }

  get status(): TriggerState {
    return this.state;
  }

  /** Starts consuming; keeps retrying in the background if the broker or queue is not there yet. */
  async start(): Promise<void> {
    if (this.state !== 'idle') return;
    this.state = 'recovering';
    await this.consumeUntilStopped();
  }

  /**
   * Stops taking messages, gives back the ones not yet handed to the function (nack with requeue), waits for
   * the invocations in flight to finish and settle their batches, then closes the channel.
   */
  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    this.state = 'stopping';
    const session = this.session;
    if (session?.open) {
      if (session.consumerTag) await session.channel.cancel(session.consumerTag).catch(() => undefined);
      const unsent = [...session.ready.flat(), ...session.batcher.drain()];
      session.ready = [];
      this.settle(session, unsent, 'nack');
      if (unsent.length) this.log.info({ messages: unsent.length }, 'returned unstarted messages to the queue');
    }
    await Promise.allSettled([...this.inFlightAll]);
    if (session?.open) {
      session.open = false;
      await session.channel.close().catch(() => undefined);
    }
    this.state = 'stopped';
  }

  private async consumeUntilStopped(): Promise<void> {
    const maxDelay = this.options.maxRestartDelayMs ?? 5_000;
    while (this.state === 'recovering') {
      try {
        await this.openSession();
        if (this.state !== 'recovering') {
          // stop() came while the channel was opening: it saw no session, so close this one here.
          const session = this.session!;
          session.open = false;
          await session.channel.close().catch(() => undefined);
          return;
        }
        this.state = 'consuming';
        this.restartDelay = this.options.restartDelayMs ?? 100;
        return;
      } catch (error) {
        if (this.state !== 'recovering') return;
        this.log.warn({ err: error, retryInMs: this.restartDelay }, 'could not start consuming; will retry');
        await sleep(this.restartDelay);
        this.restartDelay = Math.min(maxDelay, this.restartDelay * 2);
      }
    }
  }

  private async openSession(): Promise<void> {
    const { batchSize, maximumBatchingWindow, queue } = this.definition;
    const channel = await this.broker.createChannel();
    const session: Session = {
      channel,
      consumerTag: undefined,
      open: true,
      batcher: new Batcher<ConsumeMessage>({
        batchSize,
        windowMs: maximumBatchingWindow * 1000,
        onBatch: (batch) => {
          session.ready.push(batch);
          this.pump(session);
        },
      }),
      ready: [],
      inFlight: new Set(),
    };
    channel.on('error', (error: Error) => this.log.warn({ err: error }, 'channel error'));
    channel.once('close', () => this.onSessionClosed(session));
    // Room for the batches in flight plus one filling behind them, so the next batch is ready when a slot frees.
    await channel.prefetch(Math.min(65_535, batchSize * (this.concurrency + 1)));
    const { consumerTag } = await channel.consume(
      queue,
      (message) => {
        if (message === null) {
          this.log.warn('consumer cancelled by the broker (queue deleted?); consuming again');
          void session.channel.close().catch(() => undefined);
          return;
        }
        if (!session.open || this.state === 'stopping') return; // closing the channel gives it back
        session.batcher.add(message);
      },
      { noAck: false },
    );
    session.consumerTag = consumerTag;
    this.session = session;
    this.log.info({ batchSize, maximumBatchingWindow, concurrency: this.concurrency }, 'consuming');
  }

  private onSessionClosed(session: Session): void {
    if (!session.open) return;
    session.open = false;
    const dropped = session.batcher.drain().length + session.ready.flat().length;
    session.ready = [];
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.log.warn(
      { unackedDropped: dropped, inFlight: session.inFlight.size },
      'channel closed; unacknowledged messages return to the queue; reconnecting',
    );
    this.state = 'recovering';
    void this.consumeUntilStopped();
  }

  /** Starts invocations while there are ready batches and free slots. */
  private pump(session: Session): void {
    while (session.open && this.state !== 'stopping' && session.inFlight.size < this.concurrency && session.ready.length) {
      const batch = session.ready.shift()!;
      const run = this.run(session, batch).finally(() => {
        session.inFlight.delete(run);
        this.inFlightAll.delete(run);
        this.pump(session);
      });
      session.inFlight.add(run);
      this.inFlightAll.add(run);
    }
  }

  private async run(session: Session, batch: ConsumeMessage[]): Promise<void> {
    const { queue, virtualHost } = this.definition;
    const requestId = randomUUID();
    const started = performance.now();
    const event = buildRabbitMQEvent({
      eventSourceArn: this.options.eventSourceArn,
      vhost: virtualHost,
      messages: batch.map((message) => ({ queue, message })),
    });
    let outcome: 'ack' | 'nack' = 'ack';
    try {
      await this.invoker.invoke(this.definition, event, { requestId });
    } catch (error) {
      outcome = 'nack';
      this.log.error({ err: error, requestId, batchSize: batch.length }, 'invocation failed; the whole batch will be redelivered');
    }
    const durationMs = Math.round((performance.now() - started) * 10) / 10;
    const settled = this.settle(session, batch, outcome, this.concurrency === 1);
    this.log[outcome === 'ack' ? 'debug' : 'info'](
      { requestId, batchSize: batch.length, outcome, durationMs, settled },
      outcome === 'ack' ? 'batch processed' : 'batch requeued',
    );
  }

  /**
   * Acks or nacks (with requeue) a batch on the channel it came from. Returns false when that channel is gone:
   * the broker has already put those messages back, and a new channel must not touch their old tags.
   * `inDeliveryOrder`: every earlier delivery on this channel is already settled (one invocation at a time
   * runs batches in delivery order), so one `multiple` frame settles the whole batch.
   */
  private settle(session: Session, batch: ConsumeMessage[], outcome: 'ack' | 'nack', inDeliveryOrder = false): boolean {
    if (batch.length === 0) return true;
    if (!session.open) return false;
    try {
      if (inDeliveryOrder) {
        const last = batch[batch.length - 1]!;
        if (outcome === 'ack') session.channel.ack(last, true);
        else session.channel.nack(last, true, true);
      } else {
        for (const message of batch) {
          if (outcome === 'ack') session.channel.ack(message);
          else session.channel.nack(message, false, true);
        }
      }
      return true;
    } catch (error) {
      this.log.warn({ err: error }, 'could not settle batch; the broker will redeliver it');
      return false;
    }
  }
}
