/**
 * The DLQ reprocessor: shows what is in the dead-letter queues and moves messages back where they came from.
 * No HTTP here: the admin endpoints (handlers/dlq-reprocessor.ts) and the command (shared/dlq/cli.ts) both
 * call this.
 *
 *   const dlq = new DlqReprocessor({ broker, publisher });
 *   await dlq.list();                                                   // every DLQ: depth + sample
 *   await dlq.redrive({ queue: 'order-events-dlq', limit: 50, rate: 5, errorClasses: ['transient'] });
 *
 * Guarantees (reader.ts explains the broker behaviour they rest on; test/integration/dlq.test.ts checks them):
 * - No loss. A message leaves the DLQ only after the broker confirmed its copy in the work queue or the
 *   parking lot (confirms + mandatory, then ack), and a copy is published only while we still hold the
 *   message. A failed publish or a lost connection leaves the message in the DLQ.
 * - Exactly one place, with one bounded exception: if the connection drops while a copy is in flight (sent,
 *   and possibly taken by the broker, but our ack of the original not yet processed), that message can be in
 *   its work queue and still in the DLQ (at-least-once; the functions' inbox drops the second copy by
 *   messageId). Messages are moved one at a time, so at most one message per interruption.
 * - Order. Inspecting, a dry run, skipped (filtered-out) and failed messages are never acked or nacked: they
 *   are handed back when the read ends and stay at the head of the DLQ in their original order, ahead of
 *   anything dead-lettered meanwhile, also after an interruption. The one gap: a connection lost in the first
 *   milliseconds of a read, before the broker delivered it the messages an earlier read handed back, puts
 *   the messages it did get behind those. The hand-back counts as a delivery for the broker
 *   (`x-delivery-count` grows, `redelivered` is set); the DLQs have no delivery limit, so nothing else changes.
 * - One reader per DLQ at a time (lock.ts), across processes: a second list/redrive of the same DLQ gets
 *   DlqBusyError (list shows it as busy) rather than interleaving with the first.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumeMessage } from 'amqplib';
import { FAILURE_HEADERS } from 'middy-rabbitmq/core';
import { extractTraceContext, publishSpan, startTracing, withTraceHeaders } from 'middy-rabbitmq/tracing';
import { type Config, config as processConfig } from '../config';
import { within } from '../lib/within';
import { type Logger, logger as processLogger } from '../logging';
import {
  type Broker,
  dlqName,
  EXCHANGES,
  PARKING_LOT_QUEUE,
  type Publisher,
  PublishNackedError,
  UnroutableError,
  WORK_QUEUES,
} from '../messaging';
import { DlqBusyError, DlqMessageMovedError, DlqMessageNotFoundError, NotADlqError } from './errors';
import { withDlqLock } from './lock';
import {
  type DlqErrorClass,
  type DlqMessageDetail,
  type DlqMessageSummary,
  describeMessage,
  errorClassOf,
  parkedCopy,
  redriveCopy,
  redriveCountOf,
  redriveTarget,
  reportId,
  summarize,
} from './message';
import type { ListOptions, MessageOptions, RedriveOptions } from './options';
import { DlqReader, type QueueStats, queueStats } from './reader';

type DlqSettings = Pick<
  Config,
  'dlqMaxRedrives' | 'dlqRedriveLimit' | 'dlqRedriveRate' | 'dlqScanLimit' | 'dlqSampleSize' | 'dlqPreviewChars'
>;

export interface DlqReprocessorOptions {
  broker: Broker;
  /** Confirms + mandatory publisher on the same broker. */
  publisher: Publisher;
  /** Limits and defaults (default: the process configuration). */
  config?: DlqSettings;
  /** DLQs shown by `list()` besides the work queues' own (e.g. of queues added to the topology). */
  extraQueues?: readonly string[];
  /** How long a read waits for the next message before deciding there is none (default 2 s). */
  idleTimeoutMs?: number;
  logger?: Logger;
  /** Clock for the x-redriven-at / x-parked-at headers (tests). */
  now?: () => Date;
}

const defaults = { idleTimeoutMs: 2_000, now: () => new Date() };

/** One DLQ as `list()` shows it. `status`: `busy` while another reader holds it, `missing` if not declared. */
export interface DlqInspection {
  queue: string;
  /** The work queue it belongs to. */
  source: string;
  status: 'ok' | 'busy' | 'missing';
  /** Ready messages; null when missing, or busy (another reader has them checked out). */
  depth: number | null;
  consumers: number | null;
  /** The first messages, in queue order (empty unless status is ok). */
  sample: DlqMessageSummary[];
}

export interface DlqListing {
  dlqs: DlqInspection[];
  /** The parking lot as a DLQ is shown (its first messages too, unless the listing named its DLQs). */
  parkingLot: { queue: string; status: DlqInspection['status']; depth: number | null; sample: DlqMessageSummary[] };
}

/** Why a redrive stopped. */
type RedriveStop =
  | 'empty' // nothing in the DLQ
  | 'done' // every message that was in the DLQ when it started was examined
  | 'limit' // moved + parked reached the limit
  | 'scan-limit' // examined DLQ_SCAN_LIMIT messages
  | 'deadline' // maxDurationMs passed
  | 'aborted' // the caller's signal fired (Ctrl-C on the command)
  | 'interrupted'; // the connection or a publish failed; `error` says what

interface RedriveFailure {
  id: string;
  error: string;
  /** True when the copy was confirmed but the ack failed: the message is in both places. */
  published: boolean;
}

/**
 * What a redrive did (or, with dryRun, would do). Messages are named by messageId, or `#<position>` when
 * they have none. Skipped and failed messages are still in the DLQ.
 */
export interface RedriveReport {
  dlq: string;
  dryRun: boolean;
  moved: string[];
  parked: string[];
  skipped: string[];
  failed: RedriveFailure[];
  /** Messages moved, per work queue. */
  targets: Record<string, number>;
  examined: number;
  depthBefore: number;
  /** Ready messages left in the DLQ afterwards (null if it could not be read). */
  depthAfter: number | null;
  stopped: RedriveStop;
  error?: string;
}

/** What a redrive does with one message. */
export type RedriveDecision =
  | { action: 'skip'; errorClass: DlqErrorClass }
  | { action: 'move'; target: string; errorClass: DlqErrorClass }
  | { action: 'park'; errorClass: DlqErrorClass; redriveCount: number };

/** Decides one message: skipped if it fails the filter, parked if redriven maxRedrives times already, else moved. */
export function decide(
  message: Pick<ConsumeMessage, 'properties'>,
  dlq: string,
  filter: Pick<RedriveOptions, 'errorClasses' | 'errorName'>,
  maxRedrives: number,
): RedriveDecision {
  const headers = message.properties.headers;
  const errorClass = errorClassOf(headers);
  if (filter.errorClasses && filter.errorClasses.length > 0 && !filter.errorClasses.includes(errorClass))
    return { action: 'skip', errorClass };
  if (filter.errorName !== undefined && String(headers?.[FAILURE_HEADERS.errorName] ?? '') !== filter.errorName)
    return { action: 'skip', errorClass };
  const redriveCount = redriveCountOf(headers, maxRedrives);
  if (redriveCount >= maxRedrives) return { action: 'park', errorClass, redriveCount };
  return { action: 'move', target: redriveTarget(dlq), errorClass };
}

/** Throws NotADlqError unless `queue` is named like a DLQ. */
function assertDlqName(queue: string): void {
  if (!/^[A-Za-z0-9._:-]+-dlq$/.test(queue)) throw new NotADlqError(queue, 'its name must be `<queue>-dlq`');
}

/** What may be read (listed, a message shown): a DLQ, or the parking lot. Only a DLQ may be redriven. */
function assertReadable(queue: string): void {
  if (queue !== PARKING_LOT_QUEUE) assertDlqName(queue);
}

/** A publish failure that concerns only this message (the channel is fine): keep going with the next one. */
const messageLevel = (error: unknown): boolean => error instanceof UnroutableError || error instanceof PublishNackedError;

export class DlqReprocessor {
  private readonly broker: Broker;
  private readonly publisher: Publisher;
  private readonly settings: DlqSettings;
  private readonly extraQueues: readonly string[];
  private readonly idleTimeoutMs: number;
  private readonly log: Logger;
  private readonly now: () => Date;

  constructor(options: DlqReprocessorOptions) {
    const merged = { ...defaults, ...options };
    this.broker = merged.broker;
    this.publisher = merged.publisher;
    this.settings = merged.config ?? processConfig();
    this.extraQueues = merged.extraQueues ?? [];
    this.idleTimeoutMs = merged.idleTimeoutMs;
    this.log = (merged.logger ?? processLogger()).child({ component: 'dlq-reprocessor' });
    this.now = merged.now;
  }

  /** The DLQs `list()` shows by default: one per work queue, then the extra ones. */
  get queues(): string[] {
    return [...new Set([...WORK_QUEUES.map((queue) => dlqName(queue.name)), ...this.extraQueues])];
  }

  /** Each DLQ's depth and first messages, and the parking lot's. Reading changes nothing (see above). */
  async list(options: ListOptions = {}): Promise<DlqListing> {
    const queues = options.queues && options.queues.length > 0 ? [...new Set(options.queues)] : this.queues;
    const dlqs: DlqInspection[] = [];
    for (const queue of queues) dlqs.push(await this.inspectQuietly(queue, options.sampleSize));
    const named = options.queues && options.queues.length > 0;
    const { status, depth, sample } = await this.inspectQuietly(PARKING_LOT_QUEUE, named ? 0 : options.sampleSize);
    return { dlqs, parkingLot: { queue: PARKING_LOT_QUEUE, status, depth, sample } };
  }

  /** One DLQ's (or the parking lot's) depth and first `sampleSize` messages, in queue order; DlqBusyError / NotADlqError. */
  async inspect(queue: string, sampleSize: number = this.settings.dlqSampleSize): Promise<DlqInspection> {
    assertReadable(queue);
    return withDlqLock(this.broker, queue, async () => {
      const baseline = await queueStats(this.broker, queue);
      const { depth, consumers } = baseline;
      const sample: DlqMessageSummary[] = [];
      await this.readHead(queue, baseline, sampleSize, (message, position) => {
        sample.push(this.summary(message, queue, position));
      });
      return { queue, source: queue.replace(/-dlq$/, ''), status: 'ok', depth, consumers, sample };
    });
  }

  /**
   * One message in full (every property, the whole body with personal fields masked), read in place as
   * `inspect` reads: nothing moves. DlqMessageNotFoundError past the end; DlqMessageMovedError when
   * `messageId` is given and another message is at that position now.
   */
  async message(options: MessageOptions): Promise<DlqMessageDetail> {
    const { queue, position, messageId } = options;
    assertReadable(queue);
    return withDlqLock(this.broker, queue, async () => {
      const baseline = await queueStats(this.broker, queue);
      let found: DlqMessageDetail | undefined;
      await this.readHead(queue, baseline, position, (message, at) => {
        if (at === position) found = describeMessage(message, this.summary(message, queue, at));
      });
      if (!found) throw new DlqMessageNotFoundError(queue, position);
      if (messageId !== undefined && found.messageId !== messageId) throw new DlqMessageMovedError(queue, position, messageId);
      return found;
    });
  }

  private summary(message: ConsumeMessage, dlq: string, position: number): DlqMessageSummary {
    return summarize(message, {
      dlq,
      position,
      maxRedrives: this.settings.dlqMaxRedrives,
      previewChars: this.settings.dlqPreviewChars,
    });
  }

  /** Reads the first `count` messages of a locked DLQ in order, holding them, then hands them all back in place. */
  private async readHead(
    queue: string,
    baseline: QueueStats,
    count: number,
    visit: (message: ConsumeMessage, position: number) => void,
  ): Promise<void> {
    const wanted = Math.min(count, baseline.depth);
    if (wanted <= 0) return;
    const reader = await DlqReader.open(this.broker, queue, {
      baseline,
      scanLimit: this.settings.dlqScanLimit,
      idleTimeoutMs: this.idleTimeoutMs,
    });
    try {
      for (let position = 1; position <= wanted; position++) {
        const message = await reader.next();
        if (!message) break;
        visit(message, position);
      }
    } finally {
      await reader.close();
    }
  }

  /**
   * Moves messages from a DLQ back to their work queue (or parks them), in queue order, at most `limit`, at
   * most `rate` per second. Messages that fail the filter are skipped and stay in order; a dry run changes
   * nothing. Resolves with the report even when interrupted (then `stopped: 'interrupted'` and `error`).
   */
  async redrive(options: RedriveOptions): Promise<RedriveReport> {
    assertDlqName(options.queue);
    const dlq = options.queue;
    const limit = options.limit ?? this.settings.dlqRedriveLimit;
    const rate = options.rate ?? this.settings.dlqRedriveRate;
    const dryRun = options.dryRun ?? false;
    const maxDurationMs = options.maxDurationMs ?? Number.POSITIVE_INFINITY;
    const maxRedrives = this.settings.dlqMaxRedrives;
    const startedAt = Date.now();
    const log = this.log.child({ dlq, dryRun });

    return withDlqLock(this.broker, dlq, async () => {
      const baseline = await queueStats(this.broker, dlq);
      const { depth } = baseline;
      const report: RedriveReport = {
        dlq,
        dryRun,
        moved: [],
        parked: [],
        skipped: [],
        failed: [],
        targets: {},
        examined: 0,
        depthBefore: depth,
        depthAfter: null,
        stopped: 'done',
      };
      options.onProgress?.(report);
      // Only what is there now: a copy that fails again and comes back meanwhile waits for the next run.
      const toExamine = Math.min(depth, this.settings.dlqScanLimit);
      if (toExamine === 0) {
        report.stopped = 'empty';
        report.depthAfter = depth;
        return report;
      }
      const reader = await DlqReader.open(this.broker, dlq, { baseline, scanLimit: toExamine, idleTimeoutMs: this.idleTimeoutMs });
      const interval = 1_000 / rate;
      let nextSlot = Date.now();
      try {
        for (;;) {
          options.onProgress?.(report);
          if (report.moved.length + report.parked.length >= limit) {
            report.stopped = 'limit';
            break;
          }
          if (report.examined >= toExamine) {
            report.stopped = toExamine < depth ? 'scan-limit' : 'done';
            break;
          }
          if (Date.now() - startedAt >= maxDurationMs) {
            report.stopped = 'deadline';
            break;
          }
          if (options.signal?.aborted) {
            report.stopped = 'aborted';
            break;
          }
          const message = await reader.next();
          if (!message) {
            if (reader.interruption) {
              report.stopped = 'interrupted';
              report.error = `lost the DLQ channel: ${reader.interruption.message}`;
            }
            break;
          }
          const position = ++report.examined;
          const id = reportId(message, position);
          const decision = decide(message, dlq, options, maxRedrives);
          if (decision.action === 'skip') {
            report.skipped.push(id);
            continue;
          }
          if (dryRun) {
            this.record(report, decision, id);
            continue;
          }
          // Pace the publishes: at most `rate` per second.
          const wait = nextSlot - Date.now();
          if (wait > 0) await sleep(wait, undefined, options.signal ? { signal: options.signal } : {}).catch(() => undefined);
          if (options.signal?.aborted) {
            report.stopped = 'aborted';
            report.examined--; // handed back untouched
            break;
          }
          // Publish only while we still hold the message: after a cut the publisher would reconnect and send a
          // copy of a message the broker has already handed back to the DLQ.
          if (reader.interruption) {
            report.stopped = 'interrupted';
            report.error = `lost the DLQ channel: ${reader.interruption.message}`;
            report.examined--; // handed back untouched
            break;
          }
          nextSlot = Math.max(nextSlot, Date.now()) + interval;

          const now = this.now();
          const publish =
            decision.action === 'move'
              ? { exchange: '', routingKey: decision.target, body: message.content, options: redriveCopy(message, dlq, now, maxRedrives) }
              : {
                  exchange: EXCHANGES.deadLetter,
                  routingKey: PARKING_LOT_QUEUE,
                  body: message.content,
                  options: parkedCopy(message, dlq, maxRedrives, now),
                };
          try {
            // A publish span under the trace the dead letter carries; the copy carries the span's context on.
            await startTracing();
            await publishSpan(publish, extractTraceContext(message.properties.headers), (trace) =>
              this.publisher.publish({
                ...publish,
                options: { ...publish.options, headers: withTraceHeaders(publish.options.headers ?? {}, trace) },
              }),
            );
          } catch (error) {
            // Without a confirm the broker may still have taken the copy: then the message is in both queues.
            const maybe = messageLevel(error) ? '' : ` (the copy may have reached ${publish.routingKey} all the same)`;
            const text = `${(error as Error).name}: ${(error as Error).message}${maybe}`;
            report.failed.push({ id, error: text, published: false });
            log.warn({ messageId: id, err: error, target: publish.routingKey }, 'redrive publish failed; the message stays in the DLQ');
            if (messageLevel(error)) continue;
            report.stopped = 'interrupted';
            report.error = text;
            break;
          }
          try {
            reader.ack(message);
          } catch (error) {
            const text = `published to ${publish.routingKey} and confirmed, but the ack failed (${(error as Error).message}): the message may be in both queues`;
            report.failed.push({ id, error: text, published: true });
            log.warn({ messageId: id, err: error }, 'redrive ack failed after the copy was confirmed');
            report.stopped = 'interrupted';
            report.error = text;
            break;
          }
          this.record(report, decision, id);
          log.debug({ messageId: id, action: decision.action, target: publish.routingKey }, 'redriven');
        }
      } finally {
        // Everything not acked (skipped, failed, dry run, read ahead) goes back to the head, in order.
        await reader.close();
      }
      report.depthAfter = await within(queueStats(this.broker, dlq), 5_000).then(
        (stats) => stats.depth,
        () => null,
      );
      const { moved, parked, skipped, failed } = report;
      log.info(
        {
          moved: moved.length,
          parked: parked.length,
          skipped: skipped.length,
          failed: failed.length,
          stopped: report.stopped,
          targets: report.targets,
        },
        dryRun ? 'dlq redrive dry run' : 'dlq redrive',
      );
      return report;
    });
  }

  private record(report: RedriveReport, decision: RedriveDecision, id: string): void {
    if (decision.action === 'move') {
      report.moved.push(id);
      report.targets[decision.target] = (report.targets[decision.target] ?? 0) + 1;
    } else if (decision.action === 'park') {
      report.parked.push(id);
    }
  }

  /** `inspect` for `list`: a busy or missing DLQ is shown as such rather than failing the whole listing. */
  private async inspectQuietly(queue: string, sampleSize?: number): Promise<DlqInspection> {
    try {
      return await this.inspect(queue, sampleSize);
    } catch (error) {
      const source = queue.replace(/-dlq$/, '');
      if (error instanceof DlqBusyError) {
        // The reader holding the lock has the messages checked out (unacknowledged), so the broker's ready
        // count says 0 whatever the DLQ holds: the depth is unknown until that reader is done.
        const stats = await queueStats(this.broker, queue).catch(() => undefined);
        return { queue, source, status: 'busy', depth: null, consumers: stats?.consumers ?? null, sample: [] };
      }
      if (error instanceof NotADlqError) return { queue, source, status: 'missing', depth: null, consumers: null, sample: [] };
      throw error;
    }
  }
}
