/**
 * How this app plugs into the RabbitMQ trigger (serverless.yml `custom.rabbitmqTrigger.hooks` names this
 * module; its default export is the hooks):
 * - on every connection, declare the topology: the contract's exchanges and queues, plus a work queue (with
 *   its DLQ) for any triggered queue outside the contract;
 * - beside the triggers, run the outbox relay, so that events intake or a function could not publish right
 *   after their commit (broker down) go out once the broker is back; and, every minute, delete inbox claims and
 *   published outbox rows older than their retention (shared/store/retention.ts).
 * The configuration is read from the functions' environment the runner hands over.
 */

import type { RunnerHooks } from 'serverless-offline-rabbitmq';
import { loadConfig } from '../config';
import { createLogger } from '../logging';
import { declareTopology, FUNCTION_QUEUES, Publisher, topologyOptions, WORK_QUEUES, type WorkQueue } from '../messaging';
import { type RelayStore, startOutboxRelay } from '../outbox';
import { openStore, type PruningStore, startPruning } from '../store';

export interface AppHookOptions {
  /** The relay's store, pruned too (default: opened from the environment's DATABASE_URL / SQLITE_PATH, closed on stop); false: no relay. */
  relayStore?: (() => Promise<RelayStore & PruningStore>) | false;
}

export function appHooks(options: AppHookOptions = {}): RunnerHooks {
  const hooks: RunnerHooks = {
    async onConnect(connection, { triggers, env }) {
      const known = new Set([...WORK_QUEUES, ...FUNCTION_QUEUES].map((queue) => queue.name));
      const extraQueues: WorkQueue[] = [...new Set(triggers.map((t) => t.queue))]
        .filter((name) => !known.has(name))
        .map((name) => ({ name, bindings: [] }));
      await declareTopology(connection, topologyOptions(loadConfig(env), extraQueues));
    },
  };
  if (options.relayStore === false) return hooks;
  const given = options.relayStore;
  hooks.background = async ({ broker, env }) => {
    const config = loadConfig(env);
    const store = given
      ? await given()
      : await openStore(config.databaseUrl ? { databaseUrl: config.databaseUrl } : { sqlitePath: config.sqlitePath });
    const publisher = new Publisher(broker);
    const logger = createLogger({ level: config.logLevel, service: `${config.serviceName}-runner` }).child({ component: 'outbox-relay' });
    const stop = startOutboxRelay({ store, publisher, intervalMs: config.outboxRelayIntervalMs, logger });
    const stopPruning = startPruning({ store, retention: config.retention, logger });
    return async () => {
      await Promise.all([stop(), stopPruning()]);
      await publisher.close();
      if (!given) await (store as { close?: () => Promise<void> }).close?.();
    };
  };
  return hooks;
}

export default appHooks();
