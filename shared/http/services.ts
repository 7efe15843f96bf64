/**
 * What the routes use: the store, the broker and its publisher, the configuration. Decorated onto the app
 * by an exposed plugin. By default each is opened lazily on first use and then reused (the Lambda handler
 * builds one app per container, so once per process); tests inject their own. `app.close()` closes a store
 * the app opened itself. A store that fails to open is tried
 * again on the next request rather than cached as broken.
 */

import { type Config, config as processConfig } from '../config';
import { lazy } from '../lib/lazy';
import { type Broker, messaging, type Publisher } from '../messaging';
import { openStore, type Store } from '../store';
import { expose } from './expose';

export interface Services {
  /** The store, opened on first call. */
  store(): Promise<Store>;
  /** Events waiting to be published (see BacklogGauge): no count per request. */
  backlog: BacklogGauge;
  broker: Broker;
  publisher: Publisher;
  config: Config;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

export interface ServiceOptions {
  /** A store, or how to open one (default: DATABASE_URL of `config`, else its SQLite file at SQLITE_PATH). */
  store?: Store | (() => Promise<Store>);
  /** Broker and publisher go together (the broker answers /health). Default: the process-wide messaging(). */
  broker?: Broker;
  publisher?: Publisher;
  /** Default: the process configuration. */
  config?: Config;
}

/** Services with defaults filled in; `closeOwned` closes what was opened here rather than given. */
export function resolveServices(options: ServiceOptions): Services & { closeOwned(): Promise<void> } {
  if (Boolean(options.broker) !== Boolean(options.publisher)) {
    throw new TypeError('buildApp: pass broker and publisher together (or neither, for the process-wide ones)');
  }
  const cfg = options.config ?? processConfig();
  const given = options.store;
  let opened: Promise<Store> | undefined;
  const openDefault = () => (opened = openStore(cfg.databaseUrl ? { databaseUrl: cfg.databaseUrl } : { sqlitePath: cfg.sqlitePath }));
  const store = given === undefined ? lazy(openDefault) : typeof given === 'function' ? lazy(given) : async () => given;
  const shared = options.publisher ? undefined : messaging();
  return {
    store,
    backlog: backlogGauge(store),
    broker: options.broker ?? shared!.broker,
    publisher: options.publisher ?? shared!.publisher,
    config: cfg,
    // The process-wide broker may serve others in this process (closeMessaging() ends it); the default store is ours.
    closeOwned: async () => {
      await (await opened?.catch(() => undefined))?.close();
    },
  };
}

/** How stale intake's backlog figure may be: load shedding needs its order of magnitude, not a count per request. */
const BACKLOG_TTL_MS = 1_000;

/** Intake's view of the outbox backlog: an estimate, counted at most once per BACKLOG_TTL_MS. */
interface BacklogGauge {
  /**
   * The backlog for a decision against `limit`: the estimate while it is below the limit (no query), a fresh
   * count when it is not (so a refusal is never based on a stale figure, and a drained backlog is seen at once).
   */
  read(limit: number): Promise<number>;
  /** Events this process committed and could not publish right away: they wait for the relay. */
  add(count: number): void;
}

function backlogGauge(store: () => Promise<Store>): BacklogGauge {
  let known: { count: number; at: number } | undefined;
  let counting: Promise<number> | undefined;
  // Counted up to the limit only: a refusal needs to know the limit is reached, not by how much (and the
  // bounded count stays cheap on PostgreSQL under load, see Outbox.backlog).
  const count = (limit: number) => {
    counting ??= store()
      .then((opened) => opened.outbox.backlog(limit))
      .then((counted) => {
        known = { count: counted, at: Date.now() };
        return counted;
      })
      .finally(() => {
        counting = undefined;
      });
    return counting;
  };
  return {
    read: async (limit) => {
      const estimate = known && Date.now() - known.at < BACKLOG_TTL_MS ? known.count : await count(limit);
      return estimate < limit ? estimate : count(limit);
    },
    add: (added) => {
      if (known) known.count += added;
    },
  };
}

export const servicesPlugin = expose<{ services: ReturnType<typeof resolveServices> }>('services', async (app, options) => {
  const { closeOwned, ...services } = options.services;
  app.decorate('services', services);
  app.addHook('onClose', closeOwned);
});
