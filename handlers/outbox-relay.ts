/**
 * Outbox relay (scheduled, every minute when deployed): sends the outbox's pending backlog with confirms, then
 * returns. Locally the runner's hooks run the relay as a loop beside the triggers (shared/app/runner-hooks.ts);
 * a Lambda-only deployment has no such process, so an event intake or a queue function could not publish right
 * after its commit (a broker blip) is sent by the next run of this function. Rows are claimed (FOR UPDATE SKIP
 * LOCKED), so overlapping runs, or this and a worker's loop, send each row once. Each run then deletes inbox
 * claims and published outbox rows older than their retention (shared/store/retention.ts), a bounded slice a run.
 */
import middy from '@middy/core';
import type { Context, ScheduledEvent } from 'aws-lambda';
import { takeColdStart } from 'middy-rabbitmq/core';
import { config } from '../shared/config';
import { lazy } from '../shared/lib/lazy';
import { type Logger, logger as processLogger } from '../shared/logging';
import { messaging, type Publisher } from '../shared/messaging';
import { type DrainResult, drainOutbox, type RelayStore } from '../shared/outbox';
import { openStore, type PruneResult, type PruningStore, pruneExpired, type Retention } from '../shared/store';

/** What the relay function talks to; each has the process's own as default (tests pass their own). */
export interface RelayDeps {
  store: () => Promise<RelayStore & PruningStore>;
  publisher: () => Publisher;
  logger: () => Logger;
  /** Rows per round (default 100). */
  limit?: number;
  /** Default: INBOX_RETENTION_DAYS and OUTBOX_RETENTION_DAYS. */
  retention?: () => Retention;
}

/** What a run did: the relay's drain, and the expired rows it deleted afterwards. */
export interface RelayRunResult extends DrainResult {
  pruned: PruneResult;
}

/** The process-wide store, opened on first use (a Lambda container reuses it); not the queue functions' module, whose middleware this function does not need. */
const processStore = lazy(() => openStore());

export const createHandler = (deps: Partial<RelayDeps> = {}) => {
  const {
    store = processStore,
    publisher = () => messaging().publisher,
    logger = processLogger,
    limit,
    retention = () => config().retention,
  } = deps;
  return middy(async (_event: ScheduledEvent | Record<string, unknown>, context: Context): Promise<RelayRunResult> => {
    const started = Date.now();
    const log = logger().child({ function: 'outbox-relay', requestId: context.awsRequestId, coldStart: takeColdStart() });
    const opened = await store();
    const drained = await drainOutbox(opened, publisher(), {
      remainingMs: () => context.getRemainingTimeInMillis(),
      logger: log,
      ...(limit ? { limit } : {}),
    });
    const result = { ...drained, pruned: await prune(opened, retention(), context, log) };
    const line = { ...result, durationMs: Date.now() - started };
    if (result.deferred > 0) log.warn(line, 'outbox relay: broker unavailable; rows wait for the next run');
    else log.info(line, 'outbox relay run');
    return result;
  });
};

/** Time a run keeps for pruning: with less left after the drain, the next run prunes. */
const PRUNE_MARGIN_MS = 5_000;

/** Expired rows deleted after the drain; a failure is logged, not the run's (it sent what it had to; the next run prunes). */
async function prune(store: PruningStore, retention: Retention, context: Context, log: Logger): Promise<PruneResult> {
  if (context.getRemainingTimeInMillis() < PRUNE_MARGIN_MS) return { inbox: 0, outbox: 0 };
  try {
    return await pruneExpired(store, retention);
  } catch (error) {
    log.error({ err: error }, 'outbox relay: deleting expired rows failed; the next run tries again');
    return { inbox: 0, outbox: 0 };
  }
}

export const handler = createHandler();
