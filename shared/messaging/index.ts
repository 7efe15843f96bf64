/**
 * This app's messaging: its topology (declared from topology.ts), and the process's one Broker connection
 * (topology declared on every connect) and one Publisher. The AMQP plumbing itself is shared/amqp, re-exported
 * here for the app's modules.
 */

import type { ChannelModel } from 'amqplib';
import { Broker, type BrokerOptions, Publisher } from 'middy-rabbitmq/amqp';
import { type Config, config } from '../config';
import { logger } from '../logging';
import { declareTopology, type WorkQueue } from './topology';

export * from 'middy-rabbitmq/amqp';
export * from './topology';

/** Topology settings derived from configuration. */
export const topologyOptions = (cfg: Config, extraQueues?: readonly WorkQueue[]) => ({
  deliveryLimit: cfg.deliveryLimit,
  retryDelaysMs: cfg.retryDelaysMs,
  ...(extraQueues ? { extraQueues } : {}),
});

/**
 * A Broker that declares the topology on every (re)connection, so a restarted broker gets it back. In the
 * background: a container's first requests wait for the connection, not for some forty declarations (the
 * runner, `npm run topology` or the deployment has declared them before; on a broker that has nothing yet,
 * a publish that comes first fails and its event waits in the outbox for the relay).
 */
export function createBroker(cfg: Config = config(), options: Partial<BrokerOptions> = {}): Broker {
  const broker = new Broker({ urls: cfg.amqpUrls, connectionName: cfg.serviceName, ...options });
  broker.on('connected', (connection: ChannelModel) => {
    // The channel is left to end with the connection: closing it cost each cold container a stack capture
    // that, with source maps on, parses a source map (bench:http's cold burst).
    declareTopology(connection, topologyOptions(cfg), { keepChannel: true }).catch((error: unknown) =>
      logger().warn({ err: error }, 'could not declare the topology'),
    );
  });
  return broker;
}

let shared: { broker: Broker; publisher: Publisher } | undefined;

/** The process-wide broker and publisher, created on first use (a Lambda container reuses them). */
export function messaging(): { broker: Broker; publisher: Publisher } {
  if (!shared) {
    const broker = createBroker();
    shared = { broker, publisher: new Publisher(broker) };
  }
  return shared;
}

/** Closes the process-wide connection, if one was opened. */
export async function closeMessaging(): Promise<void> {
  const current = shared;
  shared = undefined;
  if (current) {
    // Broker first: a publish still waiting for a connection is released by it, not by the publisher.
    await current.broker.close();
    await current.publisher.close();
  }
}
