/**
 * What the tests that control the broker need of it (virtual hosts, users and permissions, closing every connection,
 * stopping and starting it), through whichever way this machine has, chosen once:
 * - `rabbitmqctl`, when RabbitMQ is installed here and answers it (CI, a Debian laptop);
 * - otherwise the management HTTP API (virtual hosts, permissions, connections: the broker URL's user, at
 *   MANAGEMENT_URL or port 15672 of its host) and `docker compose` for the service `rabbitmq` of this repository's
 *   docker-compose.yml (stop and start), as on a laptop whose broker runs in Docker.
 * BROKER_CONTROL=rabbitmqctl or BROKER_CONTROL=management forces one.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type ManagementTarget, managementTarget } from '../../scripts/lib/management';
import { loadConfig } from '../../shared/config';
import { AMQP_URL } from './amqp';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));

export interface BrokerControl {
  /** How this machine's broker is controlled, for messages. */
  readonly via: 'rabbitmqctl' | 'management API and docker compose';
  addVhost(name: string): Promise<void>;
  deleteVhost(name: string): Promise<void>;
  /** The names of the queues in a virtual host, sorted. */
  listQueues(vhost: string): Promise<string[]>;
  /** configure, write, read: regular expressions, as rabbitmqctl set_permissions takes them. */
  setPermissions(vhost: string, user: string, configure: string, write: string, read: string): Promise<void>;
  addUser(name: string, password: string): Promise<void>;
  deleteUser(name: string): Promise<void>;
  /** Closes every client connection, as a broker restart or an operator would. */
  closeAllConnections(reason: string): Promise<void>;
  /** Stops the broker (its port refuses connections); `start` brings it back and resolves once it accepts them. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** Neither way to control the broker works here; says what each needs. */
class BrokerControlUnavailableError extends Error {
  override readonly name = 'BrokerControlUnavailableError';
}

/**
 * Runs a rabbitmqctl command; while the broker's app is stopped (another suite on this broker stops and
 * starts it to test outages) it waits and tries again, for up to 90 s.
 */
async function rabbitmqctl(...args: string[]): Promise<string> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    try {
      return (await run('rabbitmqctl', ['-q', ...args], { timeout: 60_000 })).stdout;
    } catch (error) {
      const text = `${(error as { stderr?: string }).stderr ?? ''} ${(error as Error).message}`;
      if (!/app to be running|nodedown|unable to perform an operation/i.test(text) || Date.now() > deadline) throw error;
      await sleep(1_000);
    }
  }
}

const viaRabbitmqctl: BrokerControl = {
  via: 'rabbitmqctl',
  addVhost: async (name) => void (await rabbitmqctl('add_vhost', name)),
  deleteVhost: async (name) => void (await rabbitmqctl('delete_vhost', name)),
  listQueues: async (vhost) =>
    (await rabbitmqctl('list_queues', '-p', vhost, '--no-table-headers', 'name'))
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean)
      .sort(),
  setPermissions: async (vhost, user, configure, write, read) =>
    void (await rabbitmqctl('set_permissions', '-p', vhost, user, configure, write, read)),
  addUser: async (name, password) => void (await rabbitmqctl('add_user', name, password)),
  deleteUser: async (name) => void (await rabbitmqctl('delete_user', name)),
  closeAllConnections: async (reason) => void (await rabbitmqctl('close_all_connections', reason)),
  stop: async () => void (await run('rabbitmqctl', ['stop_app'], { timeout: 60_000 })),
  start: async () => {
    await run('rabbitmqctl', ['start_app'], { timeout: 60_000 });
    await run('rabbitmqctl', ['await_startup'], { timeout: 90_000 });
  },
};

/** One management API call; throws with the status and body when it does not succeed. */
async function management(
  target: ManagementTarget,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<unknown> {
  const auth = Buffer.from(`${target.username}:${target.password}`).toString('base64');
  const response = await fetch(`${target.url}/api${path}`, {
    method,
    headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (!response.ok && !(method === 'DELETE' && response.status === 404)) {
    throw new Error(`management API ${method} ${path}: ${response.status} ${text}`);
  }
  return text ? (JSON.parse(text) as unknown) : undefined;
}

const compose = (...args: string[]) => run('docker', ['compose', ...args], { cwd: root, timeout: 120_000 });

function viaManagement(target: ManagementTarget): BrokerControl {
  const vhostPath = (name: string) => `/vhosts/${encodeURIComponent(name)}`;
  return {
    via: 'management API and docker compose',
    addVhost: async (name) => void (await management(target, 'PUT', vhostPath(name), {})),
    deleteVhost: async (name) => void (await management(target, 'DELETE', vhostPath(name))),
    listQueues: async (vhost) =>
      ((await management(target, 'GET', `/queues/${encodeURIComponent(vhost)}?columns=name`)) as Array<{ name: string }>)
        .map((q) => q.name)
        .sort(),
    setPermissions: async (vhost, user, configure, write, read) =>
      void (await management(target, 'PUT', `/permissions/${encodeURIComponent(vhost)}/${encodeURIComponent(user)}`, {
        configure,
        write,
        read,
      })),
    addUser: async (name, password) => void (await management(target, 'PUT', `/users/${encodeURIComponent(name)}`, { password, tags: '' })),
    deleteUser: async (name) => void (await management(target, 'DELETE', `/users/${encodeURIComponent(name)}`)),
    closeAllConnections: async (reason) => {
      const connections = (await management(target, 'GET', '/connections?columns=name')) as Array<{ name: string }>;
      await Promise.all(
        // One that closed meanwhile answers 404, which is what was wanted.
        connections.map((c) =>
          management(target, 'DELETE', `/connections/${encodeURIComponent(c.name)}`, undefined, { 'x-reason': reason }),
        ),
      );
    },
    stop: async () => void (await compose('stop', 'rabbitmq')),
    start: async () => {
      await compose('start', 'rabbitmq');
      const deadline = Date.now() + 90_000;
      for (;;) {
        try {
          await management(target, 'GET', '/health/checks/port-listener/5672');
          return;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await sleep(1_000);
        }
      }
    },
  };
}

let chosen: Promise<BrokerControl> | undefined;

/** This machine's way to control the broker (chosen on first call, see the top of this file). */
export function brokerControl(): Promise<BrokerControl> {
  chosen ??= choose();
  return chosen;
}

async function choose(): Promise<BrokerControl> {
  const forced = process.env.BROKER_CONTROL?.trim();
  if (forced && forced !== 'rabbitmqctl' && forced !== 'management') {
    throw new BrokerControlUnavailableError(`BROKER_CONTROL must be rabbitmqctl or management, not '${forced}'`);
  }
  if (forced !== 'management') {
    // ping answers while the node runs, even with its app stopped by another suite for an outage test.
    const local = await run('rabbitmqctl', ['-q', 'ping'], { timeout: 30_000 }).then(
      () => true,
      () => false,
    );
    if (local || forced === 'rabbitmqctl') return viaRabbitmqctl;
  }
  const target = managementTarget(loadConfig({ AMQP_URL }));
  if (target.unknown) throw new BrokerControlUnavailableError(`no rabbitmqctl here, and ${target.unknown}`);
  try {
    await management(target, 'GET', '/overview');
  } catch (error) {
    throw new BrokerControlUnavailableError(
      `Cannot control the broker: rabbitmqctl does not answer here and the management API at ${target.url} does not either ` +
        `(${(error as Error).message}). Install RabbitMQ (rabbitmqctl), or run it with the management plugin (docker compose up -d).`,
    );
  }
  return viaManagement(target);
}
