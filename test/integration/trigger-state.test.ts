/**
 * The trigger's state as AWS reports an event source mapping's, against the real broker: State,
 * StateTransitionReason, LastProcessingResult and counts; a handler that does not load stops its own trigger
 * (FUNCTION_CONFIG_NOT_VALID) while the others run; a broker that refuses the login (EVENT_SOURCE_AUTHN_ERROR),
 * the virtual host or a queue (EVENT_SOURCE_AUTHZ_ERROR) stops what it refuses. Users and virtual hosts are the
 * test's own (rabbitmqctl or the management API: support/broker-control.ts), deleted afterwards.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeRabbitMQEvent } from 'middy-rabbitmq';
import { bundledHandlerLoader, InProcessInvoker, type Runner } from 'serverless-offline-rabbitmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openTestAmqp, queueDepth, type TestAmqp } from '../support/amqp';
import { brokerControl } from '../support/broker-control';
import { deleteQueues, type TestHandler, testRunner, trigger, uniqueQueue, waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost } from '../support/vhost';

/** A RabbitMQ user of the test's own; `grant` gives it (configure, write, read) patterns in `vhost`. */
async function createUser(prefix: string): Promise<{ name: string; password: string; remove(): Promise<void> }> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  const control = await brokerControl();
  await control.addUser(name, password);
  return { name, password, remove: async () => void (await control.deleteUser(name).catch(() => undefined)) };
}

function urlFor(vhost: TestVhost, user: string, password: string): string {
  const url = new URL(vhost.url);
  url.username = encodeURIComponent(user);
  url.password = encodeURIComponent(password);
  return url.toString();
}

const stateLines = (lines: Array<Record<string, unknown>>, functionKey: string) =>
  lines.filter((l) => l.message === 'trigger state changed' && l.function === functionKey).map((l) => l.State);

describe('trigger state, as AWS reports an event source mapping (real broker)', () => {
  let amqp: TestAmqp;
  const queues: string[] = [];
  const runners: Runner[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    amqp = await openTestAmqp();
  });
  afterEach(async () => {
    await Promise.all(runners.splice(0).map((runner) => runner.stop()));
    await deleteQueues(amqp, queues.splice(0));
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await amqp.close();
  });

  it('goes Creating, Enabling, Enabled, Disabling, Disabled, one log line each; LastProcessingResult OK after a batch', async () => {
    const queue = uniqueQueue('state');
    queues.push(queue);
    const seen: string[] = [];
    const handler: TestHandler = async (event) => {
      seen.push(...decodeRabbitMQEvent(event).map((r) => r.body.toString()));
    };
    const { runner, logs } = testRunner(
      [
        trigger(queue, { functionKey: 'healthy', batchSize: 5, maximumBatchingWindow: 0.05 }),
        trigger(uniqueQueue('state-off'), { functionKey: 'off', enabled: false }),
      ],
      { healthy: handler },
    );
    runners.push(runner);
    const [healthy] = runner.triggers;
    expect(healthy!.describe()).toMatchObject({
      State: 'Creating',
      StateTransitionReason: 'USER_INITIATED',
      LastProcessingResult: 'No records processed',
    });

    await runner.start();
    expect(healthy!.describe()).toMatchObject({
      State: 'Enabled',
      StateTransitionReason: 'USER_INITIATED',
      LastProcessingResult: 'No records processed',
    });
    for (const body of ['a', 'b', 'c']) amqp.channel.sendToQueue(queue, Buffer.from(body));
    await waitFor(() => seen.length === 3, 'the batch');
    await waitFor(() => healthy!.describe().Local.counts.acked === 3, 'the batch acked');
    const described = healthy!.describe();
    expect(described).toMatchObject({
      State: 'Enabled',
      LastProcessingResult: 'OK',
      Queues: [queue],
      BatchSize: 5,
      MaximumBatchingWindowInSeconds: 0.05,
      FunctionArn: expect.stringMatching(/^arn:aws:lambda:[\w-]+:\d{12}:function:test-local-healthy$/),
      EventSourceArn: expect.stringMatching(/^arn:aws:mq:/),
      Local: { consumer: 'consuming', counts: { received: 3, acked: 3, requeued: 0, filtered: 0, deadLettered: 0 }, requeueDelayMs: 0 },
    });
    expect(Date.parse(described.Local.lastProcessingResultAt!)).toBeGreaterThan(Date.parse(described.LastModified) - 1);
    // The disabled event is listed as AWS lists a mapping created with Enabled: false.
    expect(runner.mappings().map((m) => [m.Local.functionKey, m.State, m.StateTransitionReason])).toEqual([
      ['healthy', 'Enabled', 'USER_INITIATED'],
      ['off', 'Disabled', 'USER_INITIATED'],
    ]);

    await runner.stop();
    expect(healthy!.describe()).toMatchObject({ State: 'Disabled', StateTransitionReason: 'USER_INITIATED', LastProcessingResult: 'OK' });
    expect(stateLines(logs.lines, 'healthy')).toEqual(['Enabling', 'Enabled', 'Disabling', 'Disabled']);
  });

  it('a handler that does not load stops its own trigger (FUNCTION_CONFIG_NOT_VALID), its messages back in the queue; the others run on', async () => {
    // A service of handlers bundled and imported as `npm run worker` does.
    const serviceDir = mkdtempSync(join(tmpdir(), 'trigger-state-service-'));
    writeFileSync(
      join(serviceDir, 'good.mjs'),
      'export const handler = async (event) => { (globalThis.__triggerStateSeen ??= []).push(event); };\n',
    );
    writeFileSync(
      join(serviceDir, 'throws.mjs'),
      "throw new Error('no DATABASE_URL at import');\nexport const handler = async () => undefined;\n",
    );
    const seen = (): unknown[] => ((globalThis as { __triggerStateSeen?: unknown[] }).__triggerStateSeen ??= []);
    const good = uniqueQueue('state-good');
    const broken = {
      missingModule: { queue: uniqueQueue('state-nomodule'), handler: 'nowhere.handler', errorType: 'Runtime.ImportModuleError' },
      missingExport: { queue: uniqueQueue('state-noexport'), handler: 'good.nothere', errorType: 'Runtime.HandlerNotFound' },
      importThrows: { queue: uniqueQueue('state-throws'), handler: 'throws.handler', errorType: 'Runtime.ImportModuleError' },
    };
    queues.push(good, ...Object.values(broken).map((b) => b.queue));
    const { runner, logs } = testRunner(
      [
        trigger(good, { functionKey: 'good', handler: 'good.handler', batchSize: 1, maximumBatchingWindow: 0 }),
        ...Object.entries(broken).map(([functionKey, b]) =>
          trigger(b.queue, { functionKey, handler: b.handler, batchSize: 10, maximumBatchingWindow: 0.05 }),
        ),
      ],
      {},
      { invoker: new InProcessInvoker(bundledHandlerLoader(serviceDir)) },
    );
    runners.push(runner);
    await runner.start();
    for (const b of Object.values(broken)) for (const body of ['one', 'two']) amqp.channel.sendToQueue(b.queue, Buffer.from(body));
    amqp.channel.sendToQueue(good, Buffer.from('first'));

    const byKey = (key: string) => runner.triggers.find((t) => t.definition.functionKey === key)!;
    for (const [key, b] of Object.entries(broken)) {
      await waitFor(() => byKey(key).mappingStatus === 'Failed', `${key} to fail`);
      const described = byKey(key).describe();
      expect(described.StateTransitionReason).toBe('FUNCTION_CONFIG_NOT_VALID');
      expect(described.LastProcessingResult).toMatch(new RegExp(`^PROBLEM: ${b.errorType.replace('.', '\\.')}: Handler '${b.handler}'`));
      expect(described.Local.consumer).toBe('failed');
      // Nothing was lost: both messages are back in the queue, and nobody consumes it any more.
      await waitFor(async () => (await queueDepth(amqp.connection, b.queue)) === 2, `${key}'s messages back in its queue`);
      expect((await amqp.channel.checkQueue(b.queue)).consumerCount).toBe(0);
      // Three invocations in a row that could not load it (a bundle caught mid-rebuild gets another chance).
      expect(described.Local.counts).toMatchObject({ invocations: 3, failedInvocations: 3, acked: 0 });
      expect(described.Local.counts.requeued).toBe(described.Local.counts.received);
      expect(stateLines(logs.lines, key)).toEqual(['Enabling', 'Enabled', 'Failed']);
    }
    expect(
      logs.lines.find((l) => l.message === 'trigger state changed' && l.function === 'importThrows' && l.State === 'Failed')?.detail,
    ).toContain('no DATABASE_URL at import');

    // The healthy function goes on, before and after the others failed.
    amqp.channel.sendToQueue(good, Buffer.from('second'));
    await waitFor(() => seen().length === 2, 'the good function, twice');
    expect(byKey('good').describe()).toMatchObject({ State: 'Enabled', LastProcessingResult: 'OK' });
    // A failed trigger stays failed through stop(), and stop() still returns.
    await runner.stop();
    expect(runner.triggers.map((t) => t.mappingStatus)).toEqual(['Disabled', 'Failed', 'Failed', 'Failed']);
  });

  it('wrong broker credentials: every trigger Failed with EVENT_SOURCE_AUTHN_ERROR, and the runner stops reconnecting', async () => {
    const vhost = await createVhost('state-authn');
    const user = await createUser('state-authn');
    cleanups.push(vhost.remove, user.remove);
    await (await brokerControl()).setPermissions(vhost.name, user.name, '.*', '.*', '.*');
    const { runner, logs } = testRunner(
      [trigger(uniqueQueue('state-authn-a'), { functionKey: 'a' }), trigger(uniqueQueue('state-authn-b'), { functionKey: 'b' })],
      {},
      { env: { AMQP_URL: urlFor(vhost, user.name, 'not-the-password') }, hooks: false },
    );
    runners.push(runner);
    await runner.start(); // resolves: nothing will ever consume
    for (const t of runner.triggers) {
      expect(t.describe()).toMatchObject({
        State: 'Failed',
        StateTransitionReason: 'EVENT_SOURCE_AUTHN_ERROR',
        LastProcessingResult: expect.stringContaining('ACCESS_REFUSED - Login was refused'),
        Local: { stateTransitionDetail: expect.stringContaining(`RabbitMQ refused the login of user '${user.name}'`) },
      });
    }
    expect(runner.broker.status).toMatchObject({ state: 'closed', reconnecting: false });
    expect(logs.lines.filter((l) => l.message === 'could not connect to RabbitMQ')).toHaveLength(1);
    expect(JSON.stringify(logs.lines)).not.toContain('not-the-password');
  });

  it('a user who may not read a queue: that trigger Failed with EVENT_SOURCE_AUTHZ_ERROR, the one it may read runs', async () => {
    const vhost = await createVhost('state-authz');
    const user = await createUser('state-authz');
    cleanups.push(vhost.remove, user.remove);
    const readable = uniqueQueue('readable');
    const forbidden = uniqueQueue('forbidden');
    const admin = await openAmqp(vhost.url);
    cleanups.push(admin.close);
    for (const queue of [readable, forbidden]) await admin.channel.assertQueue(queue, { durable: true });
    // Configure nothing, write anything, read only `readable`.
    await (await brokerControl()).setPermissions(vhost.name, user.name, '^$', '.*', `^${readable}$`);
    const seen: string[] = [];
    const { runner, logs } = testRunner(
      [
        trigger(readable, { functionKey: 'reader', maximumBatchingWindow: 0 }),
        trigger(forbidden, { functionKey: 'refused', maximumBatchingWindow: 0 }),
      ],
      { reader: async (event) => void seen.push(...decodeRabbitMQEvent(event).map((r) => r.body.toString())) },
      { env: { AMQP_URL: urlFor(vhost, user.name, user.password) }, hooks: false },
    );
    runners.push(runner);
    await runner.start();
    const [reader, refused] = runner.triggers;
    expect(refused!.describe()).toMatchObject({
      State: 'Failed',
      StateTransitionReason: 'EVENT_SOURCE_AUTHZ_ERROR',
      LastProcessingResult: expect.stringMatching(/^PROBLEM: RabbitMQ refused to let the user consume from queue '.+': .*access_refused/i),
    });
    await admin.channel.sendToQueue(readable, Buffer.from('allowed'));
    await admin.channel.sendToQueue(forbidden, Buffer.from('kept'));
    await waitFor(() => seen.length === 1, 'the readable queue consumed');
    await waitFor(() => reader!.describe().LastProcessingResult === 'OK', 'OK');
    expect(reader!.describe().State).toBe('Enabled');
    expect((await admin.channel.checkQueue(forbidden)).messageCount).toBe(1);
    expect(stateLines(logs.lines, 'refused')).toEqual(['Enabling', 'Failed']);
    // Refused once, not retried.
    expect(logs.lines.filter((l) => l.message === 'could not start consuming; will retry' && l.function === 'refused')).toEqual([]);
  });

  it('a user with no permission on the virtual host: every trigger Failed with EVENT_SOURCE_AUTHZ_ERROR', async () => {
    const vhost = await createVhost('state-novhost');
    const user = await createUser('state-novhost');
    cleanups.push(vhost.remove, user.remove);
    const { runner } = testRunner(
      [trigger(uniqueQueue('state-novhost'), { functionKey: 'a' })],
      {},
      {
        env: { AMQP_URL: urlFor(vhost, user.name, user.password) },
        hooks: false,
      },
    );
    runners.push(runner);
    await runner.start();
    expect(runner.triggers[0]!.describe()).toMatchObject({
      State: 'Failed',
      StateTransitionReason: 'EVENT_SOURCE_AUTHZ_ERROR',
      Local: { stateTransitionDetail: expect.stringContaining(`refused user '${user.name}' the virtual host '${vhost.name}'`) },
    });
    expect(runner.broker.status.state).toBe('closed');
  });
});
