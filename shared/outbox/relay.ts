/**
 * The outbox relay: sends what the outbox holds, oldest first, with confirms, until nothing is pending.
 * `publishPending` is one round; `startOutboxRelay` runs rounds in a loop for the worker, the offline
 * process or anything else long-lived; `drainOutbox` runs rounds until the backlog is sent, then returns
 * (a scheduled function). See publish.ts for the delivery guarantee (at least once, same
 * messageId on a re-send; consumers dedupe).
 */

import { startTracing } from 'middy-rabbitmq/tracing';
import { startLoop } from '../lib/loop';
import { PublishError, type Publisher } from '../messaging';
import {
  DEFAULT_PUBLISH_TIMEOUT_MS,
  isInFlight,
  type OutboxLogger,
  type PublishOutcome,
  type RelayStore,
  sendRow,
  settleRow,
} from './publish';

export interface PublishPendingOptions {
  /** Rows per round (default 100). */
  limit?: number;
  /** Confirm wait per row (default 10 s). A round claims its rows for twice that. */
  timeoutMs?: number;
  logger?: OutboxLogger;
}

export interface RelayRound {
  published: number;
  failed: number;
  /** Rows not sent because the broker is unavailable; they stay as they are for a later round. */
  deferred: number;
  /** Rows this round claimed but did not send: still in flight from an earlier attempt of this publisher. */
  skipped: number;
}

const DEFAULT_RELAY_LIMIT = 100;

/**
 * One round: claims up to `limit` pending rows that no one holds a lease on (not their producer, which
 * publishes them itself right after its commit, nor another relay: see Outbox.claim), oldest first, and
 * publishes them on one confirm channel (sent in order, confirmed together); each row is marked published
 * after its confirm, or its failure is recorded and its claim released for the next round. While the broker
 * is known to be down a round touches nothing.
 *
 * One bad row (e.g. an exchange that does not exist) makes the broker close the channel, which fails every
 * row sent with it. So when the broker refused anything, the refused rows get a second try one at a time in
 * the same round: the bad row fails alone and the others go through, instead of failing behind it forever.
 */
export async function publishPending(store: RelayStore, publisher: Publisher, options: PublishPendingOptions = {}): Promise<RelayRound> {
  if (publisher.brokerDown) return { published: 0, failed: 0, deferred: await store.outbox.backlog(), skipped: 0 };
  await startTracing(); // each row is sent in a span continuing the trace stored with it
  const timeoutMs = options.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
  const rows = await store.outbox.claim(options.limit ?? DEFAULT_RELAY_LIMIT, 2 * timeoutMs);
  const due = rows.filter((row) => !isInFlight(publisher, row.event_id));
  const errors = await Promise.all(due.map((row) => sendRow(store, publisher, row, timeoutMs)));
  if (due.length > 1) {
    for (const [i, row] of due.entries()) {
      if (errors[i] instanceof PublishError) errors[i] = await sendRow(store, publisher, row, timeoutMs);
    }
  }
  const outcomes = await Promise.all(due.map((row, i) => settleRow(store, row, errors[i], options.logger)));
  await store.outbox.release(due.filter((_, i) => outcomes[i] === 'failed' || outcomes[i] === 'deferred').map((row) => row.event_id));
  const count = (wanted: PublishOutcome) => outcomes.filter((outcome) => outcome === wanted).length;
  return { published: count('published'), failed: count('failed'), deferred: count('deferred'), skipped: rows.length - due.length };
}

export interface DrainOutboxOptions extends PublishPendingOptions {
  /** Time left for the whole drain in ms (a Lambda's `getRemainingTimeInMillis`): no round starts that could outlive it. */
  remainingMs: () => number;
}

/** What a drain did: its rounds' rows added up, and the rows still unpublished when it returned. */
export interface DrainResult extends RelayRound {
  rounds: number;
  /** Unpublished rows left (leased to their producer, failed, deferred, or beyond the time left). */
  backlog: number;
}

/**
 * Rounds one after the other until a round finds less than a full batch to send, or the time left would not
 * cover another round (its publish wait twice, as a round's claims last), then returns: the outbox relay as a
 * scheduled function (handlers/outbox-relay.ts). Rows are claimed per round, so any number of drains and
 * relay loops on one PostgreSQL send each row once.
 */
export async function drainOutbox(store: RelayStore, publisher: Publisher, options: DrainOutboxOptions): Promise<DrainResult> {
  const { remainingMs, ...roundOptions } = options;
  const limit = roundOptions.limit ?? DEFAULT_RELAY_LIMIT;
  const roundMs = 2 * (roundOptions.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS);
  const total: DrainResult = { published: 0, failed: 0, deferred: 0, skipped: 0, rounds: 0, backlog: 0 };
  while (remainingMs() > roundMs) {
    const round = await publishPending(store, publisher, { ...roundOptions, limit });
    total.rounds++;
    total.published += round.published;
    total.failed += round.failed;
    total.deferred += round.deferred;
    total.skipped += round.skipped;
    // A full round of sent rows: more may be waiting. Anything else (short, failed, broker down): done for now.
    if (round.published < limit) break;
  }
  total.backlog = await store.outbox.backlog();
  return total;
}

export interface OutboxRelayOptions extends PublishPendingOptions {
  store: RelayStore;
  publisher: Publisher;
  /** Pause after a round that emptied the outbox or failed (default 1 s; config: OUTBOX_RELAY_INTERVAL_MS). A full round is followed at once. */
  intervalMs?: number;
}

/** Stops the loop; resolves once the round under way (if any) has finished. */
export type StopRelay = () => Promise<void>;

/**
 * Starts the relay loop. A round that throws (database down) is logged and retried after `intervalMs`.
 * While the broker is down rounds cost one read and no writes (every publish fails at once, see publish.ts);
 * the outage is logged once, when it starts.
 */
export function startOutboxRelay(options: OutboxRelayOptions): StopRelay {
  const { store, publisher, intervalMs = 1_000, limit = DEFAULT_RELAY_LIMIT, ...rest } = options;
  const { logger } = rest;
  const roundOptions: PublishPendingOptions = { ...rest, limit };
  let deferring = false;

  return startLoop(async () => {
    try {
      const result = await publishPending(store, publisher, roundOptions);
      if (result.deferred > 0 && !deferring) logger?.warn({ ...result }, 'outbox relay: broker unavailable; rows wait for it');
      if (result.published > 0 || result.failed > 0) logger?.info({ ...result }, 'outbox relay round');
      if (result.deferred > 0) deferring = true;
      else if (result.published > 0 || result.failed > 0) deferring = false;
      return result.published === limit ? 0 : intervalMs;
    } catch (error) {
      logger?.error({ err: error }, 'outbox relay round failed');
      return intervalMs;
    }
  });
}
