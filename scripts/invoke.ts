/**
 * `npm run invoke -- <function> <fixture.json>`: runs one function's handler once, in this process, with its
 * real middleware, against the configured broker and database, and prints what it returned. The same
 * fixtures work with `serverless invoke local -f <function> -p <fixture.json>`.
 */

import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Handler } from 'aws-lambda';
import {
  createLambdaContext,
  DEFAULT_MEMORY_MB,
  DEFAULT_TIMEOUT_SECONDS,
  deployedFunctionName,
  loadService,
  parseHandler,
  TriggerDefinitionError,
} from 'serverless-offline-rabbitmq';
import { ConfigError, config } from '../shared/config';
import { UsageError } from '../shared/lib/usage-error';
import { closeMessaging } from '../shared/messaging';

const usage = 'Usage: npm run invoke -- <function> <fixture.json>   (functions are the keys in functions/*.yml)';

async function main(): Promise<void> {
  const [functionKey, fixturePath, ...rest] = process.argv.slice(2);
  if (!functionKey || !fixturePath || rest.length) throw new UsageError('Give exactly a function name and a fixture file');
  config(); // fail early, naming a bad setting
  // As `serverless invoke local` does: a local invocation, so a fixture's API Gateway request id (the same on
  // every run) is not taken for one request's own correlation id (shared/http/correlation.ts).
  process.env.IS_LOCAL ??= 'true';
  const serviceDir = resolve('.');
  const { info, functions } = loadService(serviceDir);
  const definition = functions[functionKey] as { handler?: string; timeout?: number; memorySize?: number } | undefined;
  if (!definition?.handler) {
    throw new UsageError(`Unknown function '${functionKey}'. Functions: ${Object.keys(functions).join(', ')}`);
  }
  if (!existsSync(fixturePath)) throw new UsageError(`Fixture not found: ${fixturePath}`);
  let event: unknown;
  try {
    event = JSON.parse(readFileSync(fixturePath, 'utf8'));
  } catch (error) {
    throw new UsageError(`Fixture ${fixturePath} is not valid JSON: ${(error as Error).message}`);
  }
  const { module: modulePath, exportName } = parseHandler(definition.handler);
  const file = resolve(serviceDir, `${modulePath}.ts`);
  const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const handler = module[exportName] as Handler | undefined;
  if (typeof handler !== 'function') throw new UsageError(`${definition.handler} does not export a handler function`);
  const context = createLambdaContext({
    functionName: deployedFunctionName(info.service, info.stage, functionKey),
    timeoutSeconds: definition.timeout ?? info.timeout ?? DEFAULT_TIMEOUT_SECONDS,
    memorySize: definition.memorySize ?? info.memorySize ?? DEFAULT_MEMORY_MB,
  });
  const result: unknown = await handler(event, context, () => undefined);
  process.stdout.write(`${JSON.stringify(result ?? null, null, 2)}\n`);
}

main()
  .then(async () => {
    await closeMessaging();
    process.exit(0);
  })
  .catch(async (error: unknown) => {
    await closeMessaging().catch(() => undefined);
    const known = error instanceof UsageError || error instanceof ConfigError || error instanceof TriggerDefinitionError;
    console.error(`invoke: ${known ? (error as Error).message : `the handler failed: ${(error as Error)?.stack ?? String(error)}`}`);
    if (error instanceof UsageError) console.error(usage);
    process.exit(known ? 2 : 1);
  });
