/**
 * serverless-offline plugin: `serverless offline start` serves the HTTP functions and, through this plugin,
 * feeds the queue functions from RabbitMQ. Invocations go through serverless-offline's own Lambda API
 * (port 3002 by default), so its code reloading and worker isolation keep working.
 *
 * Settings: serverless.yml `custom.rabbitmqTrigger` (see settings.ts): `concurrency`, `functions`,
 * `deadLetterExchange`, `hooks`, `statusDir`, `localBatchingWindow`. The broker comes from the functions' environment (AMQP_URL /
 * AMQP_URLS); the triggers' counts are served for Prometheus on METRICS_PORT (default 9464, `off`: none). The
 * settings and the rabbitmq events are checked before serverless-offline starts anything: a definition AWS
 * would refuse stops `serverless offline start` with AWS's message, nothing served or consumed.
 */

import { checkRabbitmqLimits, type TriggerDefinition, TriggerDefinitionError, triggersFromFunctions } from './definitions.js';
import { OfflineInvoker } from './invokers.js';
import { metricsPort } from './metrics.js';
import { Runner, type RunnerHooks } from './runner.js';
import {
  brokerUrls,
  createRunnerLogger,
  loadHooks,
  localTriggers,
  statusDirectory,
  type TriggerSettings,
  triggerSettings,
} from './settings.js';

interface ServerlessLike {
  serviceDir?: string;
  /** `classes.Error` is ServerlessError: reported as a message, without a stack trace. */
  classes?: { Error?: new (message: string, code: string) => Error };
  config?: { servicePath?: string };
  service: {
    service: string;
    provider: { stage?: string; timeout?: number; memorySize?: number; environment?: Record<string, unknown> };
    custom?: Record<string, unknown>;
    getAllFunctions(): string[];
    getFunction(key: string): unknown;
  };
  getProvider(name: 'aws'): { getStage(): string };
}

export default class RabbitMQTriggerOfflinePlugin {
  readonly hooks: Record<string, () => Promise<void>>;
  private runner: Runner | undefined;
  private prepared: { settings: TriggerSettings; triggers: TriggerDefinition[]; metricsPort: number | undefined } | undefined;
  private hooksLoading: Promise<RunnerHooks> | undefined;

  constructor(
    private readonly serverless: ServerlessLike,
    private readonly cliOptions: Record<string, unknown> = {},
  ) {
    this.hooks = {
      // Before serverless-offline starts its servers: a definition AWS would refuse, or a hooks module that does not
      // load, stops everything here (once the servers listen, an error no longer ends the process). Loading the
      // hooks here (TypeScript through tsx: about half a second of CPU) also keeps that work away from the first
      // requests' cold starts.
      'before:offline:start:init': () =>
        this.asUserError(async () => {
          this.prepare();
          await this.loadHooks();
        }),
      // After every init hook: serverless-offline's Lambda API is listening by then.
      'offline:start:ready': () => this.start(),
      // Before serverless-offline's own end hook, so batches in flight can still finish.
      'offline:start:end': () => this.stop(),
    };
  }

  /**
   * Runs (through the .mjs shim) before osls checks the configuration against its schema, so a batch size or
   * window AWS would refuse (out of range, or not whole seconds) is refused with AWS's message rather than
   * osls's, or rather than by CloudFormation at deploy time: for `serverless offline`, `package` and `deploy`.
   */
  async asyncInit(): Promise<void> {
    const { service } = this.serverless;
    await this.asUserError(() =>
      checkRabbitmqLimits(Object.fromEntries(service.getAllFunctions().map((key) => [key, service.getFunction(key)]))),
    );
  }

  /** Runs `check`, turning a TriggerDefinitionError into the Framework's user error (its message, no stack trace). */
  private async asUserError<T>(check: () => T | Promise<T>): Promise<T> {
    try {
      return await check();
    } catch (error) {
      const UserError = this.serverless.classes?.Error;
      if (error instanceof TriggerDefinitionError && UserError) throw new UserError(error.message, 'RABBITMQ_TRIGGER_DEFINITION');
      throw error;
    }
  }

  private serviceDir(): string {
    return this.serverless.serviceDir ?? this.serverless.config?.servicePath ?? process.cwd();
  }

  /** The functions' environment, as they see it: the process's, then provider.environment. */
  private environment(): NodeJS.ProcessEnv {
    const environment = Object.fromEntries(
      Object.entries(this.serverless.service.provider.environment ?? {}).filter(([, v]) => typeof v === 'string') as Array<
        [string, string]
      >,
    );
    return { ...process.env, ...environment };
  }

  /** The settings and the enabled functions' triggers, checked (TriggerDefinitionError names what is wrong). */
  private prepare(): { settings: TriggerSettings; triggers: TriggerDefinition[]; metricsPort: number | undefined } {
    if (this.prepared) return this.prepared;
    const { service } = this.serverless;
    const settings = triggerSettings(service.custom);
    const functions = Object.fromEntries(service.getAllFunctions().map((key) => [key, service.getFunction(key)]));
    let triggers = localTriggers(
      triggersFromFunctions(functions, {
        service: service.service,
        stage: this.serverless.getProvider('aws').getStage(),
        ...(service.provider.timeout ? { timeout: service.provider.timeout } : {}),
        ...(service.provider.memorySize ? { memorySize: service.provider.memorySize } : {}),
      }),
      settings,
    );
    if (settings.functions) triggers = triggers.filter((t) => settings.functions!.includes(t.functionKey));
    this.prepared = { settings, triggers, metricsPort: metricsPort(this.environment()) };
    return this.prepared;
  }

  private async start(): Promise<void> {
    const { service } = this.serverless;
    const { settings, triggers, metricsPort: metrics } = this.prepare();
    const offline = (service.custom?.['serverless-offline'] ?? {}) as { lambdaPort?: number | string; host?: string };
    const lambdaPort = this.cliOptions.lambdaPort ?? offline.lambdaPort ?? 3002;
    const host = String(this.cliOptions.host ?? offline.host ?? 'localhost');
    const serviceDir = this.serviceDir();

    const env = this.environment();
    const logger = createRunnerLogger({ level: env.LOG_LEVEL, service: `${service.service}-runner`, env });

    if (triggers.length === 0) return;

    this.runner = new Runner({
      urls: brokerUrls(env),
      triggers,
      invoker: new OfflineInvoker({ endpoint: `http://${host}:${lambdaPort}` }),
      logger,
      concurrency: settings.concurrency ?? 1,
      connectionName: `${service.service}-offline-runner`,
      ...(settings.deadLetterExchange ? { deadLetterExchange: settings.deadLetterExchange } : {}),
      hooks: await this.loadHooks(),
      env,
      ...(metrics !== undefined ? { metricsPort: metrics } : {}),
      statusFile: {
        directory: statusDirectory(serviceDir, settings),
        label: 'serverless-offline',
        service: service.service,
        stage: this.serverless.getProvider('aws').getStage(),
      },
    });
    // Not awaited: HTTP functions are served even while the broker is still coming up.
    this.runner.start().catch((error: unknown) => logger.error({ err: error }, 'RabbitMQ triggers failed to start'));
  }

  /** The hooks module named by `custom.rabbitmqTrigger.hooks`, loaded once (before the servers start). */
  private loadHooks(): Promise<RunnerHooks> {
    this.hooksLoading ??= loadHooks(this.serviceDir(), this.prepare().settings.hooks);
    return this.hooksLoading;
  }

  private async stop(): Promise<void> {
    await this.runner?.stop();
  }
}
