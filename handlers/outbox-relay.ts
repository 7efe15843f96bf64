/**
 * Outbox relay (scheduled, every minute when deployed): sends the outbox's pending backlog with confirms, then
 * returns. Locally the runner's hooks run the relay as a loop beside the triggers (shared/app/runner-hooks.ts);
 * a Lambda-only deployment has no such process, so an event intake or a queue function could not publish right
 * after its commit (a broker blip) is sent by the next run of this function. Rows are claimed (FOR UPDATE SKIP
 * LOCKED), so overlapping runs, or this and a worker's loop, send each row once.
 */
import middy from '@middy/core';
import type { Context, ScheduledEvent } from 'aws-lambda';
import { takeColdStart } from 'middy-rabbitmq/core';
import { lazy } from '../shared/lib/lazy';
import { type Logger, logger as processLogger } from '../shared/logging';
import { messaging, type Publisher } from '../shared/messaging';
import { type DrainResult, drainOutbox, type RelayStore } from '../shared/outbox';
import { openStore } from '../shared/store';

/** What the relay function talks to; each has the process's own as default (tests pass their own). */
export interface RelayDeps {
  store: () => Promise<RelayStore>;
  publisher: () => Publisher;
  logger: () => Logger;
  /** Rows per round (default 100). */
  limit?: number;
}

/** The process-wide store, opened on first use (a Lambda container reuses it); not the queue functions' module, whose middleware this function does not need. */
const processStore = lazy(() => openStore());

export const createHandler = (deps: Partial<RelayDeps> = {}) => {
  const { store = processStore, publisher = () => messaging().publisher, logger = processLogger, limit } = deps;
  return middy(async (_event: ScheduledEvent | Record<string, unknown>, context: Context): Promise<DrainResult> => {
    const started = Date.now();
    const log = logger().child({ function: 'outbox-relay', requestId: context.awsRequestId, coldStart: takeColdStart() });
    const result = await drainOutbox(await store(), publisher(), {
      remainingMs: () => context.getRemainingTimeInMillis(),
      logger: log,
      ...(limit ? { limit } : {}),
    });
    const line = { ...result, durationMs: Date.now() - started };
    if (result.deferred > 0) log.warn(line, 'outbox relay: broker unavailable; rows wait for the next run');
    else log.info(line, 'outbox relay run');
    return result;
  });
};

export const handler = createHandler();
