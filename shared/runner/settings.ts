/**
 * The runner's own settings, read the same way by the serverless-offline plugin and the standalone worker:
 * `custom.rabbitmqTrigger` of serverless.yml, the broker URLs and log level from the functions' environment,
 * and the hooks module a service plugs in with.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { logFormat, prettyDestination } from 'middy-rabbitmq/log-format';
import { type DestinationStream, destination, type Logger, pino, stdTimeFunctions } from 'pino';
import * as z from 'zod';
import { type TriggerDefinition, TriggerDefinitionError } from './definitions.js';
import type { RunnerHooks } from './runner.js';
import { DEFAULT_STATUS_DIR } from './status-file.js';

const Settings = z
  .object({
    /** Invocations in flight per function (default 1, as AWS runs them). */
    concurrency: z.number().int().min(1).optional(),
    /** Only these functions (keys of serverless.yml's functions). */
    functions: z.array(z.string().min(1)).optional(),
    /** Where messages that cannot be invoked go, routed by queue name (see RunnerOptions). */
    deadLetterExchange: z.string().min(1).optional(),
    /** A module, relative to the service directory, whose default export is the RunnerHooks. */
    hooks: z.string().min(1).optional(),
    /**
     * Where each runner process keeps its status file for `npm run status` (relative to the service directory;
     * default `.build/rabbitmq-trigger`, which .gitignore's `.build/` covers). See status-file.ts.
     */
    statusDir: z.string().min(1).optional(),
    /**
     * Local only, never deployed: the batching window in seconds every trigger of this runner uses instead of its
     * event's `maximumBatchingWindow` (fractions allowed, 0..300). AWS takes whole seconds, so a rabbitmq event with
     * a fractional window is refused (it would not deploy); a test suite that wants 0.1 s batches sets it here.
     */
    localBatchingWindow: z.number().min(0).max(300).optional(),
  })
  .strict();

export type TriggerSettings = z.infer<typeof Settings>;

/** `custom.rabbitmqTrigger`, checked; TriggerDefinitionError names what is wrong. */
export function triggerSettings(custom: Record<string, unknown> | undefined): TriggerSettings {
  const parsed = Settings.safeParse(custom?.rabbitmqTrigger ?? {});
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || 'value'}: ${issue.message}`);
  throw new TriggerDefinitionError(`custom.rabbitmqTrigger: ${problems.join('; ')}`);
}

/** The triggers as this runner runs them: `localBatchingWindow`, when set, replaces every event's window. */
export function localTriggers(triggers: readonly TriggerDefinition[], settings: TriggerSettings): TriggerDefinition[] {
  const window = settings.localBatchingWindow;
  return triggers.map((trigger) => (window === undefined ? trigger : { ...trigger, maximumBatchingWindow: window }));
}

/** The directory the runners of the service in `serviceDir` keep their status files in. */
export function statusDirectory(serviceDir: string, settings: TriggerSettings): string {
  const directory = settings.statusDir ?? DEFAULT_STATUS_DIR;
  return isAbsolute(directory) ? directory : resolve(serviceDir, directory);
}

export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** The brokers to consume from: AMQP_URLS (comma-separated, a cluster's nodes), else AMQP_URL, else a local one. */
export function brokerUrls(env: Readonly<Record<string, string | undefined>>): string[] {
  const urls = (env.AMQP_URLS ?? '')
    .split(',')
    .map((url) => url.trim())
    .filter(Boolean);
  const chosen = urls.length ? urls : [env.AMQP_URL?.trim() || DEFAULT_AMQP_URL];
  for (const url of chosen) {
    if (!/^amqps?:\/\/[^\s]+$/.test(url))
      throw new TriggerDefinitionError(`AMQP_URL${urls.length ? 'S' : ''}: '${url}' is not an amqp:// or amqps:// URL`);
  }
  return chosen;
}

/** The hooks module named in the settings, loaded from the service directory (none: no hooks). */
export async function loadHooks(serviceDir: string, modulePath: string | undefined): Promise<RunnerHooks> {
  if (!modulePath) return {};
  const file = resolve(serviceDir, modulePath);
  const module = (
    /\.[cm]?ts$/.test(file)
      ? await (await import('tsx/esm/api')).tsImport(pathToFileURL(file).href, import.meta.url)
      : await import(pathToFileURL(file).href)
  ) as { default?: RunnerHooks; hooks?: RunnerHooks };
  const hooks = module.default ?? module.hooks;
  if (!hooks || typeof hooks !== 'object')
    throw new TriggerDefinitionError(`custom.rabbitmqTrigger.hooks: ${modulePath} has no default export of hooks`);
  return hooks;
}

/**
 * The runner's logger (level from LOG_LEVEL), one line per event worth knowing: JSON lines, or readable ones
 * where the functions' own logs are readable (a terminal, LOG_FORMAT=pretty: middy-rabbitmq/log-format), so the
 * two interleave in one style. `env`: the functions' environment (default: the process's).
 */
export function createRunnerLogger(options: {
  level?: string | undefined;
  service: string;
  destination?: DestinationStream;
  env?: NodeJS.ProcessEnv;
}): Logger {
  const pretty = !options.destination && logFormat(options.env) === 'pretty';
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: options.service },
      timestamp: stdTimeFunctions.isoTime,
      messageKey: 'message',
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? (pretty ? prettyDestination({ messageKey: 'message' }) : destination({ sync: true })),
  );
}
