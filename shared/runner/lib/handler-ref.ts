/**
 * A function's `handler` setting, `path/to/file.exportName`, and the defaults Lambda and the Serverless
 * Framework apply to a function definition: shared by the trigger, `npm run invoke` and the package report.
 */

/** Lambda's default function timeout, in seconds. */
export const DEFAULT_TIMEOUT_SECONDS = 6;
/** Lambda's default memory, in MB (the Serverless Framework's default is 1024). */
export const DEFAULT_MEMORY_MB = 1024;

/** Splits `path/to/file.exportName` at its last dot. */
export function parseHandler(handler: string): { module: string; exportName: string } {
  const dot = handler.lastIndexOf('.');
  if (dot <= 0 || dot === handler.length - 1) throw new TypeError(`Handler '${handler}' is not path/to/file.exportName`);
  return { module: handler.slice(0, dot), exportName: handler.slice(dot + 1) };
}

/** The deployed name of function `key`: its `name` setting, else `<service>-<stage>-<key>`. */
export const deployedFunctionName = (service: string, stage: string, key: string, name?: string): string =>
  name ?? `${service}-${stage}-${key}`;
