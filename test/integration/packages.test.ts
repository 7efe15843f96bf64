/**
 * The two workspace packages as a stranger gets them: `npm pack` makes their tarballs, a fresh serverless
 * service outside this repository (its own package.json and node_modules, plain .mjs handlers, no build step)
 * installs them with middy, serverless-offline and osls, and `serverless offline start` runs there. Messages
 * published to the service's queue reach its queue function as aws:rmq events, which the middleware decodes; a
 * duplicate is suppressed by the idempotency middleware (the package's in-memory inbox), a poison message goes
 * to the dead-letter exchange the service names; the service's HTTP function answers with what was handled.
 * The packages' dependencies come from the npm cache (--prefer-offline), the versions from this repository's lock.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { GetMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueQueue, waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const PACKAGES = { middleware: 'shared/middleware', runner: 'shared/runner' } as const;
const HTTP_PORT = 3120;
const LAMBDA_PORT = 3122;

/** The version this repository's lock file installs of a package, so the stranger's service gets the same. */
function lockedVersion(name: string): string {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
  const version = lock.packages[`node_modules/${name}`]?.version;
  if (!version) throw new Error(`${name} is not in package-lock.json`);
  return version;
}

interface PackedFile {
  path: string;
}

/** `npm pack --dry-run --json` of one workspace package: the files its tarball would hold. */
async function packedFiles(dir: string): Promise<string[]> {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: join(root, dir) });
  const [report] = JSON.parse(stdout) as Array<{ files: PackedFile[] }>;
  return report!.files.map((f) => f.path).sort();
}

const SERVERLESS_YML = `service: packages-e2e
frameworkVersion: '4'

plugins:
  - serverless-offline-rabbitmq
  - serverless-offline

provider:
  name: aws
  runtime: nodejs22.x
  stage: local
  timeout: 10
  environment:
    AMQP_URL: \${env:AMQP_URL}
    RECORD_FILE: \${env:RECORD_FILE}
    DEAD_LETTER_EXCHANGE: \${env:DEAD_LETTER_EXCHANGE}

custom:
  rabbitmqTrigger:
    localBatchingWindow: 0.1
  serverless-offline:
    httpPort: ${HTTP_PORT}
    lambdaPort: ${LAMBDA_PORT}

functions:
  orders:
    handler: orders.handler
    events:
      - rabbitmq:
          arn: arn:aws:mq:eu-west-1:000000000000:broker:e2e:b-00000000-0000-0000-0000-000000000000
          basicAuthArn: arn:aws:secretsmanager:eu-west-1:000000000000:secret:e2e
          queue: \${env:ORDERS_QUEUE}
          batchSize: 10
  handled:
    handler: handled.handler
    events:
      - httpApi:
          method: GET
          path: /handled
`;

const ORDERS_MJS = `import { appendFileSync } from 'node:fs';
import { memoryInboxStore, queueFunction } from 'middy-rabbitmq';
import { Broker, Publisher } from 'middy-rabbitmq/amqp';
import { z } from 'zod';

const publisher = new Publisher(new Broker({ urls: [process.env.AMQP_URL] }));

export const handler = queueFunction({
  name: 'orders',
  consumer: 'packages-e2e-orders',
  schema: z.object({ orderId: z.string() }),
  store: memoryInboxStore(),
  publisher,
  deadLetterExchange: process.env.DEAD_LETTER_EXCHANGE,
  handle: async (record) => {
    const { queue, messageId, attempt, payload } = record;
    appendFileSync(process.env.RECORD_FILE, JSON.stringify({ queue, messageId, attempt, payload }) + '\\n');
  },
});
`;

const HANDLED_MJS = `import { existsSync, readFileSync } from 'node:fs';

export const handler = async () => ({
  statusCode: 200,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(
    existsSync(process.env.RECORD_FILE)
      ? readFileSync(process.env.RECORD_FILE, 'utf8').split('\\n').filter(Boolean).map((line) => JSON.parse(line))
      : [],
  ),
});
`;

interface Handled {
  queue: string;
  messageId: string;
  attempt: number;
  payload: { orderId: string };
}

describe('the packages, packed and installed into a service of their own', () => {
  const work = mkdtempSync(join(tmpdir(), 'packages-e2e-'));
  const serviceDir = join(work, 'service');
  const recordFile = join(work, 'handled.jsonl');
  const queue = uniqueQueue('packages-e2e');
  const deadLetterExchange = `${queue}.dlx`;
  const deadLetterQueue = `${queue}.dlq`;
  let vhost: TestVhost;
  let amqp: VhostAmqp;
  let offline: ChildProcess | undefined;
  let output = '';

  const handled = async (): Promise<Handled[]> => {
    const response = await fetch(`http://127.0.0.1:${HTTP_PORT}/handled`);
    expect(response.status).toBe(200);
    return (await response.json()) as Handled[];
  };
  const publish = (body: string, messageId: string) =>
    new Promise<void>((resolve, reject) =>
      amqp.channel.sendToQueue(queue, Buffer.from(body), { messageId, contentType: 'application/json', persistent: true }, (error) =>
        error ? reject(error) : resolve(),
      ),
    );

  beforeAll(async () => {
    // npm pack runs each package's `prepare` (its build), so the tarballs hold what the sources say now.
    const { stdout } = await run(
      'npm',
      ['pack', '--json', '--pack-destination', work, '--workspace', PACKAGES.middleware, '--workspace', PACKAGES.runner],
      { cwd: root },
    );
    const tarballs = Object.fromEntries(
      (JSON.parse(stdout) as Array<{ name: string; filename: string }>).map((p) => [p.name, join(work, p.filename)]),
    );
    mkdirSync(serviceDir);
    writeFileSync(
      join(serviceDir, 'package.json'),
      JSON.stringify(
        {
          name: 'packages-e2e',
          private: true,
          type: 'module',
          dependencies: {
            'middy-rabbitmq': `file:${tarballs['middy-rabbitmq']}`,
            'serverless-offline-rabbitmq': `file:${tarballs['serverless-offline-rabbitmq']}`,
            '@middy/core': lockedVersion('@middy/core'),
            amqplib: lockedVersion('amqplib'),
            zod: lockedVersion('zod'),
          },
          devDependencies: {
            serverless: `npm:osls@${lockedVersion('osls')}`,
            'serverless-offline': lockedVersion('serverless-offline'),
          },
        },
        null,
        2,
      ),
    );
    writeFileSync(join(serviceDir, 'serverless.yml'), SERVERLESS_YML);
    writeFileSync(join(serviceDir, 'orders.mjs'), ORDERS_MJS);
    writeFileSync(join(serviceDir, 'handled.mjs'), HANDLED_MJS);
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: serviceDir,
      maxBuffer: 16 * 1024 * 1024,
    });

    // The service's own infrastructure, as a stranger would declare it: its queue, and its dead-letter exchange
    // routing by queue name to the queue's DLQ.
    vhost = await createVhost('packages-e2e');
    amqp = await openAmqp(vhost.url);
    await amqp.channel.assertQueue(queue, { durable: true });
    await amqp.channel.assertExchange(deadLetterExchange, 'direct', { durable: true });
    await amqp.channel.assertQueue(deadLetterQueue, { durable: true });
    await amqp.channel.bindQueue(deadLetterQueue, deadLetterExchange, queue);

    offline = spawn(process.execPath, [join(serviceDir, 'node_modules/serverless/bin/serverless.js'), 'offline', 'start'], {
      cwd: serviceDir,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        CI: 'true',
        AMQP_URL: vhost.url,
        ORDERS_QUEUE: queue,
        RECORD_FILE: recordFile,
        DEAD_LETTER_EXCHANGE: deadLetterExchange,
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    offline.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    offline.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(
      () => output.includes('"message":"consuming"') && output.includes(`${HTTP_PORT}`),
      `serverless offline start:\n${output}`,
      60_000,
    );
  }, 180_000);

  afterAll(async () => {
    if (offline && offline.exitCode === null) {
      const exited = new Promise((resolve) => offline!.once('exit', resolve));
      offline.kill('SIGINT');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
      if (offline.exitCode === null) offline.kill('SIGKILL');
    }
    await amqp?.close();
    await vhost?.remove();
    rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it('packs only what a user needs: the build, the README, the changelog and the licence, no tests, fixtures or sources', async () => {
    for (const dir of Object.values(PACKAGES)) {
      const files = await packedFiles(dir);
      expect(files, dir).toContain('package.json');
      expect(files, dir).toContain('README.md');
      expect(files, dir).toContain('CHANGELOG.md');
      expect(files, dir).toContain('LICENSE'); // package.json says MIT: the text goes with it
      expect(files, dir).toContain('dist/index.js');
      expect(files, dir).toContain('dist/index.d.ts');
      const unexpected = files.filter(
        (f) => !['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE'].includes(f) && !f.startsWith('dist/'),
      );
      expect(unexpected, dir).toEqual([]);
      expect(
        files.filter((f) => /(^|\/)(test|tests|__tests__|fixtures?|aws-samples)(\/|$)|\.(test|spec)\.|tsconfig/.test(f)),
        dir,
      ).toEqual([]);
      // Declarations, JavaScript and the JavaScript's source maps: no TypeScript sources.
      expect(
        files.filter((f) => f.startsWith('dist/') && !/\.(js|d\.ts|js\.map)$/.test(f)),
        dir,
      ).toEqual([]);
    }
  });

  it('delivers a published message to the queue function as an aws:rmq record the middleware decoded', async () => {
    await publish(JSON.stringify({ orderId: 'o-1' }), 'm-1');
    await waitFor(async () => (await handled()).some((h) => h.messageId === 'm-1'), `m-1 to be handled:\n${output}`, 20_000);
    expect((await handled()).find((h) => h.messageId === 'm-1')).toEqual({
      queue,
      messageId: 'm-1',
      attempt: 1,
      payload: { orderId: 'o-1' },
    });
  });

  it('suppresses a duplicate (same messageId) through the idempotency middleware', async () => {
    await publish(JSON.stringify({ orderId: 'o-2' }), 'm-2');
    await waitFor(async () => (await handled()).some((h) => h.messageId === 'm-2'), `m-2 to be handled:\n${output}`, 20_000);
    await publish(JSON.stringify({ orderId: 'o-2-again' }), 'm-2');
    // A marker after the duplicate: once it is handled, the duplicate's batch is behind it.
    await publish(JSON.stringify({ orderId: 'o-3' }), 'm-3');
    await waitFor(async () => (await handled()).some((h) => h.messageId === 'm-3'), `m-3 to be handled:\n${output}`, 20_000);
    const m2 = (await handled()).filter((h) => h.messageId === 'm-2');
    expect(m2.map((h) => h.payload.orderId)).toEqual(['o-2']);
    await waitFor(async () => (await amqp.channel.checkQueue(queue)).messageCount === 0, 'the queue to be empty');
  });

  it('dead-letters a poison message to the exchange the service names, with why', async () => {
    await publish('{ not json', 'm-poison');
    let message: GetMessage | false = false;
    await waitFor(
      async () => {
        message = await amqp.channel.get(deadLetterQueue, { noAck: true });
        return message !== false;
      },
      `the poison message in ${deadLetterQueue}:\n${output}`,
      20_000,
    );
    message = message as GetMessage | false;
    if (!message) throw new Error('unreachable');
    expect(message.content.toString()).toBe('{ not json');
    expect(message.properties.messageId).toBe('m-poison');
    expect(message.properties.headers?.['x-error-class']).toBe('permanent');
    expect(message.properties.headers?.['x-error-name']).toBe('MalformedMessageError');
    expect((await handled()).some((h) => h.messageId === 'm-poison')).toBe(false);
  });
});
