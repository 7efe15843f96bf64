/**
 * A RabbitMQ virtual host of a test's own. Inside it the contract's exchanges and queues (`orders`,
 * `order-events`, `inventory-events`, their DLQs, the retry queues) exist only for this test: nobody else
 * publishes into them, consumes from them or purges them, and deleting the vhost afterwards removes
 * everything the test created. The code under test needs no change for it: the vhost is the path of
 * AMQP_URL (`amqp://guest:guest@127.0.0.1:5672/fault-1a2b3c4d`).
 */
import { randomBytes } from 'node:crypto';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import amqp from 'amqplib';
import { AMQP_URL } from './amqp';
import { brokerControl } from './broker-control';

export interface TestVhost {
  name: string;
  /** AMQP_URL with this vhost. */
  url: string;
  /** The same vhost reached through another host and port (a proxy in front of the broker). */
  urlVia(host: string, port: number): string;
  /** Deletes the vhost with every queue and exchange in it. Safe to call twice. */
  remove(): Promise<void>;
}

/** Creates a fresh vhost (rabbitmqctl or the management API: broker-control.ts) and grants the test user every right in it. */
export async function createVhost(prefix: string): Promise<TestVhost> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  const base = new URL(AMQP_URL);
  const user = decodeURIComponent(base.username || 'guest');
  const control = await brokerControl();
  await control.addVhost(name);
  await control.setPermissions(name, user, '.*', '.*', '.*');
  const withVhost = (host: string, port: number) => {
    const url = new URL(AMQP_URL);
    url.hostname = host;
    url.port = String(port);
    url.pathname = `/${encodeURIComponent(name)}`;
    return url.toString();
  };
  let removed = false;
  return {
    name,
    url: withVhost(base.hostname, Number(base.port || 5672)),
    urlVia: withVhost,
    remove: async () => {
      if (removed) return;
      removed = true;
      await control.deleteVhost(name);
    },
  };
}

export interface VhostAmqp {
  connection: ChannelModel;
  /** A confirm channel: `publishConfirmed` waits until the broker has every message. */
  channel: ConfirmChannel;
  close(): Promise<void>;
}

/** A plain amqplib connection of the test's own (never through a proxy under test). */
export async function openAmqp(url: string): Promise<VhostAmqp> {
  const connection = await amqp.connect(url);
  connection.on('error', () => undefined);
  const channel = await connection.createConfirmChannel();
  channel.on('error', () => undefined);
  return {
    connection,
    channel,
    close: async () => {
      await connection.close().catch(() => undefined);
    },
  };
}
