/**
 * The RabbitMQ-trigger runner: Lambda's Amazon MQ trigger, locally. It owns one broker connection for the
 * process (reconnection with backoff across several URLs) and one QueueTrigger per enabled `rabbitmq`
 * event. One trigger's failures never stop another.
 *
 * It knows nothing of the service it runs: no exchanges, no database. A service plugs in through hooks
 * (see RunnerHooks): what to declare on every connection, and background tasks to run beside the triggers.
 *
 * A broker that refuses the login (EVENT_SOURCE_AUTHN_ERROR) or the virtual host (EVENT_SOURCE_AUTHZ_ERROR)
 * stops every trigger (State Failed) and the reconnecting, as AWS stops the consumer: retrying would not
 * change its mind. With `statusFile`, the runner keeps a status file of its mappings for `npm run status`; with
 * `metricsPort`, it serves their counts and their functions' metrics for Prometheus (metrics.ts).
 */
import type { ChannelModel } from 'amqplib';
import { localEventSourceArn } from 'middy-rabbitmq';
import { Broker, Publisher, redactUrl } from 'middy-rabbitmq/amqp';
import type { Logger } from 'pino';
import type { TriggerDefinition } from './definitions.js';
import type { Invoker } from './invokers.js';
import { type BrokerRefusal, classifyConnectError, disabledMapping, type EventSourceMappingStatus } from './mapping.js';
import { type MetricsServer, serveMetrics } from './metrics.js';
import { pruneRunnerStatus, RunnerStatusFile, STATUS_REFRESH_MS } from './status-file.js';
import { QueueTrigger } from './trigger.js';

/** What a hook is given. */
export interface HookContext {
  /** The enabled triggers this runner feeds. */
  triggers: readonly TriggerDefinition[];
  broker: Broker;
  logger: Logger;
  /** The functions' environment (the process's plus provider.environment under serverless-offline). */
  env: Readonly<Record<string, string | undefined>>;
}

/** How a service plugs into the runner (`custom.rabbitmqTrigger.hooks` names a module exporting these). */
export interface RunnerHooks {
  /** Runs after every (re)connection, before the triggers consume: declare the queues they read, for instance. */
  onConnect?(connection: ChannelModel, context: HookContext): Promise<void>;
  /** Starts a long-running task beside the triggers (an outbox relay, say); returns how to stop it. */
  background?(context: HookContext): Promise<() => Promise<void>>;
}

export interface RunnerOptions {
  /** Broker URLs, tried in turn (a cluster's nodes). */
  urls: readonly string[];
  triggers: readonly TriggerDefinition[];
  invoker: Invoker;
  logger: Logger;
  /** Invocations in flight per trigger (default 1, as on AWS). */
  concurrency?: number;
  /** Name shown for the connection in the management UI (default rabbitmq-trigger). */
  connectionName?: string;
  /**
   * Exchange the triggers dead-letter messages to that they cannot hand to a function (no `aws:rmq` form, too
   * large), with the queue's name as routing key; without it they are rejected to the queue's own DLX.
   */
  deadLetterExchange?: string;
  hooks?: RunnerHooks;
  /** The functions' environment, handed to the hooks (default: this process's). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Wait before a failed batch is requeued: first and cap, doubling per failure in a row (defaults 100 ms, 5 s). */
  requeueDelayMs?: number;
  maxRequeueDelayMs?: number;
  /**
   * Keep a status file of this process's mappings in `directory` (see status-file.ts), named by pid; `label`
   * says what runs them (worker, serverless-offline).
   */
  statusFile?: { directory: string; label: string; service?: string; stage?: string };
  /** Serve the mappings' counts for Prometheus on this port (`GET /metrics`, see metrics.ts; 0: any free port). */
  metricsPort?: number;
}

export class Runner {
  readonly broker: Broker;
  readonly triggers: QueueTrigger[];
  private readonly publisher: Publisher;
  private readonly log: Logger;
  private readonly context: HookContext;
  private stopping: Promise<void> | undefined;
  private readonly stopBackground: Array<() => Promise<void>> = [];
  /** Why the broker refused us for good, once it has (then nothing reconnects). */
  private refused: BrokerRefusal | undefined;
  private readonly disabled: readonly TriggerDefinition[];
  private readonly createdAt = new Date();
  private readonly statusFile: RunnerStatusFile | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private metrics: Promise<MetricsServer | undefined> | undefined;

  constructor(private readonly options: RunnerOptions) {
    const { logger, hooks } = options;
    this.log = logger.child({ component: 'runner' });
    this.broker = new Broker({ urls: options.urls, connectionName: options.connectionName ?? 'rabbitmq-trigger' });
    const enabled = options.triggers.filter((trigger) => trigger.enabled);
    this.disabled = options.triggers.filter((trigger) => !trigger.enabled);
    this.statusFile = options.statusFile ? new RunnerStatusFile(options.statusFile.directory) : undefined;
    this.context = { triggers: enabled, broker: this.broker, logger, env: options.env ?? process.env };
    if (hooks?.onConnect) {
      const onConnect = hooks.onConnect.bind(hooks);
      void this.broker.onConnect((connection) => onConnect(connection, this.context));
    }
    this.broker.on('connected', () => this.log.info('connected to RabbitMQ'));
    this.broker.on('disconnected', (error?: Error) => {
      if (this.stopping || this.refused) return;
      this.log.warn({ err: error }, 'lost the RabbitMQ connection; reconnecting');
      // Triggers reconnect on their own as their channels close; this makes sure it happens even when idle.
      this.broker.connect().catch((e: unknown) => this.log.error({ err: e }, 'reconnect gave up'));
    });
    this.broker.on('connectFailed', ({ url, attempt, error }: { url: string; attempt: number; error: Error }) => {
      if (this.refused || this.stopping) return;
      this.log.warn({ url, attempt, err: error }, 'could not connect to RabbitMQ');
      const refusal = classifyConnectError(error, url);
      if (refusal) return void this.refuse(refusal);
      for (const trigger of this.triggers) trigger.reportResult({ problem: `Connection error: ${error.message}` });
    });
    // One confirming publisher for the triggers' dead letters, on the runner's connection.
    this.publisher = new Publisher(this.broker);
    this.triggers = enabled.map(
      (definition) =>
        new QueueTrigger(definition, this.broker, options.invoker, logger, {
          concurrency: options.concurrency ?? 1,
          eventSourceArn: definition.brokerArn ?? localEventSourceArn(),
          publisher: this.publisher,
          ...(options.deadLetterExchange ? { deadLetterExchange: options.deadLetterExchange } : {}),
          ...(options.requeueDelayMs !== undefined ? { requeueDelayMs: options.requeueDelayMs } : {}),
          ...(options.maxRequeueDelayMs !== undefined ? { maxRequeueDelayMs: options.maxRequeueDelayMs } : {}),
          onChange: (_trigger, what) => {
            if (what === 'state') this.writeStatus();
          },
        }),
    );
  }

  /** Every mapping of this runner, as AWS lists them (ListEventSourceMappings), disabled ones included. */
  mappings(): EventSourceMappingStatus[] {
    return [
      ...this.triggers.map((trigger) => trigger.describe()),
      ...this.disabled.map((definition) => disabledMapping(definition, definition.brokerArn ?? localEventSourceArn(), this.createdAt)),
    ];
  }

  /**
   * The broker refused us for good: every trigger fails with its code and the reconnecting stops, as AWS stops
   * the consumer. Background tasks keep running (they see a closed broker).
   */
  private async refuse(refusal: BrokerRefusal): Promise<void> {
    this.refused = refusal;
    this.log.error(
      { StateTransitionReason: refusal.reason, detail: refusal.detail },
      'RabbitMQ refused the runner for good: every trigger stops (Failed); fix the broker URL or the user and restart',
    );
    await Promise.allSettled(this.triggers.map((trigger) => trigger.fail(refusal.reason, refusal.detail)));
    await this.broker.close();
    this.writeStatus();
  }

  /** Rewrites this process's status file, if it keeps one; never throws. */
  private writeStatus(): void {
    if (!this.statusFile || !this.statusTimer) return;
    const { label, service, stage } = this.options.statusFile!;
    const broker = this.broker.status;
    const failure = this.statusFile.write({
      label,
      ...(service ? { service } : {}),
      ...(stage ? { stage } : {}),
      startedAt: this.createdAt.toISOString(),
      broker: {
        state: broker.state,
        since: broker.since.toISOString(),
        ...(broker.lastError ? { lastError: broker.lastError.message } : {}),
      },
      EventSourceMappings: this.mappings(),
    });
    if (failure) this.log.debug({ err: failure, path: this.statusFile.path }, 'could not write the status file');
  }

  /** The metrics endpoint's URL once it listens; undefined without one (none asked for, or its port was taken). */
  async metricsUrl(): Promise<string | undefined> {
    const server = await this.metrics;
    return server ? `http://localhost:${server.port}/metrics` : undefined;
  }

  /** Connects and starts every trigger and background task; resolves once each is consuming (or retrying). */
  async start(): Promise<void> {
    if (this.options.metricsPort !== undefined && !this.metrics && !this.stopping) {
      this.metrics = serveMetrics({
        port: this.options.metricsPort,
        mappings: () => this.mappings(),
        functions: () =>
          this.triggers.map((trigger) => ({
            functionKey: trigger.definition.functionKey,
            queue: trigger.definition.queue,
            metrics: trigger.metrics,
          })),
        logger: this.log,
      });
      await this.metrics;
    }
    if (this.statusFile && !this.statusTimer && !this.stopping) {
      pruneRunnerStatus(this.options.statusFile!.directory);
      // Rewritten every few seconds (counts, results, broker) and at once on every state change.
      this.statusTimer = setInterval(() => this.writeStatus(), STATUS_REFRESH_MS);
      this.writeStatus();
    }
    this.log.info(
      {
        brokers: this.options.urls.map(redactUrl),
        functions: this.triggers.map((t) => `${t.definition.functionKey}<-${t.definition.queue}`),
      },
      'starting RabbitMQ triggers',
    );
    await Promise.all([...this.triggers.map((trigger) => trigger.start()), this.startBackground()]);
  }

  private async startBackground(): Promise<void> {
    const { hooks } = this.options;
    if (!hooks?.background || this.stopping) return;
    this.stopBackground.push(await hooks.background(this.context));
  }

  /** Stops every trigger (finishing or returning their batches) and background task, then closes the connection. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping RabbitMQ triggers');
      await Promise.allSettled(this.triggers.map((trigger) => trigger.stop()));
      await Promise.allSettled(this.stopBackground.map((stop) => stop()));
      await this.publisher.close();
      await this.broker.close();
      clearInterval(this.statusTimer);
      this.statusTimer = undefined;
      this.statusFile?.remove();
      await (await this.metrics)?.close();
      this.log.info('stopped');
    })();
    return this.stopping;
  }
}
