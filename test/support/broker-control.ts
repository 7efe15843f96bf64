/**
 * What the tests (and benches) that control the broker need of it (virtual hosts, users and permissions, a queue's
 * totals, closing connections, stopping and starting it), through whichever way this machine has, chosen once:
 * - `rabbitmqctl`, when RabbitMQ is installed here and answers it (CI, a Debian laptop);
 * - otherwise the management HTTP API (the broker URL's user, at MANAGEMENT_URL or port 15672 of its host), as on a
 *   laptop whose broker runs in Docker. It cannot stop a broker: stop and start go through `docker compose` for the
 *   service `rabbitmq` of this repository's docker-compose.yml when that runs it, else through `rabbitmqctl` when it
 *   answers (CI forcing this path), else fail saying so.
 * BROKER_CONTROL=rabbitmqctl or BROKER_CONTROL=management forces one. Nothing here skips: a suite that needs a
 * control this machine lacks fails with BrokerControlUnavailableError, which says what to install or run.
 *
 * Both ways see queue totals as of the queue's last metrics update (quorum queues and the management plugin both
 * refresh them every 5 s by default, so rabbitmqctl is no fresher there); the management API also lists a new
 * connection only after its first statistics (up to 5 s): see `closeConnections` and `closeAllConnections`.
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

/** A queue's messages as the broker counts them (see the top of this file for how fresh). */
interface QueueTotals {
  ready: number;
  unacked: number;
}

/** A client connection as the broker lists it. */
interface BrokerConnection {
  /** The broker's name for it, e.g. `127.0.0.1:38792 -> 127.0.0.1:5672`. */
  name: string;
  /** The name the client gave (amqplib's `clientProperties.connection_name`), if any. */
  clientName?: string;
  /** The client's port, as the broker sees it (behind a proxy: the proxy's). */
  peerPort: number;
}

/** Which connections `closeConnections` closes: those with this client-provided name, or from this client port. */
type ConnectionMatch = { clientName: string } | { peerPort: number };

export interface BrokerControl {
  /** How this machine's broker is controlled, for messages. */
  readonly via: 'rabbitmqctl' | 'management API';
  addVhost(name: string): Promise<void>;
  deleteVhost(name: string): Promise<void>;
  /** The names of the queues in a virtual host, sorted. */
  listQueues(vhost: string): Promise<string[]>;
  /** configure, write, read: regular expressions, as rabbitmqctl set_permissions takes them. */
  setPermissions(vhost: string, user: string, configure: string, write: string, read: string): Promise<void>;
  addUser(name: string, password: string): Promise<void>;
  deleteUser(name: string): Promise<void>;
  /** A queue's ready and unacknowledged messages; QueueNotFoundError when the vhost has no such queue. */
  queueTotals(vhost: string, queue: string): Promise<QueueTotals>;
  /** The client connections the broker lists (through the management API: only those older than its last statistics). */
  listConnections(): Promise<BrokerConnection[]>;
  /**
   * Closes the connections that match, with `reason` as the close reason the client sees, as an operator or a
   * network cut would. Waits (up to 15 s) until at least one is listed; resolves with how many it closed (0: none
   * was there).
   */
  closeConnections(match: ConnectionMatch, reason: string): Promise<number>;
  /** Closes every client connection open when called, as a broker restart or an operator would. */
  closeAllConnections(reason: string): Promise<void>;
  /** Stops the broker (its port refuses connections); `start` brings it back and resolves once it accepts them. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** Neither way to control the broker (or to do what was asked of it) works here; says what each needs. */
class BrokerControlUnavailableError extends Error {
  override readonly name = 'BrokerControlUnavailableError';
}

/** The virtual host has no queue of that name. */
class QueueNotFoundError extends Error {
  override readonly name = 'QueueNotFoundError';
  constructor(vhost: string, queue: string) {
    super(`no queue '${queue}' in virtual host '${vhost}'`);
  }
}

const matches = (connection: BrokerConnection, match: ConnectionMatch) =>
  'clientName' in match ? connection.clientName === match.clientName : connection.peerPort === match.peerPort;

/** Lists until a connection matches (or 15 s pass), then closes each match with `close`; how many it closed. */
async function closeMatching<C extends BrokerConnection>(
  list: () => Promise<C[]>,
  close: (connection: C) => Promise<void>,
  match: ConnectionMatch,
): Promise<number> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = (await list()).filter((c) => matches(c, match));
    if (found.length > 0) {
      await Promise.all(found.map(close));
      return found.length;
    }
    if (Date.now() > deadline) return 0;
    await sleep(250);
  }
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

/** rabbitmqctl's table output, one row of tab-separated columns a line. */
const rows = (text: string) =>
  text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => line.split('\t'));

/** Ready and unacknowledged messages of a queue, from `rabbitmqctl list_queues`. */
async function queueTotalsByRabbitmqctl(vhost: string, queue: string): Promise<QueueTotals> {
  const list = await rabbitmqctl('list_queues', '-p', vhost, '--no-table-headers', 'name', 'messages_ready', 'messages_unacknowledged');
  const row = rows(list).find(([name]) => name === queue);
  if (!row) throw new QueueNotFoundError(vhost, queue);
  return { ready: Number(row[1]), unacked: Number(row[2]) };
}

/** The connections with their pids (what close_connection takes), from `rabbitmqctl list_connections`. */
async function connectionsByRabbitmqctl(): Promise<Array<BrokerConnection & { pid: string }>> {
  // client_properties as JSON (its table form is an Erlang term); the pid only in the table form, which
  // close_connection takes (JSON prints it as #PID<...>). Both are keyed by the connection's unique name.
  const [table, json] = await Promise.all([
    rabbitmqctl('list_connections', '--no-table-headers', 'pid', 'name'),
    rabbitmqctl('list_connections', 'name', 'peer_port', 'client_properties', '--formatter', 'json'),
  ]);
  const pids = new Map(rows(table).map(([pid, name]) => [name!, pid!]));
  const listed = JSON.parse(json || '[]') as Array<{ name: string; peer_port: number; client_properties: unknown[] }>;
  return listed.flatMap((c) => {
    const pid = pids.get(c.name);
    if (!pid) return []; // opened between the two listings
    const property = c.client_properties.find((p) => Array.isArray(p) && p[0] === 'connection_name') as unknown[] | undefined;
    const clientName = typeof property?.[2] === 'string' ? property[2] : undefined;
    return [{ name: c.name, peerPort: c.peer_port, pid, ...(clientName === undefined ? {} : { clientName }) }];
  });
}

const stopByRabbitmqctl = async () => void (await run('rabbitmqctl', ['stop_app'], { timeout: 60_000 }));
async function startByRabbitmqctl(): Promise<void> {
  await run('rabbitmqctl', ['start_app'], { timeout: 60_000 });
  await run('rabbitmqctl', ['await_startup'], { timeout: 90_000 });
}

/** rabbitmqctl answers here (the node runs, even with its app stopped by another suite for an outage test). */
const rabbitmqctlAnswers = () =>
  run('rabbitmqctl', ['-q', 'ping'], { timeout: 30_000 }).then(
    () => true,
    () => false,
  );

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
  queueTotals: queueTotalsByRabbitmqctl,
  listConnections: async () => (await connectionsByRabbitmqctl()).map(({ pid: _pid, ...connection }) => connection),
  closeConnections: (match, reason) =>
    closeMatching(connectionsByRabbitmqctl, async (c) => void (await rabbitmqctl('close_connection', c.pid, reason)), match),
  closeAllConnections: async (reason) => void (await rabbitmqctl('close_all_connections', reason)),
  stop: stopByRabbitmqctl,
  start: startByRabbitmqctl,
};

/** The management API answered a call with an error status. */
class ManagementStatusError extends Error {
  override readonly name = 'ManagementStatusError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

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
    throw new ManagementStatusError(`management API ${method} ${path}: ${response.status} ${text}`, response.status);
  }
  return text ? (JSON.parse(text) as unknown) : undefined;
}

/**
 * How long the management API may take to list a connection opened just before (the management plugin's
 * collect_statistics_interval, 5 s by default, measured at 5.0 s here), with a margin.
 */
const MANAGEMENT_STATS_LAG_MS = 6_000;

const compose = (...args: string[]) => run('docker', ['compose', ...args], { cwd: root, timeout: 120_000 });

/** This repository's docker-compose.yml runs the broker here (a Docker engine answers and its `rabbitmq` runs). */
const composeRunsBroker = () =>
  compose('ps', '--status', 'running', '--quiet', 'rabbitmq').then(
    ({ stdout }) => stdout.trim() !== '',
    () => false,
  );

interface ManagementConnection {
  name: string;
  peer_port: number;
  connected_at?: number;
  user_provided_name?: string;
  client_properties?: { connection_name?: unknown };
}

function viaManagement(target: ManagementTarget): BrokerControl {
  const vhostPath = (name: string) => `/vhosts/${encodeURIComponent(name)}`;
  const connections = async () =>
    (await management(
      target,
      'GET',
      '/connections?columns=name,peer_port,connected_at,user_provided_name,client_properties',
    )) as ManagementConnection[];
  const asConnection = (c: ManagementConnection): BrokerConnection => {
    const clientName = c.user_provided_name ?? c.client_properties?.connection_name;
    return { name: c.name, peerPort: c.peer_port, ...(typeof clientName === 'string' ? { clientName } : {}) };
  };
  const close = (name: string, reason: string) =>
    // One that closed meanwhile answers 404, which is what was wanted.
    management(target, 'DELETE', `/connections/${encodeURIComponent(name)}`, undefined, { 'x-reason': reason });

  /** Stop and start: `docker compose` where it runs this broker, else rabbitmqctl where it answers, chosen on first use. */
  let stopStart: Promise<{ stop(): Promise<void>; start(): Promise<void> }> | undefined;
  const chooseStopStart = async () => {
    if (await composeRunsBroker()) {
      return {
        stop: async () => void (await compose('stop', 'rabbitmq')),
        start: async () => {
          await compose('start', 'rabbitmq');
          await untilAccepting(target);
        },
      };
    }
    if (await rabbitmqctlAnswers()) return { stop: stopByRabbitmqctl, start: startByRabbitmqctl };
    throw new BrokerControlUnavailableError(
      'Cannot stop and start the broker: the management API cannot, `docker compose` does not run the service rabbitmq of ' +
        `this repository's docker-compose.yml here, and rabbitmqctl does not answer. Run the broker with \`docker compose up -d\` ` +
        '(in this repository), or install RabbitMQ on this machine.',
    );
  };

  return {
    via: 'management API',
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
    queueTotals: async (vhost, queue) => {
      const path = `/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}?columns=messages_ready,messages_unacknowledged`;
      // A queue declared moments ago is listed without figures until its first statistics.
      const deadline = Date.now() + 3 * MANAGEMENT_STATS_LAG_MS;
      for (;;) {
        let totals: { messages_ready?: number; messages_unacknowledged?: number };
        try {
          totals = (await management(target, 'GET', path)) as typeof totals;
        } catch (error) {
          if (error instanceof ManagementStatusError && error.status === 404) throw new QueueNotFoundError(vhost, queue);
          throw error;
        }
        const { messages_ready: ready, messages_unacknowledged: unacked } = totals;
        if (typeof ready === 'number' && typeof unacked === 'number') return { ready, unacked };
        if (Date.now() > deadline)
          throw new Error(`management API: no message totals for queue '${queue}' in '${vhost}' after ${3 * MANAGEMENT_STATS_LAG_MS} ms`);
        await sleep(500);
      }
    },
    listConnections: async () => (await connections()).map(asConnection),
    closeConnections: async (match, reason) =>
      closeMatching(
        async () => (await connections()).map(asConnection),
        async (c) => void (await close(c.name, reason)),
        match,
      ),
    closeAllConnections: async (reason) => {
      // A connection opened just before the call is listed only after the next statistics: keep looking for one
      // stats interval, closing what was open at the call (connected_at, the broker's clock: on this machine, or a
      // container on it) and sparing what clients reopen since.
      const calledAt = Date.now();
      const closed = new Set<string>();
      for (;;) {
        const open = (await connections()).filter((c) => !closed.has(c.name) && (c.connected_at ?? 0) <= calledAt);
        await Promise.all(open.map((c) => close(c.name, reason)));
        for (const c of open) closed.add(c.name);
        if (Date.now() - calledAt > MANAGEMENT_STATS_LAG_MS) return;
        await sleep(500);
      }
    },
    stop: async () => {
      stopStart ??= chooseStopStart();
      await (await stopStart).stop();
    },
    start: async () => {
      stopStart ??= chooseStopStart();
      await (await stopStart).start();
    },
  };
}

/** Resolves once the broker's AMQP port listens again (through the management API), for up to 90 s. */
async function untilAccepting(target: ManagementTarget): Promise<void> {
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
}

let chosen: Promise<BrokerControl> | undefined;

/** This machine's way to control the broker (chosen on first call, see the top of this file). */
export function brokerControl(): Promise<BrokerControl> {
  chosen ??= chooseBrokerControl();
  return chosen;
}

/** Chooses afresh with `env` (BROKER_CONTROL, MANAGEMENT_URL); BrokerControlUnavailableError when nothing works. */
export async function chooseBrokerControl(env: NodeJS.ProcessEnv = process.env): Promise<BrokerControl> {
  const forced = env.BROKER_CONTROL?.trim();
  if (forced && forced !== 'rabbitmqctl' && forced !== 'management') {
    throw new BrokerControlUnavailableError(`BROKER_CONTROL must be rabbitmqctl or management, not '${forced}'`);
  }
  if (forced !== 'management' && (forced === 'rabbitmqctl' || (await rabbitmqctlAnswers()))) return viaRabbitmqctl;
  const target = managementTarget(loadConfig({ AMQP_URL }), env);
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
