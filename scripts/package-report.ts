/**
 * `npm run package`: builds the deployment package (`serverless package`: one minified esbuild bundle per
 * function with the chunks it loads later, zipped, plus the CloudFormation template) for a deployment stage,
 * then reports what each function ships: zip size, bundle, chunk and source map size, the packages bundled in
 * (from the source maps), and the cold import time of the bundle in a fresh Node.js process, unzipped alone as
 * Lambda would run it.
 *
 *   npm run package                                          # stage prod, placeholders for missing params
 *   npm run package -- --stage staging --param="brokerArn=arn:aws:mq:..." --param="databaseUrl=postgres://..."
 *   options: --stage S (default prod), --region R, --param name=value (repeatable), --package DIR (default
 *            .serverless), --no-placeholders (fail instead), --runs N (imports per function, default 5),
 *            --skip-build (report on an existing package), --check (exit 1 over budget), --json FILE,
 *            --node PATH (the node that imports the bundles; default this one: use a Node.js 22 to match nodejs22.x)
 *
 * A deployment stage needs brokerArn, brokerSecretArn, amqpUrl and databaseUrl (serverless.yml `params`),
 * from `--param` or the environment (BROKER_ARN, BROKER_SECRET_ARN, AMQP_URL, DATABASE_URL); subnetIds and
 * securityGroupIds (SUBNET_IDS, SECURITY_GROUP_IDS) put the functions in a VPC. Missing required ones get
 * placeholders in AWS's shape, so the package builds anywhere, without AWS credentials (packaging contacts
 * nothing); such a package is for inspection, not for deploying, and the report says so.
 */

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { parseHandler } from 'serverless-offline-rabbitmq';
import { redactUrl } from '../shared/config';
import { UsageError } from '../shared/lib/usage-error';
import { extractZip, type ZipEntry } from './lib/zip';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Budgets per function: zipped package and cold import time. */
export const BUDGET = { zipBytes: 1_000_000, importMs: 150 } as const;

/** Nothing local-only may ship: the offline plugin, serverless-offline, the framework, native SQLite. */
export const FORBIDDEN = /(^|\/)(serverless-offline|osls|serverless-esbuild|better-sqlite3)(\/|$)|offline-plugin|\.node$/;

/** The deployment params that have no usable default, the variable each falls back to, and a placeholder. */
const DEPLOY_PARAMS = [
  {
    name: 'brokerArn',
    env: 'BROKER_ARN',
    placeholder: (region: string) => `arn:aws:mq:${region}:000000000000:broker:placeholder:b-00000000-0000-0000-0000-000000000000`,
  },
  {
    name: 'brokerSecretArn',
    env: 'BROKER_SECRET_ARN',
    placeholder: (region: string) => `arn:aws:secretsmanager:${region}:000000000000:secret:placeholder-rabbitmq`,
  },
  {
    name: 'amqpUrl',
    env: 'AMQP_URL',
    placeholder: (region: string) => `amqps://b-00000000-0000-0000-0000-000000000000.mq.${region}.amazonaws.com:5671`,
  },
  { name: 'databaseUrl', env: 'DATABASE_URL', placeholder: () => 'postgres://placeholder:placeholder@placeholder.invalid:5432/app' },
] as const;

const usage = `Usage: npm run package -- [--stage prod] [--region R] [--param name=value]... [--package DIR] [--no-placeholders] [--runs N] [--skip-build] [--check] [--json FILE] [--node PATH]`;

export interface FunctionReport {
  function: string;
  handler: string;
  runtime: string;
  architecture: string;
  zip: string;
  zipBytes: number;
  entries: string[];
  /** The handler's bundle, what a cold start imports (with the chunks it imports statically). */
  bundleBytes: number;
  /** Its chunks (`<bundle>.chunks/`): code shared with what loads later, and what loads only on first use. */
  chunkBytes: number;
  /** Every source map in the zip, together. */
  sourceMapBytes: number;
  /** Top-level packages (node_modules) and project folders the bundle and its chunks were built from. */
  bundled: string[];
  forbidden: string[];
  /** Median cold import time in ms, and every run's. */
  importMs: number | null;
  importRuns: number[];
  importError: string | null;
  overBudget: string[];
}

export interface PackageReport {
  stage: string;
  packageDir: string;
  node: string;
  placeholders: string[];
  functions: FunctionReport[];
}

function parse() {
  const { values } = parseArgs({
    options: {
      stage: { type: 'string', default: 'prod' },
      region: { type: 'string' },
      param: { type: 'string', multiple: true, default: [] },
      package: { type: 'string', default: '.serverless' },
      'no-placeholders': { type: 'boolean', default: false },
      runs: { type: 'string', default: '5' },
      'skip-build': { type: 'boolean', default: false },
      check: { type: 'boolean', default: false },
      json: { type: 'string' },
      node: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 0) throw new UsageError(`--runs must be a whole number, got '${values.runs}'`);
  for (const param of values.param) {
    if (!/^[^=]+=.+/.test(param)) throw new UsageError(`--param expects name=value, got '${param}'`);
  }
  return { ...values, runs };
}

/** The --param list for serverless: the given ones, then placeholders for deployment params still missing. */
function deployParams(stage: string, region: string, given: readonly string[], allowPlaceholders: boolean) {
  const params = [...given];
  const placeholders: string[] = [];
  const sources: string[] = [];
  if (stage === 'local') return { params, placeholders, sources: ['stage local: params.local of serverless.yml'] };
  for (const param of DEPLOY_PARAMS) {
    const cli = given.find((p) => p.startsWith(`${param.name}=`));
    const env = process.env[param.env]?.trim();
    if (cli) sources.push(`${param.name}: --param`);
    else if (env) {
      const shown = param.name.endsWith('Url') ? redactUrl(env) : env;
      const local = /^[a-z]+:\/\/([^@/]*@)?(localhost|127\.|\[::1\])/.test(env);
      sources.push(`${param.name}: ${param.env} (${shown})${local ? '  WARNING: a local address, unreachable from Lambda' : ''}`);
    } else {
      placeholders.push(param.name);
      params.push(`${param.name}=${param.placeholder(region)}`);
      sources.push(`${param.name}: PLACEHOLDER (set ${param.env} or --param="${param.name}=...")`);
    }
  }
  const vpcGiven = (name: string, env: string) => given.some((p) => p.startsWith(`${name}=`)) || Boolean(process.env[env]?.trim());
  sources.push(
    vpcGiven('subnetIds', 'SUBNET_IDS') || vpcGiven('securityGroupIds', 'SECURITY_GROUP_IDS')
      ? 'vpc: subnetIds and securityGroupIds given: the functions run in that VPC'
      : 'vpc: none (no subnetIds / securityGroupIds): the functions run outside any VPC',
  );
  if (placeholders.length && !allowPlaceholders) {
    throw new UsageError(
      `Missing deployment params: ${placeholders.join(', ')}. Set ${placeholders.map((n) => DEPLOY_PARAMS.find((p) => p.name === n)!.env).join(', ')} or pass --param="name=value".`,
    );
  }
  return { params, placeholders, sources };
}

function runServerless(args: string[]): Promise<void> {
  const child = spawn(process.execPath, [join(root, 'node_modules/osls/bin/serverless.js'), ...args], { cwd: root, stdio: 'inherit' });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward).on('SIGTERM', forward);
  return new Promise((resolvePromise, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      process.off('SIGINT', forward).off('SIGTERM', forward);
      if (code === 0) resolvePromise();
      else reject(new Error(`serverless ${args.join(' ')} failed (${signal ?? `exit code ${code}`})`));
    });
  });
}

/** The properties of an AWS::Lambda::Function resource this report reads. */
interface LambdaFunctionProperties {
  Code?: { S3Key?: string };
  Handler?: string;
  Runtime?: string;
  Architectures?: string[];
  Environment?: { Variables?: Record<string, string> };
}

interface TemplateFunction {
  key: string;
  handler: string;
  runtime: string;
  architecture: string;
  zip: string;
  environment: Record<string, string>;
}

/** The Lambda functions of a packaged service, from its CloudFormation template. */
export function templateFunctions(packageDir: string): TemplateFunction[] {
  const file = join(packageDir, 'cloudformation-template-update-stack.json');
  if (!existsSync(file)) throw new Error(`${file} not found: run serverless package first`);
  const template = JSON.parse(readFileSync(file, 'utf8')) as {
    Resources: Record<string, { Type: string; Properties: LambdaFunctionProperties }>;
  };
  return Object.values(template.Resources)
    .filter((resource) => resource.Type === 'AWS::Lambda::Function')
    .map(({ Properties: p }) => {
      const zip = basename(String(p.Code?.S3Key ?? ''));
      return {
        key: zip.replace(/\.zip$/, ''),
        handler: String(p.Handler),
        runtime: String(p.Runtime),
        architecture: String(p.Architectures?.[0] ?? 'x86_64'),
        zip: join(packageDir, zip),
        environment: p.Environment?.Variables ?? {},
      };
    });
}

/** Where the sources of a bundle came from, from its source map: `zod`, `@middy/core`, `shared/store`, ... */
export function bundledFrom(sourceMap: { sources?: string[] }): string[] {
  const origins = new Set<string>();
  for (const source of sourceMap.sources ?? []) {
    // Modules a build plugin made up (namespace:path) are not files the bundle was built from.
    if (/^[\w-]+:/.test(source)) continue;
    const path = source.replace(/\\/g, '/');
    const inModules = /.*node_modules\/((@[^/]+\/)?[^/]+)/.exec(path);
    if (inModules) origins.add(inModules[1]!);
    else
      origins.add(
        path
          .replace(/^(\.\.\/)+/, '')
          .split('/')
          .slice(0, 2)
          .join('/'),
      );
  }
  return [...origins].sort();
}

/**
 * The function's variables whose values are known here: a CloudFormation dynamic reference (`{{resolve:...}}`, a
 * secret in Secrets Manager or Parameter Store) is resolved only when CloudFormation deploys, so it is left out.
 */
export const resolvedHere = (environment: Record<string, string>) =>
  Object.fromEntries(Object.entries(environment).filter(([, value]) => !String(value).includes('{{resolve:')));

/** Imports `file` in a fresh node process `runs` times, with the function's environment; median and runs. */
function coldImport(fn: TemplateFunction, dir: string, file: string, exportName: string, runs: number, node: string) {
  const code = [
    'const started = performance.now();',
    `const module = await import(${JSON.stringify(pathToFileURL(file).href)});`,
    'const ms = performance.now() - started;',
    `process.stdout.write(JSON.stringify({ ms, handler: typeof module[${JSON.stringify(exportName)}] }));`,
    'process.exit(0);',
  ].join('\n');
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const result = spawnSync(node, ['--input-type=module', '-e', code], {
      cwd: dir,
      // What Lambda gives the function: its own variables, no node_modules, the task root as working directory.
      env: { PATH: process.env.PATH ?? '', ...resolvedHere(fn.environment), LAMBDA_TASK_ROOT: dir, AWS_REGION: 'eu-west-1' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    const line = result.stdout.trim().split('\n').pop() ?? '';
    let parsed: { ms: number; handler: string } | undefined;
    try {
      parsed = JSON.parse(line) as { ms: number; handler: string };
    } catch {
      const why =
        result.error?.message ??
        (result.stderr
          .trim()
          .split('\n')
          .find((l) => /Error/.test(l)) ||
          result.stderr.trim().split('\n')[0]);
      return { median: null, runs: times, error: `import failed: ${why || `exit code ${result.status}`}` };
    }
    if (parsed.handler !== 'function')
      return { median: null, runs: times, error: `export '${exportName}' is ${parsed.handler}, not a function` };
    times.push(Math.round(parsed.ms * 10) / 10);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return { median: sorted.length ? sorted[Math.floor(sorted.length / 2)]! : null, runs: times, error: null };
}

/** Inspects every function's zip in `packageDir`; imports each bundle `runs` times. */
export function inspectPackage(packageDir: string, runs: number, node = process.execPath): FunctionReport[] {
  const reports: FunctionReport[] = [];
  for (const fn of templateFunctions(packageDir)) {
    const dir = mkdtempSync(join(tmpdir(), `package-${fn.key}-`));
    try {
      const entries: ZipEntry[] = extractZip(fn.zip, dir);
      const names = entries.map((entry) => entry.name);
      const { module: modulePath, exportName } = parseHandler(fn.handler);
      const bundle = entries.find(
        (entry) => /\.(mjs|cjs|js)$/.test(entry.name) && entry.name.replace(/\.(mjs|cjs|js)$/, '') === modulePath,
      );
      // The bundle's chunks (scripts/esbuild-plugins.cjs, function-chunks): their code ships too.
      const chunks = bundle
        ? entries.filter((entry) => entry.name.startsWith(`${modulePath}.chunks/`) && /\.(mjs|cjs|js)$/.test(entry.name))
        : [];
      const maps = entries.filter((entry) => entry.name.endsWith('.map'));
      const sources = maps.flatMap(
        (map) => (JSON.parse(readFileSync(join(dir, map.name), 'utf8')) as { sources?: string[] }).sources ?? [],
      );
      const bundled = bundledFrom({ sources });
      const forbidden = [
        ...names.filter((name) => FORBIDDEN.test(name)),
        ...[...new Set(sources)].filter((s) => FORBIDDEN.test(s.replace(/\\/g, '/'))),
      ];
      const imported = bundle
        ? coldImport(fn, dir, join(dir, bundle.name), exportName, runs, node)
        : { median: null, runs: [], error: `no bundle for handler ${fn.handler} in the zip` };
      const zipBytes = readFileSync(fn.zip).length;
      const overBudget = [
        ...(zipBytes > BUDGET.zipBytes ? [`zip ${kb(zipBytes)} > ${kb(BUDGET.zipBytes)}`] : []),
        ...(imported.median !== null && imported.median > BUDGET.importMs ? [`import ${imported.median} ms > ${BUDGET.importMs} ms`] : []),
      ];
      reports.push({
        function: fn.key,
        handler: fn.handler,
        runtime: fn.runtime,
        architecture: fn.architecture,
        zip: fn.zip,
        zipBytes,
        entries: names,
        bundleBytes: bundle?.size ?? 0,
        chunkBytes: chunks.reduce((sum, chunk) => sum + chunk.size, 0),
        sourceMapBytes: maps.reduce((sum, map) => sum + map.size, 0),
        bundled,
        forbidden,
        importMs: imported.median,
        importRuns: imported.runs,
        importError: imported.error,
        overBudget,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return reports;
}

const kb = (bytes: number) => `${(bytes / 1000).toFixed(1)} kB`;

function print(report: PackageReport): void {
  const rows = report.functions.map((f) => [
    f.function,
    `${f.runtime}/${f.architecture}`,
    kb(f.zipBytes),
    kb(f.bundleBytes),
    kb(f.chunkBytes),
    kb(f.sourceMapBytes),
    f.importMs === null ? 'FAILED' : `${f.importMs} ms`,
    f.forbidden.length || f.importError || f.overBudget.length ? 'CHECK' : 'ok',
  ]);
  const header = ['function', 'runtime', 'zip', 'bundle', 'chunks', 'source maps', 'cold import', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    `  ${cells.map((c, i) => (i >= 2 && i <= 6 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ')}`;
  console.log(
    `\nPackage ${report.packageDir} (stage ${report.stage}); cold import = median of fresh node ${report.node} processes, bundle unzipped alone` +
      '\n(chunks: what the bundle imports at once and what it loads on first use, e.g. the database driver)',
  );
  console.log(line(header));
  for (const row of rows) console.log(line(row));
  console.log(`  budgets: zip under ${kb(BUDGET.zipBytes)}, cold import under ${BUDGET.importMs} ms`);
  for (const f of report.functions) {
    const chunkFiles = f.entries.filter((name) => name.includes('.chunks/'));
    const files = [
      ...f.entries.filter((name) => !chunkFiles.includes(name)),
      ...(chunkFiles.length ? [`${chunkFiles.length} chunk files`] : []),
    ];
    console.log(`\n  ${f.function} (${f.handler}): ${files.join(', ')}`);
    const code = f.bundled.filter((origin) => /^(handlers|shared)\//.test(origin));
    const packages = f.bundled.filter((origin) => !code.includes(origin));
    console.log(`    code: ${code.join(', ')}`);
    console.log(`    packages (${packages.length}): ${packages.join(', ')}`);
    if (f.importError) console.log(`    IMPORT FAILED: ${f.importError}`);
    if (f.forbidden.length) console.log(`    MUST NOT SHIP: ${f.forbidden.join(', ')}`);
    for (const over of f.overBudget) console.log(`    over budget: ${over}`);
  }
  if (report.placeholders.length) {
    console.log(
      `\nNOT DEPLOYABLE AS IS: placeholders for ${report.placeholders.join(', ')}. Set them (see above) to package for a deployment.`,
    );
  }
}

async function main(): Promise<void> {
  const options = parse();
  if (options.help) return console.log(usage);
  const region = options.region ?? 'eu-west-1';
  const packageDir = resolve(root, options.package);
  const { params, placeholders, sources } = deployParams(options.stage, region, options.param, !options['no-placeholders']);
  if (!options['skip-build']) {
    console.log(`Packaging stage ${options.stage}${options.region ? ` in ${options.region}` : ''} into ${packageDir}`);
    for (const source of sources) console.log(`  ${source}`);
    await runServerless([
      'package',
      '--stage',
      options.stage,
      ...(options.region ? ['--region', options.region] : []),
      '--package',
      packageDir,
      ...params.map((param) => `--param=${param}`),
    ]);
  }
  const node = options.node ? resolve(options.node) : process.execPath;
  const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout?.trim();
  if (!version) throw new UsageError(`--node ${options.node}: not a node binary that runs here`);
  const report: PackageReport = {
    stage: options.stage,
    packageDir,
    node: version,
    // With --skip-build the package was made earlier, with whatever params it had then.
    placeholders: options['skip-build'] ? [] : placeholders,
    functions: inspectPackage(packageDir, options.runs, node),
  };
  print(report);
  if (options.json) writeFileSync(options.json, `${JSON.stringify(report, null, 2)}\n`);
  const broken = report.functions.filter((f) => f.forbidden.length || f.importError);
  if (broken.length) throw new Error(`${broken.map((f) => f.function).join(', ')}: see the report above`);
  if (options.check && report.functions.some((f) => f.overBudget.length)) throw new Error('over budget (--check)');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(`\npackage: ${(error as Error).message}`);
    if (error instanceof UsageError) console.error(usage);
    process.exit(error instanceof UsageError ? 2 : 1);
  });
}
