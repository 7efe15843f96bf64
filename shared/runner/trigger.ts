/**
 * One queue trigger: consumes a queue with manual acks, batches messages like Lambda's Amazon MQ event source
 * mapping, invokes the function with an `aws:rmq` event, and acknowledges here, and only here:
 * success acks the whole batch, a throw or a timeout nacks the whole batch with requeue.
 *
 * No message can take down more than itself. Each delivery is turned into its `aws:rmq` record as it
 * arrives; one that has no such form (a timestamp no date can hold, a header with no JSON form) or that could
 * never fit an invocation (6 MB) is dead-lettered on its own, with the reason in `x-error-*` headers, and its
 * batch neighbours are invoked as usual. Batches are cut before they would outgrow the invocation payload.
 * Building, invoking, dead-lettering and settling all run inside error handling: nothing a message carries
 * can throw out of the trigger.
 *
 * A trigger heals itself: when its channel or the connection goes away it drops what it cannot ack (the
 * broker redelivers those messages), waits, and consumes again on a fresh channel.
 *
 * A batch whose invocation failed goes back to the queue after a wait that doubles with each consecutive failure
 * (100 ms to 5 s by default, reset by a success), so a function that keeps failing does not spend the queue's
 * delivery limit in a hot loop. The wait loses and reorders nothing: the batch stays unacknowledged meanwhile, and
 * with one invocation at a time no other batch is invoked during it. stop() cuts the wait short.
 *
 * It reports itself as AWS reports an event source mapping (see mapping.ts): State, StateTransitionReason,
 * LastProcessingResult, counts. A handler that does not load (HandlerLoadError) three invocations in a row, or a
 * queue RabbitMQ will not let the user read, stops the trigger for good (Failed, FUNCTION_CONFIG_NOT_VALID /
 * EVENT_SOURCE_AUTHZ_ERROR): it gives its unstarted messages back and consumes no more, and the other triggers
 * keep running. (Three, not one: a bundle caught mid-rebuild by serverless-offline's watch gets another chance.)
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConsumeMessage } from 'amqplib';
import {
  attemptOf,
  base64Length,
  envelopeBytes,
  type FailureClass,
  failureHeaders,
  MAX_INVOCATION_PAYLOAD_BYTES,
  type RabbitMQEvent,
  type RabbitMQMessage,
  recordBytes,
  toRabbitMQMessage,
} from 'middy-rabbitmq';
import type { Broker } from 'middy-rabbitmq/amqp';
import { type Publisher, republishProperties, UnroutableError } from 'middy-rabbitmq/amqp';
import type { Logger } from 'pino';
import { Batcher } from './batcher.js';
import type { TriggerDefinition } from './definitions.js';
import { compileFilterPatterns, type RecordFilter } from './filters.js';
import { HandlerLoadError, InvocationTimeoutError, type Invoker } from './invokers.js';
import {
  type EventSourceMappingStatus,
  isAccessRefused,
  type MappingState,
  mappingConfiguration,
  NO_RECORDS_PROCESSED,
  type StateTransitionReason,
  type TriggerCounts,
} from './mapping.js';
import { FunctionMetrics } from './metrics.js';

export interface TriggerOptions {
  /** Invocations in flight at once for this trigger; AWS runs exactly one (the default). */
  concurrency?: number;
  /** The `eventSourceArn` of the events. */
  eventSourceArn: string;
  /** Waits before consuming again after the channel was lost: first, and cap (defaults 100 ms, 5 s). */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
  /**
   * Where a message the trigger cannot hand to the function goes: published (confirmed) to this exchange
   * with the queue's name as routing key and `x-error-*` headers saying why. Without it, or when that
   * publish is refused as unroutable, the message is rejected without requeue: the queue's own
   * dead-letter exchange takes it if it has one, or the broker drops it, as AWS drops such records.
   */
  deadLetterExchange?: string;
  /** Confirming publisher on the same broker, for those dead letters (required with deadLetterExchange). */
  publisher?: Publisher;
  /** Largest invocation payload (default Lambda's 6 MB); batches are cut so that no event is larger. */
  maxPayloadBytes?: number;
  /**
   * Wait before a failed batch goes back to the queue: first, and cap (defaults 100 ms, 5 s). It doubles with
   * each consecutive failed invocation and starts again after a success.
   */
  requeueDelayMs?: number;
  maxRequeueDelayMs?: number;
  /** Invocations in a row whose handler did not load before the trigger stops (FUNCTION_CONFIG_NOT_VALID); default 3. */
  handlerLoadAttempts?: number;
  /** Told of every change of State ('state') and of LastProcessingResult ('result'), e.g. to keep a status file. */
  onChange?: (trigger: QueueTrigger, what: 'state' | 'result') => void;
}

/** A delivery as the trigger holds it: its `aws:rmq` record, or why it cannot have one. */
interface Delivery {
  message: ConsumeMessage;
  record?: RabbitMQMessage;
  /** What the record adds to the event, separator included (0 without a record). */
  bytes: number;
  failure?: { errorClass: FailureClass; name: string; message: string };
}

/** What became of one delivery of a batch; each is settled on its own terms. */
type Settlement = 'ack' | 'requeue' | 'reject';

/** One consumer on one channel; when the channel dies its session ends and a new one starts. */
interface Session {
  channel: Channel;
  consumerTag: string | undefined;
  open: boolean;
  batcher: Batcher<Delivery>;
  ready: Delivery[][];
  /** Invocations of this session in flight. */
  inFlight: number;
}

/**
 * What the consumer is doing. `failed`: stopped for good by an unrecoverable error (see mapping.ts); only a
 * restart of the runner consumes again.
 */
export type TriggerState = 'idle' | 'consuming' | 'recovering' | 'stopping' | 'stopped' | 'failed';

export class QueueTrigger {
  private session: Session | undefined;
  private state: TriggerState = 'idle';
  /** Whether a consumer was ever in place: until then a recovering trigger is Enabling, after it Enabled. */
  private consumedOnce = false;
  private mappingState: MappingState = 'Creating';
  private reason: StateTransitionReason = 'USER_INITIATED';
  private reasonDetail: string | undefined;
  private lastModified = new Date();
  private lastResult = NO_RECORDS_PROCESSED;
  /** When LastProcessingResult was last set (epoch ms; set after every batch, so no Date is made for it). */
  private lastResultAt: number | undefined;
  /** Consecutive failed invocations, and the wait their batch gets before it is requeued. */
  private failedInARow = 0;
  private requeueDelay = 0;
  /** Consecutive invocations whose handler did not load. */
  private loadFailures = 0;
  /** Cuts the requeue waits short on stop() or failure. */
  private readonly waking = new AbortController();
  private failing: Promise<void> | undefined;
  private restartDelay: number;
  private readonly concurrency: number;
  private readonly log: Logger;
  private readonly inFlightAll = new Set<Promise<void>>();
  private readonly maxPayloadBytes: number;
  private readonly envelopeBytes: number;
  /** The event's `rmqMessagesByQueue` key, "<queue>::<vhost>". */
  private readonly queueKey: string;
  private readonly filter: RecordFilter;
  readonly counts: TriggerCounts = {
    received: 0,
    invocations: 0,
    failedInvocations: 0,
    acked: 0,
    requeued: 0,
    deadLettered: 0,
    filtered: 0,
    rejected: 0,
  };
  /** What the function did with the records (its batch reports), its invocations' durations and errors, message ages. */
  readonly metrics = new FunctionMetrics();

  constructor(
    readonly definition: TriggerDefinition,
    private readonly broker: Broker,
    private readonly invoker: Invoker,
    logger: Logger,
    private readonly options: TriggerOptions,
  ) {
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
    this.restartDelay = options.restartDelayMs ?? 100;
    this.filter = compileFilterPatterns(definition.filterPatterns ?? []);
    this.log = logger.child({ function: definition.functionKey, queue: definition.queue });
    this.maxPayloadBytes = options.maxPayloadBytes ?? MAX_INVOCATION_PAYLOAD_BYTES;
    this.queueKey = `${definition.queue}::${definition.virtualHost}`;
    this.envelopeBytes = envelopeBytes(options.eventSourceArn, this.queueKey);
    if (options.deadLetterExchange && !options.publisher) throw new TypeError('QueueTrigger: deadLetterExchange needs a publisher');
  }

  /** What the consumer is doing (see `mapping` for the state as AWS names it). */
  get status(): TriggerState {
    return this.state;
  }

  /** The state as AWS reports a mapping's. */
  get mappingStatus(): MappingState {
    return this.mappingState;
  }

  /** The mapping as GetEventSourceMapping would describe it, plus the local figures under `Local`. */
  describe(): EventSourceMappingStatus {
    return {
      ...mappingConfiguration(this.definition, this.options.eventSourceArn),
      State: this.mappingState,
      StateTransitionReason: this.reason,
      LastModified: this.lastModified.toISOString(),
      LastProcessingResult: this.lastResult,
      Local: {
        functionKey: this.definition.functionKey,
        functionName: this.definition.functionName,
        consumer: this.state,
        ...(this.reasonDetail ? { stateTransitionDetail: this.reasonDetail } : {}),
        ...(this.lastResultAt !== undefined ? { lastProcessingResultAt: new Date(this.lastResultAt).toISOString() } : {}),
        requeueDelayMs: this.requeueDelay,
        concurrency: this.concurrency,
        counts: { ...this.counts },
      },
    };
  }

  /** Starts consuming; keeps retrying in the background if the broker or queue is not there yet. */
  async start(): Promise<void> {
    if (this.state !== 'idle') return;
    this.enter('recovering');
    await this.consumeUntilStopped();
  }

  /**
   * Records the result of the last processing attempt: `OK`, or a problem (`PROBLEM: ` is added). The runner
   * reports its connection problems here too.
   */
  reportResult(result: 'OK' | { problem: string }): void {
    if (this.state === 'failed') return; // it keeps the problem it failed with
    this.lastResult = result === 'OK' ? 'OK' : `PROBLEM: ${result.problem}`;
    this.lastResultAt = Date.now();
    this.options.onChange?.(this, 'result');
  }

  /**
   * Stops the trigger for good (State Failed, StateTransitionReason `reason`), as AWS stops a consumer after an
   * unrecoverable error: takes no more messages, gives back the ones not yet handed to the function, lets the
   * invocations in flight settle their batches, then closes the channel. Other triggers are not affected.
   */
  fail(reason: Exclude<StateTransitionReason, 'USER_INITIATED'>, detail: string): Promise<void> {
    if (this.state === 'failed' || this.state === 'stopping' || this.state === 'stopped') return this.failing ?? Promise.resolve();
    this.reportResult({ problem: detail });
    this.enter('failed', reason, detail);
    this.waking.abort();
    const session = this.session;
    this.failing = (async () => {
      if (session?.open) await this.returnUnstarted(session);
      await Promise.allSettled([...this.inFlightAll]);
      if (session?.open) {
        session.open = false;
        await session.channel.close().catch(() => undefined);
      }
    })();
    return this.failing;
  }

  /**
   * Stops taking messages, gives back the ones not yet handed to the function (nack with requeue), waits for
   * the invocations in flight to finish and settle their batches, then closes the channel.
   */
  async stop(): Promise<void> {
    if (this.state === 'failed') return this.failing;
    if (this.state === 'stopped' || this.state === 'stopping') return;
    this.enter('stopping');
    this.waking.abort();
    const session = this.session;
    if (session?.open) await this.returnUnstarted(session);
    await Promise.allSettled([...this.inFlightAll]);
    if (session?.open) {
      session.open = false;
      await session.channel.close().catch(() => undefined);
    }
    this.enter('stopped');
  }

  /** Cancels the consumer and gives back (nack with requeue) what was not handed to the function yet. */
  private async returnUnstarted(session: Session): Promise<void> {
    if (session.consumerTag) await session.channel.cancel(session.consumerTag).catch(() => undefined);
    const unsent = [...session.ready.flat(), ...session.batcher.drain()];
    session.ready = [];
    this.settle(session, unsent, 'requeue');
    if (unsent.length) this.log.info({ messages: unsent.length }, 'returned unstarted messages to the queue');
  }

  /**
   * Moves the consumer to `next` and, when that changes the state as AWS names it, records when and why and logs
   * one line.
   */
  private enter(next: TriggerState, reason: StateTransitionReason = 'USER_INITIATED', detail?: string): void {
    this.state = next;
    if (next === 'consuming') this.consumedOnce = true;
    const mapped: MappingState = {
      idle: 'Creating',
      recovering: this.consumedOnce ? 'Enabled' : 'Enabling',
      consuming: 'Enabled',
      stopping: 'Disabling',
      stopped: 'Disabled',
      failed: 'Failed',
    }[next] as MappingState;
    if (mapped === this.mappingState && reason === this.reason) return;
    const previous = this.mappingState;
    this.mappingState = mapped;
    this.reason = reason;
    this.reasonDetail = detail;
    this.lastModified = new Date();
    this.log[mapped === 'Failed' ? 'error' : 'info'](
      { State: mapped, previous, StateTransitionReason: reason, ...(detail ? { detail } : {}) },
      'trigger state changed',
    );
    this.options.onChange?.(this, 'state');
  }

  private async consumeUntilStopped(): Promise<void> {
    const maxDelay = this.options.maxRestartDelayMs ?? 5_000;
    while (this.state === 'recovering') {
      try {
        await this.openSession();
        if (this.state !== 'recovering') {
          // stop() or fail() came while the channel was opening: it saw no session, so close this one here.
          const session = this.session!;
          session.open = false;
          await session.channel.close().catch(() => undefined);
          return;
        }
        this.enter('consuming');
        this.restartDelay = this.options.restartDelayMs ?? 100;
        return;
      } catch (error) {
        if (this.state !== 'recovering') return;
        if (isAccessRefused(error)) {
          // RabbitMQ will not let this user read the queue: retrying will not change its mind (AWS stops the consumer).
          void this.fail(
            'EVENT_SOURCE_AUTHZ_ERROR',
            `RabbitMQ refused to let the user consume from queue '${this.definition.queue}': ${(error as Error).message}`,
          );
          return;
        }
        this.reportResult({ problem: `Could not consume from queue '${this.definition.queue}': ${(error as Error).message}` });
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
      batcher: new Batcher<Delivery>({
        batchSize,
        windowMs: maximumBatchingWindow * 1000,
        // One comma per record beyond the first: the first record's comma is paid for here.
        maxBytes: this.maxPayloadBytes - this.envelopeBytes + 1,
        sizeOf: (delivery) => delivery.bytes,
        onBatch: (batch) => {
          session.ready.push(batch);
          this.pump(session);
        },
      }),
      ready: [],
      inFlight: 0,
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
        if (!session.open || this.state === 'stopping' || this.state === 'failed') return; // closing the channel gives it back
        this.counts.received++;
        this.metrics.delivered(message.properties.timestamp);
        if (!this.passes(message)) return this.discard(session, message);
        session.batcher.add(this.prepare(message));
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
    // A channel that closed before its consumer was in place (a refused basic.consume) is openSession's to
    // report: the loop that opened it retries or gives up; starting another loop here would run two.
    if (this.session !== session) return;
    if (this.state === 'stopping' || this.state === 'stopped' || this.state === 'failed') return;
    this.log.warn(
      { unackedDropped: dropped, inFlight: session.inFlight },
      'channel closed; unacknowledged messages return to the queue; reconnecting',
    );
    this.reportResult({ problem: 'Connection error: the channel to RabbitMQ closed; consuming again' });
    this.enter('recovering');
    void this.consumeUntilStopped();
  }

  /** Starts invocations while there are ready batches and free slots. */
  private pump(session: Session): void {
    while (
      session.open &&
      this.state !== 'stopping' &&
      this.state !== 'failed' &&
      session.inFlight < this.concurrency &&
      session.ready.length
    ) {
      const batch = session.ready.shift()!;
      // One reaction for both outcomes (not catch + finally: a batch at a time, each finally costs promises of its own).
      const run: Promise<void> = this.run(session, batch).then(
        () => this.ended(session, run),
        (error: unknown) => {
          try {
            // run() handles every failure it knows of; this is the last line, so that nothing escapes as an
            // unhandled rejection. Whatever was not settled goes back to the queue.
            this.log.error({ err: error, batchSize: batch.length }, 'batch failed unexpectedly; returning it to the queue');
            this.settle(session, batch, 'requeue');
          } finally {
            this.ended(session, run);
          }
        },
      );
      session.inFlight++;
      this.inFlightAll.add(run);
    }
  }

  /** An invocation's batch is settled: its slot is free for the next ready batch. */
  private ended(session: Session, run: Promise<void>): void {
    session.inFlight--;
    this.inFlightAll.delete(run);
    this.pump(session);
  }

  /** Whether the message matches the filter criteria (any pattern; all pass without criteria). */
  private passes(message: ConsumeMessage): boolean {
    try {
      return this.filter.matches(message.content);
    } catch (error) {
      this.log.warn({ err: error }, 'filter criteria could not be evaluated; the message goes to the function');
      return true;
    }
  }

  /**
   * Acks a message the filter criteria discard, as Lambda does: never invoked, never batched (so it takes no
   * room in a batch). Acked alone; a later `multiple` ack does not count it again.
   */
  private discard(session: Session, message: ConsumeMessage): void {
    try {
      session.channel.ack(message);
      this.counts.filtered++;
      this.counts.acked++;
      this.log.debug({ messageId: message.properties.messageId as unknown }, 'message discarded by the filter criteria');
    } catch (error) {
      this.log.warn({ err: error }, 'could not ack a filtered message; the broker will redeliver it');
    }
  }

  /**
   * The delivery's record, or why it cannot have one: no `aws:rmq` form, or too large for any invocation.
   * A body whose base64 alone could never fit is judged by its length, without encoding it.
   * (Runs for every delivery: no closures made here.)
   */
  private prepare(message: ConsumeMessage): Delivery {
    const room = this.maxPayloadBytes - this.envelopeBytes;
    try {
      if (base64Length(message.content.length) > room) return this.tooLarge(message, base64Length(message.content.length));
      const record = toRabbitMQMessage(message);
      const bytes = recordBytes(record);
      return bytes > room ? this.tooLarge(message, bytes) : { message, record, bytes: bytes + 1 };
    } catch (error) {
      const cause = error instanceof Error ? error : new Error(String(error));
      return {
        message,
        bytes: 0,
        failure: {
          errorClass: 'unrepresentable',
          name: cause.name,
          message: `Cannot make an aws:rmq record of this message: ${cause.message}`,
        },
      };
    }
  }

  /** A delivery whose record (`bytes` long) could not fit an invocation even alone. */
  private tooLarge(message: ConsumeMessage, bytes: number): Delivery {
    return {
      message,
      bytes: 0,
      failure: {
        errorClass: 'payload-too-large',
        name: 'PayloadTooLargeError',
        message:
          `The message's aws:rmq record takes ${bytes} bytes, more than the ${this.maxPayloadBytes}-byte invocation payload ` +
          'can hold even alone; AWS Lambda would drop it without invoking the function',
      },
    };
  }

  private async run(session: Session, batch: Delivery[]): Promise<void> {
    const requestId = randomUUID();
    const started = performance.now();
    // Deliveries with no record are dead-lettered first, one by one, each settled on its own terms. Most batches
    // have none: then every delivery is a record, and the whole batch is settled alike.
    let deadLettered: Map<Delivery, Settlement> | undefined;
    for (const delivery of batch) {
      if (!delivery.failure) continue;
      deadLettered ??= new Map();
      deadLettered.set(delivery, await this.deadLetter(delivery));
    }
    const records = deadLettered ? batch.filter((delivery) => delivery.record) : batch;
    let outcome: 'ack' | 'nack' | 'none' = 'none';
    if (records.length > 0) {
      const event: RabbitMQEvent = {
        eventSource: 'aws:rmq',
        eventSourceArn: this.options.eventSourceArn,
        rmqMessagesByQueue: { [this.queueKey]: records.map((delivery) => delivery.record!) },
      };
      this.counts.invocations++;
      outcome = 'ack';
      let unloadable: HandlerLoadError | undefined;
      const invoked = performance.now();
      try {
        const result = await this.invoker.invoke(this.definition, event, { requestId });
        this.metrics.succeeded(performance.now() - invoked, records.length, result);
        this.failedInARow = 0;
        this.requeueDelay = 0;
        this.loadFailures = 0;
        this.reportResult('OK');
      } catch (error) {
        outcome = 'nack';
        this.counts.failedInvocations++;
        const loadFailed = error instanceof HandlerLoadError;
        const kind = loadFailed ? 'not_loaded' : error instanceof InvocationTimeoutError ? 'timeout' : 'error';
        this.metrics.failed(performance.now() - invoked, kind);
        if (loadFailed) this.loadFailures++;
        if (loadFailed && this.loadFailures >= (this.options.handlerLoadAttempts ?? 3)) {
          unloadable = error;
          this.log.error({ err: error, requestId, batchSize: records.length }, 'the handler did not load; the trigger stops');
        } else {
          const delay = this.nextRequeueDelay();
          this.log.error(
            {
              err: error,
              requestId,
              batchSize: records.length,
              requeueDelayMs: delay,
              failedInARow: this.failedInARow,
              ...(loadFailed ? { handlerLoadFailures: this.loadFailures } : {}),
            },
            'invocation failed; the whole batch will be redelivered',
          );
          const { errorType } = error as { errorType?: unknown };
          const cause = error instanceof Error ? error.message : String(error);
          this.reportResult({ problem: `Function call failed: ${typeof errorType === 'string' ? `${errorType}: ` : ''}${cause}` });
          // The batch stays unacknowledged meanwhile; stop() and fail() wake this at once.
          await sleep(delay, undefined, { signal: this.waking.signal }).catch(() => undefined);
        }
      }
      if (unloadable) {
        // Give the batch back first (in delivery order, one frame), then stop: no more batches start.
        this.settleBatch(session, batch, 'requeue', deadLettered);
        void this.fail('FUNCTION_CONFIG_NOT_VALID', `${unloadable.errorType}: ${unloadable.message}`);
        return;
      }
    }
    const settled = this.settleBatch(session, batch, outcome === 'ack' ? 'ack' : 'requeue', deadLettered);
    if (outcome === 'nack') this.log.info(this.batchSummary(requestId, batch, records, outcome, started, settled), 'batch requeued');
    // Built only when it is written: this runs once per batch.
    else if (this.log.isLevelEnabled('debug'))
      this.log.debug(this.batchSummary(requestId, batch, records, outcome, started, settled), 'batch processed');
  }

  private batchSummary(requestId: string, batch: Delivery[], records: Delivery[], outcome: string, started: number, settled: boolean) {
    const durationMs = Math.round((performance.now() - started) * 10) / 10;
    return { requestId, batchSize: batch.length, invoked: records.length, outcome, durationMs, settled };
  }

  /**
   * Settles a batch after its invocation: its records as `records` says, the deliveries dead-lettered before it
   * as their dead-lettering said. In delivery order when one invocation runs at a time (see settle).
   */
  private settleBatch(
    session: Session,
    batch: Delivery[],
    records: Settlement,
    deadLettered: Map<Delivery, Settlement> | undefined,
  ): boolean {
    const inDeliveryOrder = this.concurrency === 1;
    if (!deadLettered) return this.settle(session, batch, records, inDeliveryOrder);
    return this.settle(session, batch, (delivery) => deadLettered.get(delivery) ?? records, inDeliveryOrder);
  }

  /** The wait for this failed batch: the first delay, doubled for each failure in a row before it, capped. */
  private nextRequeueDelay(): number {
    const first = this.options.requeueDelayMs ?? 100;
    const cap = this.options.maxRequeueDelayMs ?? 5_000;
    this.failedInARow++;
    this.requeueDelay = Math.min(cap, first * 2 ** Math.min(30, this.failedInARow - 1));
    return this.requeueDelay;
  }

  /**
   * Dead-letters a delivery that cannot be invoked: a confirmed copy with the reason to the dead-letter
   * exchange (then ack), else reject without requeue (the queue's own dead-lettering). A copy that could not
   * be confirmed for a passing reason (broker away) goes back to the queue to be tried again.
   */
  private async deadLetter(delivery: Delivery): Promise<Settlement> {
    const { message, failure } = delivery;
    const { queue } = this.definition;
    const { deadLetterExchange: exchange, publisher } = this.options;
    const headers = (message.properties.headers ?? {}) as Record<string, unknown>;
    const reason = {
      errorClass: failure!.errorClass,
      error: `${failure!.name}: ${failure!.message}`,
      messageId: message.properties.messageId as unknown,
    };
    if (!exchange || !publisher) {
      this.log.warn({ ...reason }, "message cannot be invoked; rejected to the queue's own dead-lettering (no deadLetterExchange set)");
      return 'reject';
    }
    try {
      const failureInfo = failureHeaders({ ...failure!, attempts: attemptOf(headers), queue, firstFailedAt: headers['x-first-failed-at'] });
      await publisher.publish({
        exchange,
        routingKey: queue,
        body: message.content,
        options: republishProperties(message.properties as Parameters<typeof republishProperties>[0], { ...headers, ...failureInfo }),
      });
      this.counts.deadLettered++;
      this.log.warn({ ...reason, deadLetterExchange: exchange }, 'message cannot be invoked; dead-lettered on its own');
      return 'ack';
    } catch (error) {
      if (error instanceof UnroutableError) {
        this.log.warn({ ...reason, err: error }, "dead-letter copy unroutable; rejected to the queue's own dead-lettering");
        return 'reject';
      }
      this.log.warn({ ...reason, err: error }, 'could not dead-letter the message; returning it to the queue');
      return 'requeue';
    }
  }

  /**
   * Settles deliveries on the channel they came from, each as `settlement` says (one for all, or one each).
   * Returns false when that channel is gone: the broker has already put those messages back, and a new
   * channel must not touch their old tags. `inDeliveryOrder`: every earlier delivery on this channel is
   * already settled (one invocation at a time runs batches in delivery order), so when the whole batch is
   * acked or requeued alike one `multiple` frame settles it.
   */
  private settle(
    session: Session,
    deliveries: readonly Delivery[],
    settlement: Settlement | ((delivery: Delivery) => Settlement),
    inDeliveryOrder = false,
  ): boolean {
    if (deliveries.length === 0) return true;
    if (!session.open) return false;
    try {
      const each = typeof settlement === 'function' ? deliveries.map(settlement) : undefined;
      const kind = each ? each[each.length - 1]! : (settlement as Settlement);
      const uniform = kind !== 'reject' && (!each || each.every((outcome) => outcome === kind));
      if (uniform && inDeliveryOrder) {
        const last = deliveries[deliveries.length - 1]!.message;
        if (kind === 'ack') session.channel.ack(last, true);
        else session.channel.nack(last, true, true);
      } else {
        for (let i = 0; i < deliveries.length; i++) {
          const outcome = each ? each[i]! : kind;
          if (outcome === 'ack') session.channel.ack(deliveries[i]!.message);
          else session.channel.nack(deliveries[i]!.message, false, outcome === 'requeue');
        }
      }
      if (each) for (const outcome of each) this.counts[TALLY[outcome]]++;
      else this.counts[TALLY[kind]] += deliveries.length;
      return true;
    } catch (error) {
      this.log.warn({ err: error }, 'could not settle batch; the broker will redeliver it');
      return false;
    }
  }
}

/** Which count each settlement adds to. */
const TALLY: Readonly<Record<Settlement, keyof TriggerCounts>> = { ack: 'acked', requeue: 'requeued', reject: 'rejected' };
