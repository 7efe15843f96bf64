/**
 * `npm run package` (serverless package for a deployment stage, then the report) builds what would be
 * deployed: one small bundle per function, and a CloudFormation template whose rabbitmq events became Amazon
 * MQ event source mappings. Runs once, without AWS credentials, with deployment params given as --param.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { listZip, readEntry, zipEntries } from '../../scripts/lib/zip';
import type { PackageReport } from '../../scripts/package-report';
import { packageService } from '../support/packaged';

const root = fileURLToPath(new URL('../..', import.meta.url));

const params = {
  brokerArn: 'arn:aws:mq:eu-west-1:123456789012:broker:orders:b-1234abcd-56ef-78ab-90cd-1234567890ab',
  brokerSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders-rabbitmq-AbCdEf',
  virtualHost: '/orders',
  // No password here: the functions log in with the broker secret's user (AMQP_USERNAME / AMQP_PASSWORD below).
  amqpUrl: 'amqps://b-1234abcd-56ef-78ab-90cd-1234567890ab.mq.eu-west-1.amazonaws.com:5671/orders',
  // Secrets as CloudFormation dynamic references, resolved by CloudFormation at deploy time, never written here.
  databaseUrl: '{{resolve:secretsmanager:prod/rabbit-functions/db:SecretString:url}}',
  adminToken: '{{resolve:ssm:/rabbit-functions/prod/admin-token}}',
  subnetIds: 'subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788',
  securityGroupIds: 'sg-0123456789abcdef0',
};

/** Nothing local-only may be in a deployed zip or bundled into one. */
const LOCAL_ONLY = /serverless-offline|offline-plugin|better-sqlite3|(^|\/)osls\/|serverless-esbuild/;

/** A resource of the CloudFormation template, with the properties these tests read (functions, event source mappings, role). */
interface Resource {
  Type: string;
  Properties: {
    FunctionName?: unknown;
    Runtime?: string;
    Timeout?: number;
    Handler?: string;
    Code?: { S3Key?: string };
    Environment?: { Variables?: Record<string, unknown> };
    VpcConfig?: unknown;
    Queues?: string[];
    BatchSize?: number;
    MaximumBatchingWindowInSeconds?: number;
    Enabled?: boolean;
    EventSourceArn?: unknown;
    SourceAccessConfigurations?: unknown;
    Policies?: unknown;
  };
}

/** A `rabbitmq` event of functions/*.yml. */
interface RabbitMQEventDefinition {
  queue: string;
  batchSize?: number;
  maximumBatchingWindow?: number;
  enabled?: boolean;
}

interface FunctionDefinition {
  handler: string;
  events?: Array<{ rabbitmq?: RabbitMQEventDefinition }>;
}

/** functions/*.yml, as written (the definitions the template must reflect). */
function functionDefinitions(): Record<string, FunctionDefinition> {
  const all: Record<string, FunctionDefinition> = {};
  for (const file of readdirSync(join(root, 'functions')).filter((f) => f.endsWith('.yml'))) {
    Object.assign(all, parse(readFileSync(join(root, 'functions', file), 'utf8')));
  }
  return all;
}

describe('npm run package', () => {
  const dir = mkdtempSync(join(tmpdir(), 'package-test-'));
  const packageDir = join(dir, 'package');
  let output = '';
  let exitCode: number | null = null;
  let report: PackageReport;
  let resources: Record<string, Resource>;
  const definitions = functionDefinitions();

  beforeAll(async () => {
    const run = await packageService(dir, ['--runs', '3', ...Object.entries(params).map(([k, v]) => `--param=${k}=${v}`)]);
    ({ output, exitCode, report } = run);
    expect(exitCode, output).toBe(0);
    resources = (
      JSON.parse(readFileSync(join(packageDir, 'cloudformation-template-update-stack.json'), 'utf8')) as {
        Resources: Record<string, Resource>;
      }
    ).Resources;
  }, 300_000);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const lambdas = () => Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
  const logicalIdOf = (key: string) => lambdas().find(([, r]) => r.Properties.FunctionName === `rabbit-functions-prod-${key}`)?.[0];

  it('packages stage prod by default, from the params given, without placeholders', () => {
    expect(report.stage).toBe('prod');
    expect(report.placeholders).toEqual([]);
    expect(output).not.toContain('NOT DEPLOYABLE');
    for (const name of ['brokerArn', 'brokerSecretArn', 'amqpUrl', 'databaseUrl']) expect(output).toContain(`${name}: --param`);
    expect(output).toContain('the functions run in that VPC');
  });

  it('builds one zip per function, each with only its own bundle, its chunks and their source maps', () => {
    const zips = readdirSync(packageDir)
      .filter((f) => f.endsWith('.zip'))
      .sort();
    expect(zips).toEqual(
      Object.keys(definitions)
        .map((key) => `${key}.zip`)
        .sort(),
    );
    for (const [key, fn] of Object.entries(definitions)) {
      const file = fn.handler.slice(0, fn.handler.lastIndexOf('.'));
      const names = listZip(join(packageDir, `${key}.zip`)).map((e) => e.name);
      // What the bundle loads later (the store, amqplib) is in chunks of its own folder, never another function's.
      const chunks = names.filter((name) => name.startsWith(`${file}.chunks/`));
      expect(names.sort(), key).toEqual([`${file}.mjs`, `${file}.mjs.map`, ...chunks].sort());
      for (const chunk of chunks) expect(chunk, key).toMatch(/\.chunks\/[\w-]+\.mjs(\.map)?$/);
      for (const chunk of chunks.filter((name) => name.endsWith('.mjs'))) expect(chunks, key).toContain(`${chunk}.map`);
    }
    // The store's driver loads on first use: order intake's bundle imports it from a chunk.
    expect(
      listZip(join(packageDir, 'orderIntake.zip')).some((e) => /^handlers\/order-intake\.chunks\/postgres-\w+\.mjs$/.test(e.name)),
    ).toBe(true);
  });

  it('runs every function on nodejs22.x with the handler of its definition and the deployment params', () => {
    expect(lambdas()).toHaveLength(Object.keys(definitions).length);
    for (const [key, fn] of Object.entries(definitions)) {
      const id = logicalIdOf(key);
      expect(id, key).toBeDefined();
      const props = resources[id!]!.Properties;
      expect(props.Runtime).toBe('nodejs22.x');
      expect(props.Handler).toBe(fn.handler);
      expect(props.Code?.S3Key).toMatch(new RegExp(`/${key}\\.zip$`));
      expect(props.Environment?.Variables).toMatchObject({
        AMQP_URL: params.amqpUrl,
        DATABASE_URL: params.databaseUrl,
        AMQP_VHOST: params.virtualHost,
        // Every user's orders only with the admin token in a deployment.
        ORDERS_LIST_ADMIN_ONLY: 'true',
      });
      // In the broker's and the database's VPC, from the subnetIds and securityGroupIds params.
      expect(props.VpcConfig).toEqual({ SubnetIds: params.subnetIds.split(','), SecurityGroupIds: [params.securityGroupIds] });
    }
  });

  it("gives orderIntake a timeout below API Gateway's 30 s, and osls warns about none of this change's functions", () => {
    expect(resources[logicalIdOf('orderIntake')!]!.Properties.Timeout).toBeLessThan(30);
    // A redrive over HTTP runs as a job (shared/dlq/jobs.ts), so the DLQ reprocessor's requests are short too.
    expect(resources[logicalIdOf('dlqReprocessor')!]!.Properties.Timeout).toBeLessThan(30);
    for (const key of ['orderIntake', 'outboxRelay', 'inventoryReservation', 'notification', 'orderStatus', 'dlqReprocessor']) {
      expect(output).not.toMatch(new RegExp(`Warning:[^\\n]*\\b${key}\\b`));
    }
  });

  it("takes secrets from Secrets Manager and SSM references, and the broker user from the event source mappings' own secret", () => {
    const secret = (key: string) => `{{resolve:secretsmanager:${params.brokerSecretArn}:SecretString:${key}}}`;
    for (const [key] of lambdas()) {
      const variables = resources[key]!.Properties.Environment?.Variables;
      expect(variables).toMatchObject({
        DATABASE_URL: params.databaseUrl,
        ADMIN_TOKEN: params.adminToken,
        AMQP_URL: params.amqpUrl,
        AMQP_USERNAME: secret('username'),
        AMQP_PASSWORD: secret('password'),
      });
    }
    // The same secret the event source mappings log in with.
    const mapping = Object.values(resources).find((r) => r.Type === 'AWS::Lambda::EventSourceMapping')!;
    expect(mapping.Properties.SourceAccessConfigurations).toContainEqual({ Type: 'BASIC_AUTH', URI: params.brokerSecretArn });
    // No secret in the template in clear: only references.
    const template = readFileSync(join(packageDir, 'cloudformation-template-update-stack.json'), 'utf8');
    expect(template).not.toMatch(/postgres:\/\/[^{"]*:[^{"]*@/);
  });

  it('runs the outbox relay every minute, as a scheduled function', () => {
    const rules = Object.values(resources).filter((r) => r.Type === 'AWS::Events::Rule');
    expect(rules.map((r) => (r.Properties as { ScheduleExpression?: string }).ScheduleExpression)).toEqual(['rate(1 minute)']);
    // Enabled when deployed (locally the runner's hooks run the relay, and serverless-offline leaves it disabled).
    expect((rules[0]!.Properties as { State?: string }).State).toBe('ENABLED');
    expect(JSON.stringify(rules[0]!.Properties)).toContain(logicalIdOf('outboxRelay')!);
  });

  it('turns each rabbitmq event into an Amazon MQ event source mapping for the right queue, batch size and window', () => {
    const mappings = Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping');
    const expected = Object.entries(definitions).flatMap(([key, fn]) =>
      (fn.events ?? []).flatMap((e) => (e.rabbitmq ? [{ key, event: e.rabbitmq }] : [])),
    );
    expect(expected.map((e) => [e.key, e.event.queue])).toEqual(
      expect.arrayContaining([
        ['inventoryReservation', 'order-events'],
        ['notification', 'inventory-events'],
        ['orderStatus', 'order-status-events'],
      ]),
    );
    expect(mappings).toHaveLength(expected.length);
    for (const { key, event } of expected) {
      const mapping = mappings.find((m) => m.Properties.Queues?.[0] === event.queue);
      expect(mapping, event.queue).toBeDefined();
      const p = mapping!.Properties;
      expect(p.FunctionName).toEqual({ 'Fn::GetAtt': [logicalIdOf(key), 'Arn'] });
      expect(p.Queues).toEqual([event.queue]);
      // 100 for the event functions; 1 for dlqRedriveJob (one redrive job per invocation).
      expect(p.BatchSize).toBe(key === 'dlqRedriveJob' ? 1 : 100);
      expect(p.BatchSize).toBe(event.batchSize);
      // As functions/*.yml says; absent there means absent here (AWS's default window for Amazon MQ, 500 ms).
      expect(p.MaximumBatchingWindowInSeconds).toBe(event.maximumBatchingWindow);
      expect(p.Enabled).toBe(event.enabled ?? true);
      expect(p.EventSourceArn).toBe(params.brokerArn);
      expect(p.SourceAccessConfigurations).toEqual(
        expect.arrayContaining([
          { Type: 'BASIC_AUTH', URI: params.brokerSecretArn },
          { Type: 'VIRTUAL_HOST', URI: params.virtualHost },
        ]),
      );
    }
  });

  it('lets the functions read the broker secret and describe the broker (what the event source mapping needs)', () => {
    const role = Object.values(resources).find((r) => r.Type === 'AWS::IAM::Role');
    const statements = JSON.stringify(role?.Properties.Policies);
    expect(statements).toContain('secretsmanager:GetSecretValue');
    expect(statements).toContain(params.brokerSecretArn);
    expect(statements).toContain('mq:DescribeBroker');
    expect(statements).toContain(params.brokerArn);
  });

  it('ships no local-only code: no serverless-offline, no offline plugin, no better-sqlite3, in the zip or in the bundle', () => {
    for (const zip of readdirSync(packageDir).filter((f) => f.endsWith('.zip'))) {
      const data = readFileSync(join(packageDir, zip));
      const entries = zipEntries(data);
      for (const entry of entries) expect(entry.name, zip).not.toMatch(LOCAL_ONLY);
      const sources = entries
        .filter((e) => e.name.endsWith('.map'))
        .flatMap((map) => (JSON.parse(readEntry(data, map).toString('utf8')) as { sources: string[] }).sources);
      expect(sources.length, zip).toBeGreaterThan(0);
      for (const source of sources) expect(source, zip).not.toMatch(LOCAL_ONLY);
      expect(
        sources.some((s) => s.includes('shared/runner/')),
        `${zip} bundles the local runner`,
      ).toBe(false);
    }
  });

  it('bundles only what each function imports: a queue function has no HTTP framework, the HTTP function has no queue middleware', () => {
    const bundled = Object.fromEntries(report.functions.map((f) => [f.function, f.bundled]));
    // The middleware package (shared/middleware, middy-rabbitmq) also holds the tracing and AMQP helpers an HTTP
    // function uses; its queue middleware proper is what the HTTP function must not carry.
    const sourcesOf = (key: string): string[] => {
      const data = readFileSync(join(packageDir, `${key}.zip`));
      // Every source map of the zip: the function's bundle and its chunks.
      return zipEntries(data)
        .filter((e) => e.name.endsWith('.map'))
        .flatMap((map) => (JSON.parse(readEntry(data, map).toString('utf8')) as { sources: string[] }).sources);
    };
    const QUEUE_MIDDLEWARE = /shared\/middleware\/(records|idempotency|poison-messages|queue-function|parse-body|rmq-event\/)/;
    expect(sourcesOf('inventoryReservation').filter((s) => QUEUE_MIDDLEWARE.test(s)).length).toBeGreaterThan(0);
    expect(bundled.inventoryReservation).not.toContain('fastify');
    expect(bundled.inventoryReservation).not.toContain('shared/http');
    expect(bundled.orderIntake).toContain('fastify');
    expect(sourcesOf('orderIntake').filter((s) => QUEUE_MIDDLEWARE.test(s))).toEqual([]);
    // The redrive job function needs neither HTTP nor a database: the job's record is on the broker.
    expect(bundled.dlqRedriveJob).toContain('shared/dlq');
    expect(bundled.dlqRedriveJob).not.toContain('fastify');
    expect(bundled.dlqRedriveJob).not.toContain('shared/store');
    // Without the tracing param the OpenTelemetry SDK and exporter stay out (only the API): package-tracing.test.ts.
    for (const f of report.functions) {
      expect(f.bundled, f.function).toContain('@opentelemetry/api');
      expect(
        f.bundled.filter((origin) => origin.startsWith('@opentelemetry/')),
        f.function,
      ).toEqual(['@opentelemetry/api']);
    }
  });

  it('minifies, links the source map and leaves the sources out of it', () => {
    const data = readFileSync(join(packageDir, 'inventoryReservation.zip'));
    const entries = zipEntries(data);
    const code = readEntry(data, entries.find((e) => e.name === 'handlers/inventory-reservation.mjs')!).toString('utf8');
    const map = JSON.parse(readEntry(data, entries.find((e) => e.name === 'handlers/inventory-reservation.mjs.map')!).toString('utf8')) as {
      sourcesContent?: unknown;
    };
    // Minified: a few very long lines (the newlines left are inside template literals).
    expect(code.length / code.split('\n').length).toBeGreaterThan(1_000);
    expect(code.trimEnd()).toMatch(/\/\/# sourceMappingURL=inventory-reservation\.mjs\.map$/);
    expect(map.sourcesContent).toBeUndefined();
  });

  it('keeps every zip under 1 MB, and every bundle imports alone (no node_modules) and exports its handler', () => {
    expect(report.functions).toHaveLength(Object.keys(definitions).length);
    for (const f of report.functions) {
      expect(f.zipBytes, f.function).toBeLessThan(1_000_000);
      expect(f.importError, f.function).toBeNull();
      expect(f.importMs, f.function).toBeGreaterThan(0);
      expect(f.importRuns).toHaveLength(3);
      expect(f.forbidden).toEqual([]);
    }
    expect(output).toMatch(/cold import/);
  });
});
