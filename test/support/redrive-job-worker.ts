/**
 * The DLQ redrive job function (handlers/dlq-redrive-job.ts) fed by the real RabbitMQ trigger in a process of
 * its own, on the queue JOB_QUEUE names: a test SIGKILLs it in the middle of a job. Prints "ready" once
 * consuming. Broker and settings come from the environment (AMQP_URL, ...), as in a deployed function.
 */

import { InProcessInvoker, Runner } from 'serverless-offline-rabbitmq';
import { createHandler } from '../../handlers/dlq-redrive-job';
import { appHooks } from '../../shared/app/runner-hooks';
import { loadConfig } from '../../shared/config';
import { createLogger } from '../../shared/logging';
import { redriveJobTrigger } from './runner';

const logger = createLogger({ level: 'warn' });
const handler = createHandler({ logger: () => logger, redriveJobs: { heartbeatMs: 200 } });
const runner = new Runner({
  urls: loadConfig().amqpUrls,
  hooks: appHooks({ relayStore: false }),
  triggers: [redriveJobTrigger(process.env.JOB_QUEUE!)],
  invoker: new InProcessInvoker(async () => handler),
  logger,
});
await runner.start();
console.log('ready');
