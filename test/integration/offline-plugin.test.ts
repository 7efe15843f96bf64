/**
 * End to end: `serverless offline start` (osls + serverless-offline + our plugin) on a small service of its own
 * (test/fixtures/offline-service: its own serverless.yml, no code of this app), fed by messages published to
 * the real broker, in a vhost of the test's own. The service's queues are its own business: the test declares
 * them, as a stranger's infrastructure would, and the plugin must declare nothing of this app. A function whose
 * handler serverless-offline cannot load stops its own trigger (FUNCTION_CONFIG_NOT_VALID), and `npm run status`
 * shows it; a service whose batch size AWS would refuse does not start (test/fixtures/offline-service-invalid).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decodeRabbitMQEvent, type RabbitMQEvent } from 'middy-rabbitmq';
import { loadService, readRunnerStatus, triggersFromFunctions } from 'serverless-offline-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TriggersReport } from '../../scripts/status';
import { queueDepth } from '../support/amqp';
import { uniqueQueue, waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const serviceDir = join(root, 'test/fixtures/offline-service');
const statusDir = join(serviceDir, '.build/rabbitmq-trigger');
const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');

interface Recorded {
  fn: string;
  event: RabbitMQEvent;
}

describe('serverless offline start with the RabbitMQ trigger plugin', () => {
  let vhost: TestVhost;
  let amqp: VhostAmqp;
  let offline: ChildProcess;
  let output = '';
  let exited: Promise<number | null>;
  const recordFile = join(mkdtempSync(join(tmpdir(), 'offline-e2e-')), 'records.jsonl');
  const queue = uniqueQueue('offline-e2e');
  const flakyQueue = uniqueQueue('offline-e2e-flaky');
  const brokenQueue = uniqueQueue('offline-e2e-broken');

  const records = (): Recorded[] =>
    existsSync(recordFile)
      ? readFileSync(recordFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as Recorded)
      : [];

  beforeAll(async () => {
    vhost = await createVhost('offline-e2e');
    amqp = await openAmqp(vhost.url);
    for (const name of [queue, flakyQueue, brokenQueue]) await amqp.channel.assertQueue(name, { durable: true });
    offline = spawn(process.execPath, [join(root, 'node_modules/osls/bin/serverless.js'), 'offline', 'start'], {
      cwd: serviceDir,
      env: {
        ...process.env,
        CI: 'true',
        AMQP_URL: vhost.url,
        RECORD_FILE: recordFile,
        E2E_QUEUE: queue,
        E2E_FLAKY_QUEUE: flakyQueue,
        E2E_BROKEN_QUEUE: brokenQueue,
        HTTP_PORT: '3100',
        LAMBDA_PORT: '3102',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    offline.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    offline.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    exited = new Promise((resolve) => offline.once('exit', (code) => resolve(code)));
    await waitFor(
      () => (output.match(/"message":"consuming"/g) ?? []).length === 3,
      `the three triggers to consume. Output so far:\n${output}`,
      60_000,
    );
  }, 90_000);

  afterAll(async () => {
    if (offline && offline.exitCode === null) offline.kill('SIGKILL');
    await amqp?.close();
    await vhost?.remove();
  });

  it('declares nothing of this app on the broker: no exchange or queue of its topology', async () => {
    for (const exchange of ['orders', 'inventory', 'dlx', 'retry']) {
      const channel = await amqp.connection.createChannel();
      channel.on('error', () => undefined);
      await expect(channel.checkExchange(exchange), exchange).rejects.toThrow(/NOT_FOUND/);
    }
    const channel = await amqp.connection.createChannel();
    channel.on('error', () => undefined);
    await expect(channel.checkQueue('order-events')).rejects.toThrow(/NOT_FOUND/);
  });

  it('feeds a published message to the queue function as an aws:rmq event', async () => {
    amqp.channel.sendToQueue(queue, Buffer.from('{"order_id":"o-1"}'), { messageId: 'e2e-1', contentType: 'application/json' });
    await waitFor(() => records().some((r) => r.fn === 'recorder'), 'the recorder function to be invoked', 20_000);
    const [record] = records().filter((r) => r.fn === 'recorder');
    expect(record!.event.eventSource).toBe('aws:rmq');
    const [decoded] = decodeRabbitMQEvent(record!.event);
    expect(decoded!.queue).toBe(queue);
    expect(decoded!.body.toString()).toBe('{"order_id":"o-1"}');
    expect(decoded!.properties.messageId).toBe('e2e-1');
  });

  it("applies the function's filter criteria: what matches no pattern is acked and never invoked", async () => {
    amqp.channel.sendToQueue(queue, Buffer.from('{"order_id":"x-1"}'), { messageId: 'e2e-filtered-json' });
    amqp.channel.sendToQueue(queue, Buffer.from('no prefix here'), { messageId: 'e2e-filtered-text' });
    amqp.channel.sendToQueue(queue, Buffer.from('plain: kept'), { messageId: 'e2e-kept-text' });
    await waitFor(
      () => records().some((r) => decodeRabbitMQEvent(r.event).some((m) => m.properties.messageId === 'e2e-kept-text')),
      'the matching text body',
      20_000,
    );
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) === 0, 'the queue drained', 20_000);
    const seen = records().flatMap((r) => decodeRabbitMQEvent(r.event).map((m) => m.properties.messageId));
    expect(seen).not.toContain('e2e-filtered-json');
    expect(seen).not.toContain('e2e-filtered-text');
  });

  it('applies exactly the FilterCriteria `serverless package` puts in the template', async () => {
    const out = mkdtempSync(join(tmpdir(), 'offline-e2e-package-'));
    const env = {
      ...process.env,
      CI: 'true',
      RECORD_FILE: recordFile,
      E2E_QUEUE: queue,
      E2E_FLAKY_QUEUE: flakyQueue,
      E2E_BROKEN_QUEUE: brokenQueue,
    };
    await run(process.execPath, [join(root, 'node_modules/osls/bin/serverless.js'), 'package', '--package', out], {
      cwd: serviceDir,
      env,
      timeout: 120_000,
    });
    const template = JSON.parse(readFileSync(join(out, 'cloudformation-template-update-stack.json'), 'utf8')) as {
      Resources: Record<
        string,
        { Type: string; Properties: { FunctionName?: unknown; FilterCriteria?: { Filters: Array<{ Pattern: string }> } } }
      >;
    };
    const mappings = Object.values(template.Resources).filter(
      (r) => r.Type === 'AWS::Lambda::EventSourceMapping' && r.Properties.FilterCriteria,
    );
    expect(mappings).toHaveLength(1);
    const deployed = mappings[0]!.Properties.FilterCriteria!.Filters.map((filter) => JSON.parse(filter.Pattern) as unknown);
    const previous = process.env.E2E_QUEUE;
    process.env.E2E_QUEUE = queue;
    process.env.E2E_FLAKY_QUEUE = flakyQueue;
    try {
      const { info, functions } = loadService(serviceDir);
      const recorder = triggersFromFunctions(functions, info).find((t) => t.functionKey === 'recorder')!;
      expect(recorder.filterPatterns).toEqual(deployed);
    } finally {
      process.env.E2E_QUEUE = previous;
      delete process.env.E2E_FLAKY_QUEUE;
    }
  }, 150_000);

  it('treats a handler error reported by serverless-offline as a throw: the batch comes back', async () => {
    amqp.channel.sendToQueue(flakyQueue, Buffer.from('try me'), { messageId: 'e2e-2' });
    await waitFor(() => records().filter((r) => r.fn === 'flaky').length >= 2, 'the flaky function to be retried', 20_000);
    const [first, second] = records().filter((r) => r.fn === 'flaky');
    expect(decodeRabbitMQEvent(first!.event)[0]!.redelivered).toBe(false);
    expect(decodeRabbitMQEvent(second!.event)[0]!.redelivered).toBe(true);
    expect(output).toContain('invocation failed; the whole batch will be redelivered');
  });

  it('stops the trigger of a function serverless-offline cannot load (Runtime.HandlerNotFound): FUNCTION_CONFIG_NOT_VALID, in npm run status', async () => {
    amqp.channel.sendToQueue(brokenQueue, Buffer.from('for nobody'), { messageId: 'e2e-broken' });
    await waitFor(
      () => /"function":"broken".*"State":"Failed".*"StateTransitionReason":"FUNCTION_CONFIG_NOT_VALID"/.test(output),
      'the broken trigger to fail',
      20_000,
    );
    // The message is back in its queue, which nobody consumes any more; the other triggers run on.
    await waitFor(async () => (await queueDepth(amqp.connection, brokenQueue)) === 1, 'the message back in its queue');
    expect((await amqp.channel.checkQueue(brokenQueue)).consumerCount).toBe(0);
    expect((await amqp.channel.checkQueue(queue)).consumerCount).toBe(1);

    const run = await execFileText(process.execPath, [tsx, 'scripts/status.ts', '--json', '--service-dir', serviceDir]);
    const report = JSON.parse(run) as TriggersReport;
    const mine = report.EventSourceMappings.filter((m) => m.Local.pid === offline.pid);
    expect(mine.map((m) => [m.Local.functionKey, m.State, m.StateTransitionReason])).toEqual([
      ['recorder', 'Enabled', 'USER_INITIATED'],
      ['flaky', 'Enabled', 'USER_INITIATED'],
      ['broken', 'Failed', 'FUNCTION_CONFIG_NOT_VALID'],
    ]);
    const broken = mine.find((m) => m.Local.functionKey === 'broken')!;
    expect(broken.LastProcessingResult).toMatch(
      /^PROBLEM: Runtime\.HandlerNotFound: Handler 'handler\.missing' of function 'broken' did not load: .*handler\.missing is undefined or not exported/,
    );
    expect(broken.Local).toMatchObject({ process: 'serverless-offline', counts: { received: 3, invocations: 3, requeued: 3, acked: 0 } });
    expect(mine.find((m) => m.Local.functionKey === 'recorder')).toMatchObject({ LastProcessingResult: 'OK', Queues: [queue] });
  });

  it('stops cleanly on SIGTERM with nothing left unacknowledged, and removes its status file', async () => {
    expect(readRunnerStatus(statusDir).map((r) => r.pid)).toContain(offline.pid);
    offline.kill('SIGTERM');
    await exited;
    expect(output).toContain('"message":"stopped"');
    expect(await queueDepth(amqp.connection, queue)).toBe(0);
    expect(await queueDepth(amqp.connection, flakyQueue)).toBe(0);
    expect(readRunnerStatus(statusDir).map((r) => r.pid)).not.toContain(offline.pid);
  }, 30_000);
});

describe('serverless offline start with a rabbitmq event AWS would refuse', () => {
  it("stops before serving or consuming anything, with CreateEventSourceMapping's ValidationException", async () => {
    const result = await serverlessIn('test/fixtures/offline-service-invalid', ['offline', 'start'], 3110);
    expect(result.code).toBe(1);
    expect(result.text).toContain(
      "Function 'tooLarge', event 1 (rabbitmq): AWS would refuse this event source mapping (CreateEventSourceMapping: ValidationException): " +
        "2 validation errors detected: Value '10001' at 'batchSize' failed to satisfy constraint: Member must have value less than or equal to 10000; " +
        "Value '301' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value less than or equal to 300",
    );
    // Refused before osls's own schema check, and before serverless-offline served anything.
    expect(result.text).not.toContain('Configuration error');
    expect(result.text).not.toMatch(/Server ready|Offline \[http for lambda\] listening/);
  }, 90_000);
});

describe('serverless offline start with a hooks module that exports no hooks', () => {
  it('stops before serving anything, naming the module (it used to print the error and keep serving, without triggers)', async () => {
    const result = await serverlessIn('test/fixtures/offline-service-bad-hooks', ['offline', 'start'], 3140);
    expect(result.code).toBe(1);
    expect(result.text).toContain('custom.rabbitmqTrigger.hooks: ./no-hooks.mjs has no default export of hooks');
    expect(result.text).not.toMatch(/Server ready|Offline \[http for lambda\] listening/);
  }, 90_000);
});

describe('a fractional maximumBatchingWindow (AWS takes whole seconds)', () => {
  const refusal =
    "Function 'halfSecond', event 1 (rabbitmq): AWS would refuse this event source mapping (CloudFormation: Properties validation failed " +
    'for AWS::Lambda::EventSourceMapping): #/MaximumBatchingWindowInSeconds: expected type: Integer, found: Number (maximumBatchingWindow 0.5';
  const serverless = (args: string[]) => serverlessIn('test/fixtures/offline-service-fractional', args, 3120);

  it('stops serverless offline start (npm start) before serving anything, and serverless package before building anything', async () => {
    const offline = await serverless(['offline', 'start']);
    expect(offline.code).toBe(1);
    expect(offline.text).toContain(refusal);
    expect(offline.text).not.toMatch(/Server ready|Offline \[http for lambda\] listening/);
    const packaged = await serverless(['package', '--package', join(mkdtempSync(join(tmpdir(), 'fractional-')), 'package')]);
    expect(packaged.code).toBe(1);
    expect(packaged.text).toContain(refusal);
    expect(packaged.text).not.toContain('Packaging');
  }, 120_000);
});

/**
 * Runs osls (`args`) in a fixture service to its end: its exit code and output. serverless-offline's HTTP port is
 * `port`, its Lambda port `port + 2` (the fixtures read HTTP_PORT and LAMBDA_PORT).
 */
function serverlessIn(fixture: string, args: string[], port: number): Promise<{ code: number | undefined; text: string }> {
  return run(process.execPath, [join(root, 'node_modules/osls/bin/serverless.js'), ...args], {
    cwd: join(root, fixture),
    env: { ...process.env, CI: 'true', HTTP_PORT: String(port), LAMBDA_PORT: String(port + 2) },
    timeout: 60_000,
  }).then(
    () => ({ code: 0, text: '' }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({ code: error.code, text: `${error.stdout}${error.stderr}` }),
  );
}

/** Runs a command in the project root and resolves with its stdout (rejects with its output on failure). */
async function execFileText(command: string, args: string[]): Promise<string> {
  const { stdout } = await run(command, args, { cwd: root, env: { ...process.env, LOG_LEVEL: 'silent' }, timeout: 60_000 });
  return stdout;
}
