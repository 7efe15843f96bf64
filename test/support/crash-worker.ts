/**
 * A worker that dies (SIGKILL) right after its first transaction commits and before the batch is acked:
 * the crash the idempotency middleware must survive. Run by the middleware test with tsx; QUEUE names the
 * queue, SQLITE_PATH or DATABASE_URL the database. Prints "ready" once consuming.
 */

import { InProcessInvoker, Runner } from 'serverless-offline-rabbitmq';
import { appHooks } from '../../shared/app/runner-hooks';
import { loadConfig } from '../../shared/config';
import { createLogger } from '../../shared/logging';
import { openStore } from '../../shared/store';
import { reservationFunction } from './reservation-function';
import { trigger } from './runner';

const queue = process.env.QUEUE!;
const store = await openStore(
  process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : { sqlitePath: process.env.SQLITE_PATH! },
);
const logger = createLogger({ level: 'warn' });
const handler = reservationFunction({
  store,
  logger,
  afterCommit: () => {
    process.kill(process.pid, 'SIGKILL');
  },
});
const runner = new Runner({
  urls: loadConfig().amqpUrls,
  hooks: appHooks({ relayStore: false }),
  triggers: [trigger(queue, { functionKey: 'crashy', batchSize: 1, maximumBatchingWindow: 0 })],
  invoker: new InProcessInvoker(async () => handler),
  logger,
});
await runner.start();
console.log('ready');
