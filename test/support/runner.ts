/** Builds a Runner over real RabbitMQ with in-process test handlers, on queues unique to the test. */
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import type { Handler } from 'aws-lambda';
import type { RabbitMQEvent } from 'middy-rabbitmq';
import { InProcessInvoker, type Invoker, Runner, type RunnerHooks, type TriggerDefinition } from 'serverless-offline-rabbitmq';
import { type AppHookOptions, appHooks } from '../../shared/app/runner-hooks';
import { loadConfig } from '../../shared/config';
import { createLogger } from '../../shared/logging';
import { dlqName } from '../../shared/messaging';
import { AMQP_URL, type TestAmqp } from './amqp';

export type TestHandler = Handler<RabbitMQEvent, unknown>;

export function uniqueQueue(prefix = 'runner-test'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export function trigger(queue: string, overrides: Partial<TriggerDefinition> = {}): TriggerDefinition {
  return {
    functionKey: overrides.functionKey ?? `fn-${queue}`,
    functionName: `test-local-${overrides.functionKey ?? queue}`,
    handler: 'test.handler',
    queue,
    virtualHost: '/',
    brokerArn: undefined,
    batchSize: 10,
    maximumBatchingWindow: 0.2,
    enabled: true,
    timeout: 5,
    memorySize: 256,
    ...overrides,
  };
}

/** The DLQ redrive job function's trigger (functions/dlq-redrive-job.yml: one job per invocation) on a test's own queue. */
export const redriveJobTrigger = (queue: string, overrides: Partial<TriggerDefinition> = {}): TriggerDefinition =>
  trigger(queue, { functionKey: 'dlqRedriveJob', batchSize: 1, maximumBatchingWindow: 0, timeout: 900, ...overrides });

/** Log lines the runner wrote, parsed; tests read them to see what it reported. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    for (const line of chunk.toString().split('\n').filter(Boolean)) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    callback();
  }
}

export function testRunner(
  triggers: TriggerDefinition[],
  handlers: Record<string, TestHandler>,
  options: {
    concurrency?: number;
    env?: NodeJS.ProcessEnv;
    logs?: LogCapture;
    relayStore?: AppHookOptions['relayStore'];
    deadLetterExchange?: string;
    /** Instead of the app's hooks (false: none, as a service without hooks runs). */
    hooks?: RunnerHooks | false;
    /** Instead of the in-process invoker of `handlers`. */
    invoker?: Invoker;
    requeueDelayMs?: number;
    maxRequeueDelayMs?: number;
    /** Serve the metrics endpoint on this port (0: any free one). */
    metricsPort?: number;
  } = {},
): { runner: Runner; logs: LogCapture } {
  const logs = options.logs ?? new LogCapture();
  const env = { AMQP_URL, RETRY_DELAYS_MS: '1000,10000,60000', ...options.env };
  // The app's hooks declare each test queue as a work queue with its DLQ; the relay only when asked for.
  const runner = new Runner({
    urls: loadConfig(env).amqpUrls,
    env,
    ...(options.hooks === false ? {} : { hooks: options.hooks ?? appHooks({ relayStore: options.relayStore ?? false }) }),
    triggers,
    invoker:
      options.invoker ??
      new InProcessInvoker(async (t) => {
        const handler = handlers[t.functionKey];
        if (!handler) throw new Error(`no test handler for ${t.functionKey}`);
        return handler;
      }),
    ...(options.requeueDelayMs !== undefined ? { requeueDelayMs: options.requeueDelayMs } : {}),
    ...(options.maxRequeueDelayMs !== undefined ? { maxRequeueDelayMs: options.maxRequeueDelayMs } : {}),
    logger: createLogger({ level: 'debug', destination: logs }),
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
    ...(options.deadLetterExchange ? { deadLetterExchange: options.deadLetterExchange } : {}),
    ...(options.metricsPort !== undefined ? { metricsPort: options.metricsPort } : {}),
  });
  return { runner, logs };
}

/** Deletes a test's work queue and its DLQ. */
export async function deleteQueues(amqp: TestAmqp, queues: readonly string[]): Promise<void> {
  for (const queue of queues.flatMap((q) => [q, dlqName(q)])) {
    const channel = await amqp.connection.createChannel();
    channel.on('error', () => undefined);
    await channel.deleteQueue(queue).catch(() => undefined);
    await channel.close().catch(() => undefined);
  }
}

/** Resolves when `predicate` holds, polling; rejects with `what` after `timeoutMs`. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
