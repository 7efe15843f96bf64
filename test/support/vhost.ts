/**
 * A RabbitMQ virtual host of a test's own. Inside it the contract's exchanges and queues (`orders`,
 * `order-events`, `inventory-events`, their DLQs, the retry queues) exist only for this test: nobody else
 * publishes into them, consumes from them or purges them, and deleting the vhost afterwards removes
 * everything the test created. The code under test needs no change for it: the vhost is the path of
 * AMQP_URL (`amqp://guest:guest@127.0.0.1:5672/fault-1a2b3c4d`).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import amqp from 'amqplib';
import { AMQP_URL } from './amqp';

const run = promisify(execFile);

export interface TestVhost {
  name: string;
  /** AMQP_URL with this vhost. */
  url: string;
  /** The same vhost reached through another host and port (a proxy in front of the broker). */
  urlVia(host: string, port: number): string;
  /** Deletes the vhost with every queue and exchange in it. Safe to call twice. */
  remove(): Promise<void>;
}

/**
 * Runs a rabbitmqctl command; while the broker's app is stopped (another suite on this broker stops and
 * starts it to test outages) it waits and tries again, for up to 90 s.
 */
async function rabbitmqctl(...args: string[]): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    try {
      await run('rabbitmqctl', ['-q', ...args], { timeout: 60_000 });
      return;
    } catch (error) {
      const text = `${(error as { stderr?: string }).stderr ?? ''} ${(error as Error).message}`;
      if (!/app to be running|nodedown|unable to perform an operation/i.test(text) || Date.now() > deadline) throw error;
      await sleep(1_000);
    }
  }
}

/** Creates a fresh vhost (rabbitmqctl, as the existing broker-stop test uses) and grants the test user every right in it. */
export async function createVhost(prefix: string): Promise<TestVhost> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  const base = new URL(AMQP_URL);
  const user = decodeURIComponent(base.username || 'guest');
  await rabbitmqctl('add_vhost', name);
  await rabbitmqctl('set_permissions', '-p', name, user, '.*', '.*', '.*');
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
      await rabbitmqctl('delete_vhost', name);
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
