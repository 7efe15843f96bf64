#!/usr/bin/env node
/**
 * `rabbitmq-trigger-worker` (this package's bin; `npm run worker` in rabbit-functions): the standalone runner.
 * Feeds the queue functions of serverless.yml from RabbitMQ with the handlers bundled and imported in this process, for throughput and for scaling out: start several
 * workers, on several machines, against one RabbitMQ cluster (AMQP_URLS) and one database.
 *
 *   rabbitmq-trigger-worker [--functions a,b] [--concurrency N] [--stage local] [--service-dir .]
 *
 * Settings as the serverless-offline plugin reads them: `custom.rabbitmqTrigger` of serverless.yml (its
 * `hooks` module too), the broker from AMQP_URL / AMQP_URLS, LOG_LEVEL; metrics for Prometheus on METRICS_PORT
 * (default 9464, `off`: none). A definition AWS would refuse (a batch
 * size or window out of range, a filter pattern) stops it before it connects, with AWS's message. While it
 * runs, its mappings' state is in the service's status directory, for `npm run status`.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadService, TriggerDefinitionError, triggersFromFunctions } from './definitions.js';
import { bundledHandlerLoader, InProcessInvoker } from './invokers.js';
import { UsageError } from './lib/usage-error.js';
import { metricsPort } from './metrics.js';
import { Runner } from './runner.js';
import { brokerUrls, createRunnerLogger, loadHooks, localTriggers, statusDirectory, triggerSettings } from './settings.js';

const usage = `Usage: rabbitmq-trigger-worker [--functions name,name] [--concurrency N] [--stage STAGE] [--service-dir DIR]

Runs the RabbitMQ triggers of serverless.yml's functions in this process.
  --functions    only these functions (keys from functions/*.yml); default: custom.rabbitmqTrigger.functions, else
                 every function with a rabbitmq event
  --concurrency  invocations in flight per function (default: custom.rabbitmqTrigger.concurrency, else 1 as AWS)
  --stage        stage whose params to use (default: provider.stage of serverless.yml)
  --service-dir  directory holding serverless.yml (default: current directory)`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      functions: { type: 'string' },
      concurrency: { type: 'string' },
      stage: { type: 'string' },
      'service-dir': { type: 'string', default: '.' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  const serviceDir = resolve(values['service-dir']);
  const service = loadService(serviceDir, values.stage ? { stage: values.stage } : {});
  const settings = triggerSettings(service.custom);
  const concurrency = values.concurrency === undefined ? (settings.concurrency ?? 1) : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new UsageError(`--concurrency must be a positive integer, got '${values.concurrency}'`);

  let triggers = localTriggers(triggersFromFunctions(service.functions, service.info), settings);
  const wanted =
    values.functions
      ?.split(',')
      .map((name) => name.trim())
      .filter(Boolean) ?? settings.functions;
  if (wanted) {
    const known = new Set(triggers.map((t) => t.functionKey));
    const unknown = wanted.filter((name) => !known.has(name));
    if (unknown.length) {
      throw new UsageError(`Unknown queue function(s): ${unknown.join(', ')}. Queue functions here: ${[...known].join(', ') || 'none'}`);
    }
    triggers = triggers.filter((t) => wanted.includes(t.functionKey));
  }
  if (triggers.length === 0) throw new UsageError('No enabled function with a rabbitmq event to run');
  const metrics = metricsPort(process.env);

  const logger = createRunnerLogger({ level: process.env.LOG_LEVEL, service: `${service.info.service}-worker` });
  const runner = new Runner({
    urls: brokerUrls(process.env),
    triggers,
    invoker: new InProcessInvoker(bundledHandlerLoader(serviceDir)),
    logger,
    concurrency,
    connectionName: `${service.info.service}-worker-${process.pid}`,
    ...(settings.deadLetterExchange ? { deadLetterExchange: settings.deadLetterExchange } : {}),
    hooks: await loadHooks(serviceDir, settings.hooks),
    ...(metrics !== undefined ? { metricsPort: metrics } : {}),
    statusFile: {
      directory: statusDirectory(serviceDir, settings),
      label: 'worker',
      service: service.info.service,
      stage: service.info.stage,
    },
  });

  let signals = 0;
  const shutdown = (signal: string) => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now; unacknowledged messages return to their queues');
      process.exit(130);
    }
    logger.info({ signal }, 'shutting down: finishing batches in flight');
    runner.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // A stray rejection in a handler must not take the worker down with every other function.
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));
  await runner.start();
}

main().catch((error: unknown) => {
  if (error instanceof UsageError || error instanceof TriggerDefinitionError) {
    console.error(`worker: ${error.message}`);
    if (error instanceof UsageError) console.error(`\n${usage}`);
    process.exit(2);
  }
  console.error(`worker: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
