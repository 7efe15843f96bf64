/**
 * The RabbitMQ-trigger runner: Lambda's Amazon MQ trigger, locally. It owns one broker connection for the
 * process (topology declared on every connect, reconnection with backoff across several URLs) and one
 * QueueTrigger per enabled `rabbitmq` event. One trigger's failures never stop another.
 */
import type { Config } from '../config';
import { redactUrl } from '../config';
import type { Logger } from '../logging';
import { Broker } from '../messaging/connection';
import { Publisher } from '../messaging/publisher';
import { startOutboxRelay, type RelayStore, type StopRelay } from '../outbox';
import { declareTopology, WORK_QUEUES, type WorkQueue } from '../messaging/topology';
import { topologyOptions } from '../messaging';
import { localEventSourceArn } from '../rmq-event';
import type { TriggerDefinition } from './definitions';
import type { Invoker } from './invokers';
import { QueueTrigger } from './trigger';

export interface RunnerOptions {
  config: Config;
  triggers: readonly TriggerDefinition[];
  invoker: Invoker;
  logger: Logger;
  /** Invocations in flight per trigger (default 1, as on AWS). */
  concurrency?: number;
  /** Name shown for the connection in the management UI. */
  connectionName?: string;
  /**
   * Exchange the triggers dead-letter messages to that they cannot hand to a function (no `aws:rmq` form, too
   * large), with the queue's name as routing key; without it they are rejected to the queue's own DLX.
   */
  deadLetterExchange?: string;
  /**
   * Also run the outbox relay in this process: events that could not be published right after their commit
   * (broker down) go out from here once the broker is back. Every long-lived process should run one.
   */
  outbox?: { store: () => Promise<RelayStore> };
}

export class Runner {
  readonly broker: Broker;
  readonly triggers: QueueTrigger[];
  private readonly publisher: Publisher;
  private readonly log: Logger;
  private stopping: Promise<void> | undefined;
  private stopRelay: StopRelay | undefined;

  constructor(private readonly options: RunnerOptions) {
    const { config, logger } = options;
    this.log = logger.child({ component: 'runner' });
    this.broker = new Broker({ urls: config.amqpUrls, connectionName: options.connectionName ?? `${config.serviceName}-runner` });
    // Queues of functions outside the contract get the same work-queue treatment (DLQ, delivery limit).
    const known = new Set(WORK_QUEUES.map((queue) => queue.name));
    const extraQueues: WorkQueue[] = [...new Set(options.triggers.map((t) => t.queue))]
      .filter((name) => !known.has(name))
      .map((name) => ({ name, bindings: [] }));
    void this.broker.onConnect((connection) => declareTopology(connection, topologyOptions(config, extraQueues)).then(() => undefined));
    this.broker.on('connected', () => this.log.info('connected to RabbitMQ'));
    this.broker.on('disconnected', (error?: Error) => {
      if (this.stopping) return;
      this.log.warn({ err: error }, 'lost the RabbitMQ connection; reconnecting');
      // Triggers reconnect on their own as their channels close; this makes sure it happens even when idle.
      this.broker.connect().catch((e: unknown) => this.log.error({ err: e }, 'reconnect gave up'));
    });
    this.broker.on('connectFailed', ({ url, attempt, error }: { url: string; attempt: number; error: Error }) =>
      this.log.warn({ url, attempt, err: error }, 'could not connect to RabbitMQ'),
    );
    // One confirming publisher for the triggers' dead letters, on the runner's connection.
    this.publisher = new Publisher(this.broker);
    this.triggers = options.triggers
      .filter((trigger) => trigger.enabled)
      .map(
        (definition) =>
          new QueueTrigger(definition, this.broker, options.invoker, logger, {
            concurrency: options.concurrency ?? 1,
            eventSourceArn: definition.brokerArn ?? localEventSourceArn(),
            publisher: this.publisher,
            ...(options.deadLetterExchange ? { deadLetterExchange: options.deadLetterExchange } : {}),
          }),
      );
  }

  /** Connects and starts every trigger; resolves once each is consuming (or retrying in the background). */
  async start(): Promise<void> {
    const { config } = this.options;
    this.log.info(
      { brokers: config.amqpUrls.map(redactUrl), functions: this.triggers.map((t) => `${t.definition.functionKey}<-${t.definition.queue}`) },
      'starting RabbitMQ triggers',
    );
    await Promise.all([...this.triggers.map((trigger) => trigger.start()), this.startRelay()]);
  }

  private async startRelay(): Promise<void> {
    const { outbox, config } = this.options;
    if (!outbox || this.stopping) return;
    const store = await outbox.store();
    this.stopRelay = startOutboxRelay({
      store,
      publisher: new Publisher(this.broker),
      intervalMs: config.outboxRelayIntervalMs,
      logger: this.log.child({ component: 'outbox-relay' }),
    });
  }

  /** Stops every trigger (finishing or returning their batches), then closes the connection. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping RabbitMQ triggers');
      await Promise.allSettled(this.triggers.map((trigger) => trigger.stop()));
      await this.stopRelay?.();
      await this.publisher.close();
      await this.broker.close();
      this.log.info('stopped');
    })();
    return this.stopping;
  }
}
