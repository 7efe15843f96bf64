/**
 * The deployment package as the package tests see it: `npm run package` (scripts/package-report.ts) run once
 * without AWS credentials, and a function's zip unzipped alone and invoked in a fresh Node.js process, as
 * Lambda would run it (no node_modules, the task root as working directory).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseHandler } from 'serverless-offline-rabbitmq';
import { extractZip } from '../../scripts/lib/zip';
import { type PackageReport, resolvedHere, templateFunctions } from '../../scripts/package-report';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');

/** Runs this node with `args`; its stdout and stderr together, and its exit code (null: killed after timeoutMs). */
async function runNode(args: readonly string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }) {
  const child = spawn(process.execPath, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
  const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  clearTimeout(timer);
  return { exitCode, output };
}

export interface PackageRun {
  exitCode: number | null;
  /** What the report printed (and osls before it), stdout and stderr. */
  output: string;
  report: PackageReport;
  packageDir: string;
}

/** Runs `npm run package -- <args>` into `dir`/package, with no AWS credentials of any kind; kills it after 240 s. */
export async function packageService(dir: string, args: readonly string[]): Promise<PackageRun> {
  const packageDir = join(dir, 'package');
  const reportFile = join(dir, 'report.json');
  // Packaging must not need (or contact) AWS.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('AWS_')));
  Object.assign(env, {
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'),
    AWS_CONFIG_FILE: join(dir, 'none'),
    AWS_EC2_METADATA_DISABLED: 'true',
    CI: 'true',
  });
  const { exitCode, output } = await runNode([tsx, 'scripts/package-report.ts', '--package', packageDir, '--json', reportFile, ...args], {
    cwd: root,
    env,
    timeoutMs: 240_000,
  });
  const report = exitCode === 0 ? (JSON.parse(readFileSync(reportFile, 'utf8')) as PackageReport) : (undefined as never);
  return { exitCode, output, report, packageDir };
}

export interface Invocation {
  /** What the handler returned for each event, in order. */
  results: unknown[];
  /** The process's JSON log lines (pino), parsed; other output is in `output`. */
  logs: Array<Record<string, unknown>>;
  output: string;
  exitCode: number | null;
}

/**
 * Unzips function `key` of a package into a temp dir and, in one fresh node process, imports its handler and
 * invokes it with each fixture event in turn (a Lambda context of its own for each). `env` is added to the
 * function's own variables from the template (CloudFormation references left out, as they resolve at deploy).
 */
export async function invokePackaged(
  packageDir: string,
  key: string,
  fixtures: readonly string[],
  env: Record<string, string>,
): Promise<Invocation> {
  const fn = templateFunctions(packageDir).find((f) => f.key === key);
  if (!fn) throw new Error(`no function ${key} in ${packageDir}`);
  const dir = mkdtempSync(join(tmpdir(), `packaged-${key}-`));
  try {
    extractZip(fn.zip, dir);
    const { module, exportName } = parseHandler(fn.handler);
    const events = fixtures.map((fixture) => JSON.parse(readFileSync(join(root, fixture), 'utf8')) as unknown);
    const code = [
      `const module = await import(${JSON.stringify(pathToFileURL(join(dir, `${module}.mjs`)).href)});`,
      `const events = ${JSON.stringify(events)};`,
      'for (const [i, event] of events.entries()) {',
      `  const context = { awsRequestId: 'packaged-' + i, functionName: ${JSON.stringify(key)}, getRemainingTimeInMillis: () => 20000, callbackWaitsForEmptyEventLoop: true };`,
      `  const result = await module[${JSON.stringify(exportName)}](event, context);`,
      "  process.stdout.write('RESULT ' + JSON.stringify(result) + '\\n');",
      '}',
      // Connections the handler opened (and their reconnect timers) would keep a Lambda-like process alive.
      'process.exit(0);',
    ].join('\n');
    const { exitCode, output } = await runNode(['--input-type=module', '-e', code], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', ...resolvedHere(fn.environment), LAMBDA_TASK_ROOT: dir, AWS_REGION: 'eu-west-1', ...env },
      timeoutMs: 60_000,
    });
    const lines = output.split('\n');
    const results = lines.filter((line) => line.startsWith('RESULT ')).map((line) => JSON.parse(line.slice(7)) as unknown);
    const logs = lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>);
    return { results, logs, output, exitCode };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
