/**
 * Retention: what the store keeps only for a while. An inbox claim exists to recognise a message delivered
 * again, and redeliveries come within minutes of a crash or the end of an outage; a published outbox row only
 * tells what was sent. Kept for ever, both tables grow by a row per message (the inbox by three per order).
 * `pruneExpired` deletes what is older than its retention (INBOX_RETENTION_DAYS, OUTBOX_RETENTION_DAYS; 0 keeps
 * everything), oldest first, a bounded slice per table per call, found through the indexes of migration 0004.
 * Who calls it: the loop beside the outbox relay in a long-lived process (`startPruning`, shared/app/runner-hooks.ts)
 * and the scheduled outboxRelay function in a deployment (handlers/outbox-relay.ts), each every minute.
 */
import { startLoop } from '../lib/loop';
import type { Store } from './open';

/** How long each table keeps a row, in days; 0 keeps every row. */
export interface Retention {
  /** Inbox claims, from when they were made: a message delivered again later than this has its effect again. */
  inboxDays: number;
  /** Published outbox rows, from when they were published. Unpublished rows are never deleted. */
  outboxDays: number;
}

/** Rows deleted, per table. */
export interface PruneResult {
  inbox: number;
  outbox: number;
}

export type PruningStore = Pick<Store, 'inbox' | 'outbox'>;

/** Rows one call deletes at most per table: a short statement, even on a table that was never pruned. */
const PRUNE_LIMIT = 5_000;

const DAY_MS = 24 * 60 * 60 * 1000;

/** Deletes up to `limit` expired rows of each table, oldest first. */
export async function pruneExpired(
  store: PruningStore,
  retention: Retention,
  options: { limit?: number; now?: Date } = {},
): Promise<PruneResult> {
  const { limit = PRUNE_LIMIT, now = new Date() } = options;
  const before = (days: number) => new Date(now.getTime() - days * DAY_MS);
  return {
    inbox: retention.inboxDays > 0 ? await store.inbox.prune(before(retention.inboxDays), limit) : 0,
    outbox: retention.outboxDays > 0 ? await store.outbox.prunePublished(before(retention.outboxDays), limit) : 0,
  };
}

interface PruningLogger {
  info(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface PruningOptions {
  store: PruningStore;
  retention: Retention;
  /** Pause between calls (default 60 s); after a call that deleted a full slice, the next comes after 1 s. */
  intervalMs?: number;
  limit?: number;
  logger?: PruningLogger;
}

/** Calls `pruneExpired` now and then every `intervalMs` until stopped; resolves the stop once a call under way has ended. */
export function startPruning(options: PruningOptions): () => Promise<void> {
  const { store, retention, intervalMs = 60_000, limit = PRUNE_LIMIT, logger } = options;
  if (retention.inboxDays <= 0 && retention.outboxDays <= 0) return async () => {};
  return startLoop(async () => {
    try {
      const pruned = await pruneExpired(store, retention, { limit });
      if (pruned.inbox > 0 || pruned.outbox > 0)
        logger?.info({ pruned, retention }, 'deleted expired inbox claims and published outbox rows');
      return pruned.inbox >= limit || pruned.outbox >= limit ? 1_000 : intervalMs;
    } catch (error) {
      logger?.error({ err: error }, 'pruning expired rows failed; trying again later');
      return intervalMs;
    }
  });
}
