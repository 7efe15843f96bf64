/**
 * How the runner calls a function with an `aws:rmq` event. Two ways, one contract: resolve when the
 * function succeeded, reject with InvocationError when it threw, timed out or could not be reached; the
 * trigger then fails the whole batch, as Lambda does. A function that cannot run at all (its handler does not
 * load) rejects with HandlerLoadError, an InvocationError the trigger tells apart: three in a row stop that
 * trigger (FUNCTION_CONFIG_NOT_VALID) instead of retrying the batch for ever against code that cannot run.
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Context, Handler } from 'aws-lambda';
import type { RabbitMQEvent } from 'middy-rabbitmq';
import { lambdaContextFactory } from './context.js';
import type { TriggerDefinition } from './definitions.js';
import { parseHandler } from './lib/handler-ref.js';

/** The function failed the invocation; the batch is redelivered. */
export class InvocationError extends Error {
  override readonly name: string = 'InvocationError';
  constructor(
    message: string,
    readonly errorType = 'Error',
  ) {
    super(message);
  }
}

/**
 * The function's handler cannot be loaded: no such module, no such export, the module throws or does not
 * compile when imported, or serverless-offline has no function of that name. `errorType` is the Lambda
 * runtime's (`Runtime.ImportModuleError`, `Runtime.HandlerNotFound`, `Runtime.UserCodeSyntaxError`) or
 * `ResourceNotFoundException`.
 */
export class HandlerLoadError extends InvocationError {
  override readonly name = 'HandlerLoadError';
}

/** The function did not finish within its timeout. */
export class InvocationTimeoutError extends InvocationError {
  override readonly name = 'InvocationTimeoutError';
}

export interface Invocation {
  requestId: string;
}

export interface Invoker {
  /**
   * Resolves with the function's result (what the handler returned; through serverless-offline, its JSON
   * payload parsed), which the trigger reads as a batch report when it is one (middy-rabbitmq's BatchReport).
   */
  invoke(trigger: TriggerDefinition, event: RabbitMQEvent, invocation: Invocation): Promise<unknown>;
}

export type HandlerLoader = (trigger: TriggerDefinition) => Promise<Handler<RabbitMQEvent, unknown>>;

/**
 * Calls the handler in this process, with a Lambda context whose remaining time honours the function's
 * timeout. A handler that outlives its timeout fails the batch; like any local runner it cannot be killed,
 * so its late effects must be idempotent (the idempotency middleware makes them so).
 */
export class InProcessInvoker implements Invoker {
  /** Each trigger's context factory, made at its first invocation. */
  private readonly contexts = new WeakMap<TriggerDefinition, ReturnType<typeof lambdaContextFactory>>();

  constructor(private readonly load: HandlerLoader) {}

  async invoke(trigger: TriggerDefinition, event: RabbitMQEvent, invocation: Invocation): Promise<unknown> {
    let handler: Handler<RabbitMQEvent, unknown>;
    try {
      handler = await this.load(trigger);
    } catch (error) {
      // Whatever the loader throws, the handler did not load: nothing of the function ran.
      if (error instanceof HandlerLoadError) throw error;
      const cause = error instanceof Error ? error : new Error(String(error));
      throw Object.assign(
        new HandlerLoadError(
          `Handler '${trigger.handler}' of function '${trigger.functionKey}' did not load: ${cause.message}`,
          'Runtime.ImportModuleError',
        ),
        { cause },
      );
    }
    let contextFor = this.contexts.get(trigger);
    if (!contextFor) {
      contextFor = lambdaContextFactory({
        functionName: trigger.functionName,
        timeoutSeconds: trigger.timeout,
        memorySize: trigger.memorySize,
      });
      this.contexts.set(trigger, contextFor);
    }
    const context = contextFor(invocation.requestId);
    try {
      return await callHandler(handler, event, context, trigger.timeout);
    } catch (error) {
      if (error instanceof InvocationError) throw error;
      const cause = error instanceof Error ? error : new Error(String(error));
      throw Object.assign(new InvocationError(cause.message, cause.name), { cause });
    }
  }
}

/** One invocation's timeout: when it falls due (performance.now() ms) and how to fail the invocation then. */
interface Deadline {
  at: number;
  timeoutSeconds: number;
  reject: (error: Error) => void;
}

/**
 * The in-process invocations' timeouts, on one timer instead of one per invocation (making, inserting and removing
 * a Node timer was the largest cost of an invocation after the handler). The timer is armed for the earliest
 * deadline and left armed when an invocation ends first, the usual case: it then fires at most once per timeout,
 * finds nothing due and re-arms for what is still pending. It is referenced only while an invocation is pending,
 * so it keeps the process alive exactly as a timer per invocation did.
 */
class Deadlines {
  /** A few at most (the triggers' concurrency): an array, no hashing per invocation. */
  private readonly pending: Deadline[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;

  add(deadline: Deadline): void {
    this.pending.push(deadline);
    if (deadline.at < this.timerAt) this.arm(deadline.at);
    else if (this.pending.length === 1) this.timer?.ref();
  }

  delete(deadline: Deadline): void {
    const index = this.pending.indexOf(deadline);
    if (index < 0) return;
    const last = this.pending.pop()!;
    if (index < this.pending.length) this.pending[index] = last;
    if (this.pending.length === 0) this.timer?.unref();
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.fire, Math.max(1, at - performance.now()));
  }

  /** Fails every invocation that is due (a timer may fire a little early: those not yet due wait on). */
  private readonly fire = (): void => {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const due = this.pending.filter((deadline) => deadline.at <= now);
    for (const deadline of due) this.delete(deadline);
    let next = Number.POSITIVE_INFINITY;
    for (const deadline of this.pending) if (deadline.at < next) next = deadline.at;
    if (next !== Number.POSITIVE_INFINITY) this.arm(next);
    for (const deadline of due)
      deadline.reject(new InvocationTimeoutError(`Task timed out after ${deadline.timeoutSeconds.toFixed(2)} seconds`, 'Timeout'));
  };
}

const deadlines = new Deadlines();

/**
 * Calls the handler, async or in the older callback style (whichever answers first counts), and rejects with
 * InvocationTimeoutError once `timeoutSeconds` have passed. A late answer changes nothing; a late rejection is
 * observed here, not left unhandled. One promise and one deadline per invocation, no per-call named closures (it
 * runs once per batch).
 */
function callHandler(
  handler: Handler<RabbitMQEvent, unknown>,
  event: RabbitMQEvent,
  context: Context,
  timeoutSeconds: number,
): Promise<unknown> {
  return new Promise((resolvePromise, reject) => {
    const deadline: Deadline = { at: performance.now() + Math.max(0, timeoutSeconds * 1000), timeoutSeconds, reject };
    deadlines.add(deadline);
    try {
      const returned = handler(event, context, (error?: Error | string | null, result?: unknown) => {
        deadlines.delete(deadline);
        if (error) reject(error instanceof Error ? error : new Error(String(error)));
        else resolvePromise(result);
      }) as unknown;
      if (returned && typeof (returned as Promise<unknown>).then === 'function') {
        (returned as Promise<unknown>).then(
          (result) => {
            deadlines.delete(deadline);
            resolvePromise(result);
          },
          (error: unknown) => {
            deadlines.delete(deadline);
            reject(error);
          },
        );
      }
    } catch (error) {
      deadlines.delete(deadline);
      reject(error);
    }
  });
}

/**
 * Loads each handler as Lambda would run it: bundled by esbuild into `outDir` (packages stay external and
 * come from node_modules), then imported once and reused across invocations, like a warm container.
 */
export function bundledHandlerLoader(serviceDir: string, outDir = join(serviceDir, '.build', 'worker')): HandlerLoader {
  const cache = new Map<string, Promise<Handler<RabbitMQEvent, unknown>>>();
  return (trigger) => {
    let loaded = cache.get(trigger.handler);
    if (!loaded) {
      loaded = bundleAndImport(serviceDir, outDir, trigger);
      loaded.catch(() => cache.delete(trigger.handler));
      cache.set(trigger.handler, loaded);
    }
    return loaded;
  };
}

async function bundleAndImport(serviceDir: string, outDir: string, trigger: TriggerDefinition): Promise<Handler<RabbitMQEvent, unknown>> {
  const { build } = await import('esbuild');
  const { module: modulePath, exportName } = parseHandler(trigger.handler);
  const entry = await findEntry(resolve(serviceDir, modulePath), trigger);
  const outfile = join(outDir, `${trigger.functionKey}.mjs`);
  await mkdir(outDir, { recursive: true });
  const failed = (what: string, error: unknown, errorType: string) => {
    const cause = error instanceof Error ? error : new Error(String(error));
    return Object.assign(
      new HandlerLoadError(`Handler '${trigger.handler}' of function '${trigger.functionKey}' ${what}: ${cause.message}`, errorType),
      { cause },
    );
  };
  let bundle: Uint8Array;
  try {
    const result = await build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      sourcemap: 'inline',
      logLevel: 'silent',
      write: false,
    });
    bundle = result.outputFiles[0]!.contents;
  } catch (error) {
    throw failed('does not build', error, 'Runtime.UserCodeSyntaxError');
  }
  // Written whole, then renamed into place: several workers of one service share the file, and one must never
  // import another's half-written bundle.
  const partial = `${outfile}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeFile(partial, bundle);
    await rename(partial, outfile);
  } finally {
    await rm(partial, { force: true });
  }
  let module: Record<string, unknown>;
  try {
    module = (await import(`${pathToFileURL(outfile).href}?v=${Date.now()}`)) as Record<string, unknown>;
  } catch (error) {
    throw failed('throws when imported', error, 'Runtime.ImportModuleError');
  }
  const handler = module[exportName];
  if (typeof handler !== 'function') {
    throw new HandlerLoadError(
      `Handler '${trigger.handler}' of function '${trigger.functionKey}' does not export a function named '${exportName}'`,
      'Runtime.HandlerNotFound',
    );
  }
  return handler as Handler<RabbitMQEvent, unknown>;
}

async function findEntry(base: string, trigger: TriggerDefinition): Promise<string> {
  const { access } = await import('node:fs/promises');
  for (const extension of ['.ts', '.mts', '.js', '.mjs', '.cjs']) {
    const candidate = base + extension;
    try {
      await access(candidate);
      return candidate;
    } catch {
      // try the next extension
    }
  }
  throw new HandlerLoadError(
    `Handler '${trigger.handler}' of function '${trigger.functionKey}': no file '${base}' (tried .ts, .mts, .js, .mjs, .cjs)`,
    'Runtime.ImportModuleError',
  );
}

export interface OfflineInvokerOptions {
  /** serverless-offline's Lambda endpoint, e.g. http://localhost:3002. */
  endpoint: string;
  /** Extra time beyond the function's timeout before the runner gives up on serverless-offline. */
  graceMs?: number;
}

/**
 * Invokes through serverless-offline's Lambda API (`POST /2015-03-31/functions/{name}/invocations`), so its
 * code reloading and worker isolation apply. A function error comes back as `X-Amz-Function-Error`.
 *
 * A handler that does not load is a function error too there, always with `errorType` "Error" (serverless-offline
 * 14 reports every throw so); what tells it apart is the Lambda runtime's own error in the first line of `trace`
 * (`Runtime.ImportModuleError: ...`, `Runtime.HandlerNotFound: ... is undefined or not exported`,
 * `Runtime.UserCodeSyntaxError: ...`), or, for a module that throws while it is imported, the runtime's loader
 * (`_loadUserApp` in UserFunction.js) in the trace. A function serverless-offline does not know answers 404
 * ResourceNotFoundException. Each of these is a HandlerLoadError.
 */
export class OfflineInvoker implements Invoker {
  constructor(private readonly options: OfflineInvokerOptions) {}

  async invoke(trigger: TriggerDefinition, event: RabbitMQEvent): Promise<unknown> {
    const url = `${this.options.endpoint}/2015-03-31/functions/${encodeURIComponent(trigger.functionName)}/invocations`;
    const limitMs = trigger.timeout * 1000 + (this.options.graceMs ?? 5_000);
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-amz-invocation-type': 'RequestResponse' },
        body: JSON.stringify(event),
        signal: AbortSignal.timeout(limitMs),
      });
    } catch (error) {
      const timedOut = (error as Error).name === 'TimeoutError';
      throw timedOut
        ? new InvocationTimeoutError(`No answer from serverless-offline within ${limitMs} ms`, 'Timeout')
        : new InvocationError(`serverless-offline unreachable at ${url}: ${(error as Error).message}`, 'Unreachable');
    }
    const text = await response.text();
    const functionError = response.headers.get('x-amz-function-error') ?? response.headers.get('x-amzn-errortype');
    if (response.ok && !functionError) return parsePayload(text);
    let payload: { errorMessage?: string; errorType?: string; Message?: string; trace?: unknown } = {};
    try {
      payload = JSON.parse(text) as typeof payload;
    } catch {
      // not JSON: report the raw text
    }
    const message = payload.errorMessage ?? payload.Message ?? (text || `HTTP ${response.status}`);
    const type = payload.errorType ?? functionError ?? `HTTP${response.status}`;
    if (functionError === 'ResourceNotFoundException' || response.status === 404) {
      throw new HandlerLoadError(`serverless-offline has no function '${trigger.functionName}': ${message}`, 'ResourceNotFoundException');
    }
    const loadFailure = handlerLoadFailure(payload.trace);
    if (loadFailure)
      throw new HandlerLoadError(`Handler '${trigger.handler}' of function '${trigger.functionKey}' did not load: ${message}`, loadFailure);
    throw /timed? ?out/i.test(message) ? new InvocationTimeoutError(message, type) : new InvocationError(message, type);
  }
}

/** A successful invocation's payload: the handler's result as JSON, or undefined when there is none or it is not JSON. */
function parsePayload(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The Lambda runtime's errorType when serverless-offline's trace shows a handler that did not load, else undefined. */
function handlerLoadFailure(trace: unknown): string | undefined {
  if (!Array.isArray(trace) || trace.length === 0) return undefined;
  const lines = trace.filter((line): line is string => typeof line === 'string');
  const runtime = /^(Runtime\.(?:ImportModuleError|HandlerNotFound|UserCodeSyntaxError|MalformedHandlerName))\b/.exec(lines[0] ?? '');
  if (runtime) return runtime[1];
  // A module that throws at import: the error is the module's own, raised inside the runtime's loader.
  return lines.some((line) => /\bat (?:async )?(?:_loadUserApp|_tryAwaitImport|_tryRequire) \(.*UserFunction\.js/.test(line))
    ? 'Runtime.ImportModuleError'
    : undefined;
}
