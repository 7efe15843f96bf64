/**
 * Which functions the runner feeds, read from the same `rabbitmq` events that `serverless package` turns into
 * Amazon MQ event source mappings, so local and deployed behaviour come from one definition.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import * as z from 'zod';
import { compileFilterPatterns, FilterPatternError } from './filters.js';
import { DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_SECONDS, deployedFunctionName } from './lib/handler-ref.js';

/** AWS's defaults and bounds for an Amazon MQ (RabbitMQ) event source mapping. */
export const AWS_MQ_DEFAULTS = {
  batchSize: 100,
  maxBatchSize: 10_000,
  maximumBatchingWindowSeconds: 0.5,
  maxBatchingWindowSeconds: 300,
  /** Lambda's default function timeout, in seconds. */
  timeoutSeconds: DEFAULT_TIMEOUT_SECONDS,
} as const;

/** One queue trigger: a function fed from one queue. */
export interface TriggerDefinition {
  /** The function's key in serverless.yml (e.g. `inventoryReservation`). */
  functionKey: string;
  /** The deployed function name (`<service>-<stage>-<key>`); serverless-offline invokes by this name. */
  functionName: string;
  /** `path/to/file.export`, relative to the service directory. */
  handler: string;
  queue: string;
  virtualHost: string;
  /** The broker ARN from the event, when it is a literal ARN (it names the event source). */
  brokerArn: string | undefined;
  batchSize: number;
  /** Seconds to wait for a batch to fill after its first message. */
  maximumBatchingWindow: number;
  enabled: boolean;
  /** The function's timeout in seconds. */
  timeout: number;
  memorySize: number;
  /** Filter criteria (EventBridge patterns on `data`, ORed); a message matching none is acked, never invoked. */
  filterPatterns?: readonly unknown[];
}

/** A function definition or its rabbitmq event does not make sense; names the function and field. */
export class TriggerDefinitionError extends Error {
  override readonly name = 'TriggerDefinitionError';
}

/**
 * The bounds CreateEventSourceMapping checks, with the member names its ValidationException uses. Out of
 * range, AWS answers e.g. "1 validation error detected: Value '0' at 'batchSize' failed to satisfy constraint:
 * Member must have value greater than or equal to 1" (several: "2 validation errors detected: ...; ...").
 */
const AWS_BOUNDS = [
  { field: 'batchSize', member: 'batchSize', min: 1, max: AWS_MQ_DEFAULTS.maxBatchSize },
  { field: 'maximumBatchingWindow', member: 'maximumBatchingWindowInSeconds', min: 0, max: AWS_MQ_DEFAULTS.maxBatchingWindowSeconds },
] as const;

/** AWS's ValidationException message for the event's out-of-range values, or undefined when all are in range. */
function awsValidationMessage(event: Record<string, unknown>): string | undefined {
  const violations: string[] = [];
  for (const { field, member, min, max } of AWS_BOUNDS) {
    const value = event[field];
    if (typeof value !== 'number') continue;
    if (value < min)
      violations.push(
        `Value '${value}' at '${member}' failed to satisfy constraint: Member must have value greater than or equal to ${min}`,
      );
    else if (value > max)
      violations.push(`Value '${value}' at '${member}' failed to satisfy constraint: Member must have value less than or equal to ${max}`);
  }
  if (violations.length === 0) return undefined;
  return `${violations.length} validation error${violations.length === 1 ? '' : 's'} detected: ${violations.join('; ')}`;
}

/**
 * Throws AWS's message, naming the function and event, when a bound is not met (CreateEventSourceMapping's
 * ValidationException), or when the batching window is not whole seconds: AWS's MaximumBatchingWindowInSeconds is
 * an integer, and CloudFormation refuses the resource on its schema. A shorter window for the local trigger alone
 * is `custom.rabbitmqTrigger.localBatchingWindow` (settings.ts), which nothing deploys.
 */
function checkAwsLimits(functionKey: string, index: number, event: Record<string, unknown>): void {
  const where = `Function '${functionKey}', event ${index + 1} (rabbitmq): AWS would refuse this event source mapping`;
  const outOfRange = awsValidationMessage(event);
  if (outOfRange) throw new TriggerDefinitionError(`${where} (CreateEventSourceMapping: ValidationException): ${outOfRange}`);
  const window = event.maximumBatchingWindow;
  if (typeof window === 'number' && !Number.isInteger(window)) {
    throw new TriggerDefinitionError(
      `${where} (CloudFormation: Properties validation failed for AWS::Lambda::EventSourceMapping): ` +
        `#/MaximumBatchingWindowInSeconds: expected type: Integer, found: Number (maximumBatchingWindow ${window}: AWS takes ` +
        'whole seconds; a shorter window for the local trigger only is custom.rabbitmqTrigger.localBatchingWindow)',
    );
  }
}

/**
 * Checks only the bounds AWS checks (batch size, batching window, whole seconds) of every rabbitmq event whose
 * value is already a number, enabled or not; anything else is left to triggersFromFunctions. For a caller that
 * sees the configuration before all its variables are resolved: the plugin, before osls's own schema check, for
 * `serverless offline start` and for `serverless package` / `deploy`, so that the message is AWS's.
 */
export function checkRabbitmqLimits(functions: Record<string, unknown>): void {
  for (const [functionKey, fn] of Object.entries(functions)) {
    const events = (fn as { events?: unknown } | null)?.events;
    if (!Array.isArray(events)) continue;
    for (const [index, event] of events.entries()) {
      const rabbitmq = (event as { rabbitmq?: unknown } | null)?.rabbitmq;
      if (rabbitmq && typeof rabbitmq === 'object') checkAwsLimits(functionKey, index, rabbitmq as Record<string, unknown>);
    }
  }
}

const rabbitmqEvent = z.object({
  queue: z.string().min(1),
  arn: z.unknown().optional(),
  virtualHost: z.string().min(1).optional(),
  // Their bounds are AWS's, checked with AWS's message (awsValidationMessage).
  batchSize: z.number().int().optional(),
  maximumBatchingWindow: z.number().optional(),
  enabled: z.boolean().optional(),
  /** Lambda's FilterCriteria, as osls takes them (`filterPatterns`, each an object on the `data` key). */
  filterPatterns: z.array(z.unknown()).optional(),
});

const functionDefinition = z.object({
  handler: z.string().regex(/^[^.]+(\.[^.]+)*\.[A-Za-z_$][\w$]*$/, 'must look like path/to/file.exportName'),
  name: z.string().optional(),
  timeout: z.number().positive().optional(),
  memorySize: z.number().int().positive().optional(),
  events: z.array(z.record(z.string(), z.unknown())).optional(),
});

export interface ServiceInfo {
  service: string;
  stage: string;
  /** Provider-wide function timeout in seconds. */
  timeout?: number;
  memorySize?: number;
}

/** The queue triggers of a set of function definitions (serverless.yml's `functions`, resolved). */
export function triggersFromFunctions(functions: Record<string, unknown>, service: ServiceInfo): TriggerDefinition[] {
  const triggers: TriggerDefinition[] = [];
  for (const [functionKey, raw] of Object.entries(functions)) {
    const fn = functionDefinition.safeParse(raw);
    if (!fn.success) throw new TriggerDefinitionError(`Function '${functionKey}': ${describe(fn.error)}`);
    for (const [index, event] of (fn.data.events ?? []).entries()) {
      if (!('rabbitmq' in event)) continue;
      const parsed = rabbitmqEvent.safeParse(event.rabbitmq);
      if (!parsed.success) {
        throw new TriggerDefinitionError(`Function '${functionKey}', event ${index + 1} (rabbitmq): ${describe(parsed.error)}`);
      }
      checkAwsLimits(functionKey, index, parsed.data);
      const e = parsed.data;
      triggers.push({
        functionKey,
        functionName: deployedFunctionName(service.service, service.stage, functionKey, fn.data.name),
        handler: fn.data.handler,
        queue: e.queue,
        virtualHost: e.virtualHost ?? '/',
        brokerArn: typeof e.arn === 'string' && e.arn.startsWith('arn:') ? e.arn : undefined,
        batchSize: e.batchSize ?? AWS_MQ_DEFAULTS.batchSize,
        maximumBatchingWindow: e.maximumBatchingWindow ?? AWS_MQ_DEFAULTS.maximumBatchingWindowSeconds,
        enabled: e.enabled ?? true,
        ...(e.filterPatterns ? { filterPatterns: checkedPatterns(functionKey, index, e.filterPatterns) } : {}),
        timeout: fn.data.timeout ?? service.timeout ?? AWS_MQ_DEFAULTS.timeoutSeconds,
        memorySize: fn.data.memorySize ?? service.memorySize ?? DEFAULT_MEMORY_MB,
      });
    }
  }
  return triggers;
}

/** The patterns, if AWS would take them: a pattern it refuses fails the trigger at start, as it fails the deployment. */
function checkedPatterns(functionKey: string, index: number, patterns: readonly unknown[]): readonly unknown[] {
  try {
    compileFilterPatterns(patterns);
    return patterns;
  } catch (error) {
    if (!(error instanceof FilterPatternError)) throw error;
    throw new TriggerDefinitionError(`Function '${functionKey}', event ${index + 1} (rabbitmq): filterPatterns: ${error.message}`);
  }
}

function describe(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join('.') || 'value'} ${issue.message}`).join('; ');
}

/** Values for the simple variables the runner resolves itself: `${env:X}`, `${param:x}`, `${opt:x}`. */
export interface VariableSources {
  params?: Record<string, unknown>;
  options?: Record<string, string>;
}

/**
 * Reads serverless.yml and the function files it references (`${file(...)}`, one YAML file per function here) without the
 * Serverless Framework, for the standalone worker. Only the simple variables `${env:NAME, 'default'}`,
 * `${param:name}` (from `params.default` and `params.<stage>`) and `${opt:name, 'default'}` are resolved; a
 * trigger field the runner needs must be literal or one of those.
 */
export function loadService(
  serviceDir: string,
  options: { stage?: string } = {},
): { info: ServiceInfo; functions: Record<string, unknown>; custom: Record<string, unknown> } {
  const file = join(serviceDir, 'serverless.yml');
  const raw = readYaml(file) as {
    service?: string;
    params?: Record<string, Record<string, unknown>>;
    provider?: { stage?: string; timeout?: number; memorySize?: number };
    custom?: Record<string, unknown>;
    functions?: unknown;
  };
  const opts: Record<string, string> = options.stage ? { stage: options.stage } : {};
  const stage = String(resolveVariables(raw.provider?.stage ?? 'dev', { options: opts }));
  const params = resolveVariables({ ...raw.params?.default, ...raw.params?.[stage] }, { options: { ...opts, stage } }) as Record<
    string,
    unknown
  >;
  const sources: VariableSources = { params, options: { ...opts, stage } };
  const provider = resolveVariables(raw.provider ?? {}, sources) as { timeout?: number; memorySize?: number };
  const functions: Record<string, unknown> = {};
  // `functions:` is a map, or a list of maps and `${file(path)}` references (one YAML file per function, as here).
  const parts = Array.isArray(raw.functions) ? raw.functions : raw.functions === undefined ? [] : [raw.functions];
  for (const part of parts) {
    const reference = typeof part === 'string' ? /^\$\{file\(([^)]+)\)\}$/.exec(part.trim()) : null;
    if (typeof part === 'string' && !reference)
      throw new TriggerDefinitionError(`serverless.yml functions: '${part}' is not a map or a \${file(...)} reference`);
    const where = reference ? reference[1]! : 'serverless.yml functions';
    const document = resolveVariables(reference ? readYaml(join(serviceDir, reference[1]!)) : part, sources);
    if (!document || typeof document !== 'object' || Array.isArray(document)) {
      throw new TriggerDefinitionError(`${where}: expected a map of function name to definition`);
    }
    Object.assign(functions, document);
  }
  return {
    info: {
      service: raw.service ?? 'service',
      stage,
      ...(typeof provider.timeout === 'number' ? { timeout: provider.timeout } : {}),
      ...(typeof provider.memorySize === 'number' ? { memorySize: provider.memorySize } : {}),
    },
    functions,
    custom: (resolveVariables(raw.custom ?? {}, sources) ?? {}) as Record<string, unknown>,
  };
}

function readYaml(file: string): unknown {
  try {
    return parse(readFileSync(file, 'utf8')) as unknown;
  } catch (error) {
    throw new TriggerDefinitionError(`${file}: ${(error as Error).message}`);
  }
}

const variable = /\$\{(env|param|opt):([\w.-]+)(?:\s*,\s*'([^']*)')?\}/g;

function resolveVariables(value: unknown, sources: VariableSources): unknown {
  if (typeof value === 'string') {
    const whole = /^\$\{(env|param|opt):([\w.-]+)(?:\s*,\s*'([^']*)')?\}$/.exec(value.trim());
    if (whole) return lookup(whole[1]!, whole[2]!, whole[3], sources) ?? value;
    return value.replace(variable, (text, source: string, name: string, fallback?: string) =>
      String(lookup(source, name, fallback, sources) ?? text),
    );
  }
  if (Array.isArray(value)) return value.map((item) => resolveVariables(item, sources));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveVariables(v, sources)]));
  }
  return value;
}

function lookup(source: string, name: string, fallback: string | undefined, sources: VariableSources): unknown {
  const table: Record<string, () => unknown> = {
    env: () => process.env[name],
    param: () => sources.params?.[name],
    opt: () => sources.options?.[name],
  };
  const found = table[source]?.();
  return found === undefined || found === '' ? (fallback ?? found) : found;
}
