/**
 * `npm start`: the whole system on this machine in one command.
 *
 * 1. Checks the configuration (a bad variable stops here, named).
 * 2. Finds RabbitMQ at AMQP_URL / AMQP_URLS. If nothing answers and the address is this machine, starts it:
 *    `docker compose up -d rabbitmq` where a Docker engine answers, else `rabbitmq-server -detached` where it
 *    is installed; then waits for it. Otherwise stops and says what to do.
 * 3. Declares the topology (exchanges, queues, DLQs, retry queues, parking lot).
 * 4. Runs `serverless offline start` as a child with its output on this terminal: the HTTP functions on
 *    HTTP_PORT (3000) and the queue functions fed from RabbitMQ. Code changes rebuild and reload by themselves.
 * 5. Prints the URLs and a curl line to place an order and to read it back.
 * Ctrl-C or SIGTERM: the signal goes to serverless offline, which finishes the batches in flight and exits;
 * then this exits. A second Ctrl-C kills it at once. A RabbitMQ started here keeps running.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  loadService,
  metricsPort,
  type TriggerDefinition,
  TriggerDefinitionError,
  triggersFromFunctions,
} from 'serverless-offline-rabbitmq';
import { type Config, ConfigError, loadConfig, redactUrl } from '../shared/config';
import { Broker, declareTopology, TopologyMismatchError, topologyOptions } from '../shared/messaging';
import { managementTarget, probeManagement } from './lib/management';

const root = fileURLToPath(new URL('..', import.meta.url));
const BROKER_WAIT_SECONDS = 120;
const OFFLINE_READY_SECONDS = 180;
const TRIGGERS_READY_SECONDS = 30;
const STOP_GRACE_SECONDS = 40;

/** Stops `npm start` with a message for the user and an exit code; no stack trace. */
class StartError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

const say = (message: string) => console.log(`[start] ${message}`);

type Probe = { ok: true } | { ok: false; refused: boolean; reason: string };

/** Connects once to each broker URL and declares the topology; says whether nothing answered or it refused us. */
async function connectAndDeclare(cfg: Config): Promise<Probe> {
  const broker = new Broker({
    urls: cfg.amqpUrls,
    connectionName: `${cfg.serviceName}-start`,
    maxAttempts: cfg.amqpUrls.length,
    initialBackoffMs: 100,
  });
  try {
    const connection = await broker.connect();
    await declareTopology(connection, topologyOptions(cfg));
    return { ok: true };
  } catch (error) {
    if (error instanceof TopologyMismatchError) throw new StartError(error.message);
    const reason = (error as Error).message;
    // The broker answered but will not let us in (credentials, virtual host): starting another will not help.
    const refused = /ACCESS.REFUSED|NOT.ALLOWED/.test(reason);
    return { ok: false, refused, reason };
  } finally {
    await broker.close();
  }
}

const isLocalHost = (host: string) => /^(localhost|127\.\d+\.\d+\.\d+|\[?::1\]?|0\.0\.0\.0)$/i.test(host);

const commandExists = (command: string) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

function dockerEngineAnswers(): boolean {
  if (!commandExists('docker')) return false;
  return spawnSync('docker', ['info'], { stdio: 'ignore', timeout: 20_000 }).status === 0;
}

/** Starts a local RabbitMQ for the first broker URL; returns how it was started, for the goodbye message. */
function startLocalBroker(url: URL): { how: string; stop: string } {
  const port = url.port || '5672';
  const user = decodeURIComponent(url.username) || 'guest';
  const password = decodeURIComponent(url.password) || 'guest';
  if (dockerEngineAnswers()) {
    say(`RabbitMQ is not running: starting it with docker compose (port ${port}, user ${user})`);
    const result = spawnSync('docker', ['compose', 'up', '-d', 'rabbitmq'], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, RABBITMQ_PORT: port, RABBITMQ_USER: user, RABBITMQ_PASSWORD: password },
    });
    if (result.status !== 0) throw new StartError('`docker compose up -d rabbitmq` failed (see its output above).');
    return { how: 'docker compose', stop: 'docker compose stop rabbitmq' };
  }
  if (commandExists('rabbitmq-server')) {
    say(`RabbitMQ is not running and no Docker engine answers: starting the installed rabbitmq-server (port ${port})`);
    const result = spawnSync('rabbitmq-server', ['-detached'], {
      stdio: 'inherit',
      env: { ...process.env, ...(port !== '5672' ? { RABBITMQ_NODE_PORT: port } : {}) },
    });
    if (result.status !== 0) {
      throw new StartError(
        '`rabbitmq-server -detached` failed (see its output above). It may need to run as root or as the rabbitmq user: ' +
          'try `sudo systemctl start rabbitmq-server` (Linux) or `brew services start rabbitmq` (macOS), then `npm start` again.',
      );
    }
    return { how: 'rabbitmq-server -detached', stop: 'rabbitmqctl stop' };
  }
  throw new StartError(
    [
      `RabbitMQ is not running at ${redactUrl(url.toString())}, and npm start cannot start it here:`,
      '  no Docker engine answers (`docker info` failed) and rabbitmq-server is not installed. Do one of:',
      '  - start Docker (Docker Desktop, or `sudo systemctl start docker`) and run `npm start` again: it runs `docker compose up -d rabbitmq`;',
      '  - install RabbitMQ (`sudo apt-get install rabbitmq-server`, `brew install rabbitmq`) and run `npm start` again;',
      '  - or point AMQP_URL at a RabbitMQ that runs elsewhere.',
    ].join('\n'),
  );
}

/** Makes sure RabbitMQ answers with the topology declared, starting it if it is local and down. */
async function ensureBroker(cfg: Config, stopping: () => boolean): Promise<{ started?: { how: string; stop: string } }> {
  const where = cfg.amqpUrls.map(redactUrl).join(', ');
  const first = await connectAndDeclare(cfg);
  if (first.ok) {
    say(`RabbitMQ answers at ${where}; topology declared`);
    return {};
  }
  if (first.refused)
    throw new StartError(
      `RabbitMQ at ${where} refused the connection: ${first.reason}\nCheck the user, password and virtual host in AMQP_URL.`,
    );
  const url = new URL(cfg.amqpUrls[0]!);
  if (!isLocalHost(url.hostname)) {
    throw new StartError(
      `${first.reason}\nThat broker is not on this machine, so npm start does not start one: check that it runs and that AMQP_URL is right.`,
    );
  }
  const started = startLocalBroker(url);
  say(`waiting up to ${BROKER_WAIT_SECONDS} s for RabbitMQ at ${where}`);
  const began = Date.now();
  let last: Probe = first;
  while (Date.now() - began < BROKER_WAIT_SECONDS * 1000) {
    if (stopping()) throw new StartError('Interrupted while waiting for RabbitMQ.', 130);
    await sleep(1_000);
    last = await connectAndDeclare(cfg);
    if (last.ok) {
      say(`RabbitMQ is up after ${Math.round((Date.now() - began) / 1000)} s (${started.how}); topology declared`);
      return { started };
    }
    if (last.refused) break;
  }
  throw new StartError(`RabbitMQ did not come up at ${where}: ${last.ok ? '' : last.reason}`);
}

/** Throws naming the port when something already listens on it. */
async function ensurePortFree(port: number, setting: string): Promise<void> {
  await new Promise<void>((resolvePromise, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new StartError(
          error.code === 'EADDRINUSE'
            ? `Port ${port} is in use (another npm start or serverless offline?). Stop it, or pick another port with ${setting}=<port>.`
            : `Cannot listen on port ${port} (${setting}): ${error.message}`,
        ),
      ),
    );
    server.listen(port, () => server.close(() => resolvePromise()));
  });
}

function portSetting(name: 'HTTP_PORT' | 'LAMBDA_PORT', fallback: number): number {
  const raw = process.env[name]?.trim();
  if (!raw) return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new StartError(`Invalid configuration: ${name} must be a port number, got '${raw}'`, 2);
  return port;
}

/** Resolves once the HTTP API answers (any status); rejects if serverless offline exits first or takes too long. */
async function waitForHttp(apiUrl: string, child: ChildProcess, stopping: () => boolean): Promise<void> {
  const began = Date.now();
  while (Date.now() - began < OFFLINE_READY_SECONDS * 1000) {
    if (child.exitCode !== null || child.signalCode !== null || stopping()) return;
    try {
      const response = await fetch(`${apiUrl}/health`, { signal: AbortSignal.timeout(5_000) });
      await response.body?.cancel();
      return;
    } catch {
      await sleep(500);
    }
  }
  throw new StartError(`serverless offline did not serve ${apiUrl} within ${OFFLINE_READY_SECONDS} s (see its output above).`);
}

/** The queue triggers serverless offline runs: functions/*.yml's enabled rabbitmq events. */
function queueTriggers(): TriggerDefinition[] {
  const { info, functions } = loadService(root);
  return triggersFromFunctions(functions, info).filter((trigger) => trigger.enabled);
}

/**
 * Resolves true once every trigger queue has a consumer (the RabbitMQ triggers are running, and with them
 * serverless offline's own signal handling), false if that takes too long or serverless offline ends.
 */
async function waitForConsumers(cfg: Config, queues: readonly string[], child: ChildProcess, stopping: () => boolean): Promise<boolean> {
  const broker = new Broker({
    urls: cfg.amqpUrls,
    connectionName: `${cfg.serviceName}-start`,
    maxAttempts: cfg.amqpUrls.length,
    initialBackoffMs: 100,
  });
  const began = Date.now();
  try {
    const channel = await broker.createChannel();
    channel.on('error', () => undefined);
    while (Date.now() - began < TRIGGERS_READY_SECONDS * 1000) {
      if (child.exitCode !== null || child.signalCode !== null || stopping()) return false;
      const counts = await Promise.all(queues.map(async (queue) => (await channel.checkQueue(queue)).consumerCount));
      if (counts.every((count) => count > 0)) return true;
      await sleep(250);
    }
    return false;
  } catch {
    return false;
  } finally {
    await broker.close();
  }
}

/** METRICS_PORT as the runner reads it (default 9464, `off`: none); a bad value stops npm start naming it. */
function metricsSetting(): number | undefined {
  try {
    return metricsPort(process.env);
  } catch (error) {
    if (error instanceof TriggerDefinitionError) throw new StartError(`Invalid configuration: ${error.message}`, 2);
    throw error;
  }
}

/** The banner's metrics line: the URL once the runner's endpoint answers there, else why not. */
async function metricsLine(port: number | undefined): Promise<string> {
  if (port === undefined) return 'off (METRICS_PORT=off)';
  const url = `http://localhost:${port}/metrics`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    const text = await response.text();
    if (response.ok && text.includes('rabbitmq_trigger_')) return `${url} (Prometheus text: the triggers' counts per function and queue)`;
  } catch {
    // not answering
  }
  return `not served at ${url}: the port is taken (another runner?); set METRICS_PORT=<port>`;
}

function banner(cfg: Config, apiUrl: string, management: string, triggers: string, metrics: string): string {
  const database = cfg.databaseUrl ? `PostgreSQL at ${redactUrl(cfg.databaseUrl)}` : `SQLite at ${resolve(cfg.sqlitePath)}`;
  // The reference system's own example order, reserved from the seeded campus menu.
  const order = `{"user_id":"user123","item":"Burger","quantity":2}`;
  return [
    '',
    '------------------------------------------------------------------------------------------',
    'rabbit-functions is running (stage local)',
    `  API            ${apiUrl}`,
    `  Console        ${apiUrl}/console  (${cfg.adminToken ? 'sign in with ADMIN_TOKEN' : 'set ADMIN_TOKEN to sign in: admin is off without it'})`,
    `  Queue triggers ${triggers}`,
    `  Metrics        ${metrics}`,
    `  RabbitMQ       ${cfg.amqpUrls.map(redactUrl).join(', ')}`,
    `  Management UI  ${management}`,
    `  Database       ${database}`,
    '',
    'Place an order:',
    `  curl -s -X POST ${apiUrl}/order -H 'content-type: application/json' -d '${order}'`,
    'Read it back (order_id from the answer):',
    `  curl -s ${apiUrl}/orders/<order_id>`,
    'Queues and dead letters: npm run status.  Code changes reload by themselves.  Stop: Ctrl-C',
    '------------------------------------------------------------------------------------------',
    '',
  ].join('\n');
}

async function main(): Promise<number> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(
      'Usage: npm start   (settings from the environment: AMQP_URL, DATABASE_URL or SQLITE_PATH, HTTP_PORT, LAMBDA_PORT, METRICS_PORT, MANAGEMENT_URL, LOG_FORMAT, ...)',
    );
    return 0;
  }
  let signals = 0;
  let lastSignalAt = 0;
  let child: ChildProcess | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    // One Ctrl-C can arrive more than once (the terminal signals the whole process group, and npm and tsx
    // relay it): signals within a second count as one.
    if (Date.now() - lastSignalAt < 1_000) return;
    lastSignalAt = Date.now();
    signals++;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    if (signals === 1) {
      say(`${signal}: stopping serverless offline (it finishes the batches in flight; Ctrl-C again to kill it now)`);
      child.kill(signal);
    } else {
      say('second signal: killing serverless offline now; unacknowledged messages go back to their queues');
      child.kill('SIGKILL');
    }
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  const stopping = () => signals > 0;

  let cfg: Config;
  try {
    cfg = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError)
      throw new StartError(`${error.message}\nFix that variable (or unset it to use the default) and run npm start again.`, 2);
    throw error;
  }
  const httpPort = portSetting('HTTP_PORT', 3000);
  const lambdaPort = portSetting('LAMBDA_PORT', 3002);
  await ensurePortFree(httpPort, 'HTTP_PORT');
  await ensurePortFree(lambdaPort, 'LAMBDA_PORT');
  const metrics = metricsSetting();
  const { started } = await ensureBroker(cfg, stopping);
  if (stopping()) return 130;

  const apiUrl = `http://localhost:${httpPort}`;
  say('starting serverless offline (HTTP functions and the RabbitMQ triggers)');
  const current = spawn(process.execPath, [resolve(root, 'node_modules/osls/bin/serverless.js'), 'offline', 'start'], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, HTTP_PORT: String(httpPort), LAMBDA_PORT: String(lambdaPort) },
  });
  child = current;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    current.once('exit', (code, signal) => resolveExit({ code, signal })),
  );
  current.once('error', (error) => say(`could not run serverless offline: ${error.message}`));

  await waitForHttp(apiUrl, current, stopping);
  const triggers = queueTriggers();
  const consuming = await waitForConsumers(cfg, [...new Set(triggers.map((t) => t.queue))], current, stopping);
  if (current.exitCode === null && current.signalCode === null && !stopping()) {
    const routes = triggers.map((t) => `${t.queue} -> ${t.functionKey}`).join(', ');
    const triggerLine = consuming
      ? routes
      : `${routes}: NOT consuming after ${TRIGGERS_READY_SECONDS} s (see the output above; npm run status shows consumers)`;
    const target = managementTarget(cfg);
    const probe = await probeManagement(target);
    const management = probe.up
      ? `${target.url} (log in as ${target.username})`
      : target.unknown
        ? `${target.unknown}: set MANAGEMENT_URL (npm run status works without it)`
        : `not answering at ${target.url}: enable it with \`rabbitmq-plugins enable rabbitmq_management\` (the docker compose image has it); npm run status works without it`;
    console.log(banner(cfg, apiUrl, management, triggerLine, await metricsLine(metrics)));
  }

  // Wait for serverless offline to end: after our signal, or by itself. Bound the wait after a signal.
  const result = await Promise.race([
    exited,
    (async () => {
      while (!stopping()) await sleep(200);
      await sleep(STOP_GRACE_SECONDS * 1000);
      return 'timeout' as const;
    })(),
  ]);
  if (result === 'timeout') {
    say(`serverless offline did not stop within ${STOP_GRACE_SECONDS} s: killing it`);
    current.kill('SIGKILL');
    await exited;
    return 1;
  }
  const leftRunning = started ? ` RabbitMQ keeps running (${started.how}); \`${started.stop}\` stops it.` : '';
  if (stopping()) {
    const clean = result.code === 0 || result.signal === 'SIGINT' || result.signal === 'SIGTERM';
    say(clean ? `stopped.${leftRunning}` : `serverless offline ended with ${result.signal ?? `exit code ${result.code}`}.${leftRunning}`);
    return clean ? 0 : 1;
  }
  say(`serverless offline exited by itself (${result.signal ?? `exit code ${result.code}`}); see its output above.${leftRunning}`);
  return result.code === 0 ? 1 : (result.code ?? 1);
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof StartError) {
      console.error(`[start] ${error.message}`);
      process.exit(error.exitCode);
    }
    // A setting AWS would refuse (a batch size out of range, a filter pattern it rejects): the message says which.
    if (error instanceof TriggerDefinitionError || error instanceof ConfigError) {
      console.error(`[start] ${error.message}`);
      process.exit(2);
    }
    console.error(`[start] failed: ${(error as Error)?.stack ?? String(error)}`);
    process.exit(1);
  },
);
