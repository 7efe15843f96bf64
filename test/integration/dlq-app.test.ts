/**
 * The DLQ reprocessor's admin HTTP API: the fastify app with app.inject(), and the Lambda handler with the
 * fixtures. The fixtures carry `Authorization: Bearer replace-with-your-admin-token`; that must equal
 * ADMIN_TOKEN (set below before the handler module loads), as fixtures/dlq-reprocessor/README.md says.
 *
 * Redrive jobs run in the dlqRedriveJob function (handlers/dlq-redrive-job.ts), fed by the real RabbitMQ
 * trigger from a job queue of this test's own (in this process, over a broker connection of its own, or in a
 * child process that is SIGKILLed), never by the app that answered the POST.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { FastifyInstance } from 'fastify';
import { FAILURE_HEADERS } from 'middy-rabbitmq';
import type { Runner } from 'serverless-offline-rabbitmq';
import { createLambdaContext } from 'serverless-offline-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHandler as redriveJobFunction } from '../../handlers/dlq-redrive-job';
import { loadConfig } from '../../shared/config';
import { REDRIVE_HEADERS, type RedriveJob } from '../../shared/dlq';
import { EXIT, runCli } from '../../shared/dlq/command';
import { withDlqLock } from '../../shared/dlq/lock';
import { createLogger } from '../../shared/logging';
import { Broker, closeMessaging, declareTopology, dlqName, Publisher, REDRIVE_JOBS_QUEUE, topologyOptions } from '../../shared/messaging';
import { AMQP_URL, openTestAmqp, purgeQueues, queueConsumers, queueDepth, type TestAmqp } from '../support/amqp';
import { deleteQueues, LogCapture, redriveJobTrigger, testRunner, uniqueQueue, waitFor } from '../support/runner';
import { spawnWorker } from '../support/worker-process';

const FIXTURE_TOKEN = 'replace-with-your-admin-token';
const TOKEN = `test-admin-token-${randomUUID()}`;
process.env.ADMIN_TOKEN = FIXTURE_TOKEN;
process.env.LOG_LEVEL = 'silent';

const { buildDlqApp } = await import('../../shared/http/dlq-app');

const queue = uniqueQueue('dlq-http');
const dlq = dlqName(queue);
/** Where this test's app sends redrive jobs, and the job function's runner takes them from. */
const jobQueue = uniqueQueue('dlq-http-jobs');
const cfg = loadConfig({ AMQP_URL, ADMIN_TOKEN: TOKEN, DLQ_REDRIVE_RATE: '100' });
const silent = createLogger({ level: 'silent' });
const auth = { authorization: `Bearer ${TOKEN}` };

let amqp: TestAmqp;
let broker: Broker;
let publisher: Publisher;
let app: FastifyInstance;
/** The job function's own connection (as another function instance has) and its runner. */
let jobBroker: Broker;
let jobPublisher: Publisher;
let jobRunner: Runner;
const jobLogs = new LogCapture();

/** The dlqRedriveJob function over the given connection, logging into `logs`. */
const jobFunction = (over: { broker: Broker; publisher: Publisher }, logs: LogCapture, stopBeforeTimeoutMs?: number) => {
  const logger = createLogger({ level: 'info', destination: logs });
  return redriveJobFunction({
    messaging: () => over,
    config: () => cfg,
    logger: () => logger,
    redriveJobs: { heartbeatMs: 200, ...(stopBeforeTimeoutMs !== undefined ? { stopBeforeTimeoutMs } : {}) },
  });
};

/** Publishes a job message to this test's job queue as any AMQP client could (confirmed). */
async function publishJobMessage(body: Record<string, unknown>, id: string): Promise<void> {
  const channel = await amqp.connection.createConfirmChannel();
  channel.sendToQueue(jobQueue, Buffer.from(JSON.stringify(body)), {
    messageId: id,
    type: 'DlqRedriveJob',
    contentType: 'application/json',
    persistent: true,
  });
  await channel.waitForConfirms();
  await channel.close();
}

/** The job function's log line for a job message it handled with this outcome. */
const handled = (logs: LogCapture, jobId: string, outcome: string) =>
  logs.lines.some((line) => line.message === 'record handled' && line.messageId === jobId && line.outcome === outcome);

/** The message ids a queue holds, in order, left in place (taken unacked, handed back by closing the channel). */
async function peekIds(name: string): Promise<string[]> {
  const channel = await amqp.connection.createChannel();
  const found: string[] = [];
  for (let message = await channel.get(name); message; message = await channel.get(name)) {
    found.push(String(message.properties.messageId));
  }
  await channel.close();
  return found;
}

async function seed(ids: readonly string[], errorClass: 'permanent' | 'transient' = 'permanent'): Promise<void> {
  const channel = await amqp.connection.createConfirmChannel();
  for (const id of ids) {
    channel.sendToQueue(dlq, Buffer.from(JSON.stringify({ event_id: id, user_id: 'bob' })), {
      messageId: id,
      persistent: true,
      contentType: 'application/json',
      headers: {
        [FAILURE_HEADERS.errorClass]: errorClass,
        [FAILURE_HEADERS.errorName]: 'SchemaViolationError',
        [FAILURE_HEADERS.originalQueue]: queue,
      },
    });
  }
  await channel.waitForConfirms();
  await channel.close();
}

/** The job the POST started, polled until it ends (through `via`, default this app). */
async function pollJob(
  statusUrl: string,
  via: FastifyInstance = app,
  until = (job: RedriveJob) => !['running', 'cancelling'].includes(job.state),
) {
  let job = { state: 'running' } as RedriveJob & { statusUrl: string };
  await waitFor(
    async () => {
      const response = await via.inject({ method: 'GET', url: statusUrl, headers: auth });
      expect(response.statusCode).toBe(200);
      job = response.json();
      return until(job);
    },
    `redrive job ${statusUrl} to end`,
    20_000,
  );
  return job;
}

/** POST /dlq/redrive: 202 with Location = statusUrl, then the job polled to its end. */
async function runJob(payload: Record<string, unknown>) {
  const response = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload });
  expect(response.statusCode, response.body).toBe(202);
  const started = response.json();
  expect(started.state).toBe('running');
  expect(response.headers.location).toBe(started.statusUrl);
  return pollJob(started.statusUrl);
}

/** Another instance of the function: its own app over its own broker connection (its jobs to `jobs`, default this test's job queue). */
async function secondInstance(jobs = jobQueue) {
  const otherBroker = new Broker({ urls: [AMQP_URL], connectionName: 'dlq-http-test-2' });
  const otherPublisher = new Publisher(otherBroker);
  const other = buildDlqApp({
    broker: otherBroker,
    publisher: otherPublisher,
    config: cfg,
    logger: silent,
    idleTimeoutMs: 500,
    redriveJobs: { staleAfterMs: 5_000, jobQueue: jobs },
  });
  await other.ready();
  return {
    app: other,
    broker: otherBroker,
    close: async () => {
      await other.close();
      await otherBroker.close();
      await otherPublisher.close();
    },
  };
}

beforeAll(async () => {
  amqp = await openTestAmqp();
  broker = new Broker({ urls: [AMQP_URL], connectionName: 'dlq-http-test' });
  await broker.onConnect((connection) =>
    declareTopology(connection, topologyOptions(cfg, [{ name: queue, bindings: [] }])).then(() => undefined),
  );
  await broker.connect();
  publisher = new Publisher(broker);
  app = buildDlqApp({
    broker,
    publisher,
    config: cfg,
    logger: silent,
    extraQueues: [dlq],
    idleTimeoutMs: 500,
    redriveJobs: { staleAfterMs: 5_000, jobQueue },
  });
  await app.ready();
  jobBroker = new Broker({ urls: [AMQP_URL], connectionName: 'dlq-http-test-jobs' });
  jobPublisher = new Publisher(jobBroker);
  ({ runner: jobRunner } = testRunner([redriveJobTrigger(jobQueue)], {
    dlqRedriveJob: jobFunction({ broker: jobBroker, publisher: jobPublisher }, jobLogs),
  }));
  await jobRunner.start();
});

afterAll(async () => {
  await jobRunner.stop();
  await jobBroker.close();
  await jobPublisher.close();
  await app.close();
  await publisher.close();
  await broker.close();
  await deleteQueues(amqp, [queue, jobQueue]);
  await amqp.close();
});

describe('admin token', () => {
  it('answers 401 problem+json without a token, with a wrong one, and when ADMIN_TOKEN is unset', async () => {
    for (const headers of [{}, { authorization: 'Bearer not-the-token-at-all' }, { authorization: TOKEN }]) {
      const response = await app.inject({ method: 'GET', url: '/dlq', headers });
      expect(response.statusCode).toBe(401);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(response.json()).toMatchObject({ status: 401, title: 'Unauthorized' });
    }
    const post = await app.inject({ method: 'POST', url: '/dlq/redrive', payload: { queue: dlq, dry_run: true } });
    expect(post.statusCode).toBe(401);

    const disabled = buildDlqApp({ broker, publisher, config: loadConfig({ AMQP_URL }), logger: silent });
    const response = await disabled.inject({ method: 'GET', url: '/dlq', headers: auth });
    expect(response.statusCode).toBe(401);
    expect(response.json().detail).toMatch(/ADMIN_TOKEN is not set/);
    await disabled.close();
  });
});

describe('GET /dlq', () => {
  it('lists every DLQ with its depth and a sample, and the parking lot', async () => {
    const ids = [1, 2, 3].map((i) => `http-list-${i}-${randomUUID()}`);
    await seed(ids);
    const response = await app.inject({ method: 'GET', url: `/dlq?sample=2`, headers: auth });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body.dlqs.map((d: { queue: string }) => d.queue)).toEqual([
      'order-events-dlq',
      'inventory-events-dlq',
      'order-status-events-dlq',
      dlq,
    ]);
    const mine = body.dlqs.find((d: { queue: string }) => d.queue === dlq);
    expect(mine).toMatchObject({ status: 'ok', depth: 3, source: queue });
    expect(mine.sample.map((s: { messageId: string }) => s.messageId)).toEqual(ids.slice(0, 2));
    expect(mine.sample[0]).toMatchObject({ errorClass: 'permanent', errorName: 'SchemaViolationError', originalQueue: queue });
    expect(mine.sample[0].bodyPreview).not.toContain('bob');
    expect(body.parkingLot).toMatchObject({ queue: 'parking-lot' });

    const one = await app.inject({ method: 'GET', url: `/dlq?queue=${dlq}&sample=0`, headers: auth });
    expect(one.json().dlqs).toEqual([expect.objectContaining({ queue: dlq, depth: 3, sample: [] })]);
  });

  it('answers 400 naming the query parameter', async () => {
    const response = await app.inject({ method: 'GET', url: '/dlq?sample=lots', headers: auth });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json().errors).toEqual([expect.objectContaining({ field: 'sample' })]);
    const queueParam = await app.inject({ method: 'GET', url: '/dlq?queue=order-events', headers: auth });
    expect(queueParam.json().errors).toEqual([expect.objectContaining({ field: 'queue' })]);
  });
});

describe('POST /dlq/redrive', () => {
  it('answers 400 problem+json naming each bad field', async () => {
    const cases: Array<[unknown, string[]]> = [
      [{}, ['queue']],
      [{ queue: 'order-events' }, ['queue']],
      [{ queue: dlq, limit: 0, rate: -1 }, ['limit', 'rate']],
      [{ queue: dlq, error_class: 'flaky' }, ['error_class']],
      [{ queue: dlq, dry_run: 'yes' }, ['dry_run']],
      [{ queue: dlq, colour: 'blue' }, ['colour']],
      [{ queue: `missing-${randomUUID()}-dlq` }, ['queue']],
    ];
    for (const [payload, fields] of cases) {
      const response = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: payload as object });
      expect(response.statusCode, JSON.stringify(payload)).toBe(400);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.json().errors.map((e: { field: string }) => e.field)).toEqual(fields);
    }
    const notJson = await app.inject({
      method: 'POST',
      url: '/dlq/redrive',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"queue":',
    });
    expect(notJson.statusCode).toBe(400);
  });

  it('runs a redrive as a job: 202 with its status URL, polled to completion; a dry run first changes nothing', async () => {
    await waitFor(async () => (await queueDepth(amqp.connection, dlq)) === 3, 'the listed messages back in the DLQ');
    const dry = await runJob({ queue: dlq, dry_run: true, limit: 2 });
    expect(dry).toMatchObject({ dlq, state: 'completed', request: { dryRun: true, limit: 2 } });
    expect(dry.report).toMatchObject({ dlq, dryRun: true, parked: [], skipped: [], failed: [], stopped: 'limit', depthAfter: 3 });
    expect(dry.report!.moved).toHaveLength(2);
    expect(await queueDepth(amqp.connection, queue)).toBe(0);

    const real = await runJob({ queue: dlq, error_class: ['permanent'], rate: 50 });
    expect(real).toMatchObject({ state: 'completed', progress: { moved: 3, examined: 3, depthBefore: 3 } });
    expect(real.report).toMatchObject({ dryRun: false, stopped: 'done', depthAfter: 0, targets: { [queue]: 3 } });
    const moved = await amqp.channel.get(queue, { noAck: true });
    if (moved === false) throw new Error(`no redriven message in ${queue}`);
    expect(moved.properties.headers?.[REDRIVE_HEADERS.count]).toBe(1);
    await amqp.channel.purgeQueue(queue);
  });

  it('answers 409 at once while another redrive holds the DLQ, and any instance of the function reads the job', async () => {
    await seed([1, 2, 3, 4].map((i) => `http-busy-${i}-${randomUUID()}`));
    const started = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq, rate: 2 } });
    expect(started.statusCode).toBe(202);
    expect(started.json().pickedUpAt).toBeNull();
    // Once the job function holds the DLQ, a second request is refused at once.
    await pollJob(started.json().statusUrl, app, (job) => job.pickedUpAt !== null);
    const busy = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq } });
    expect(busy.statusCode).toBe(409);
    expect(busy.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(busy.json().detail).toMatch(/Another inspection or redrive/);
    // Another instance (its own broker connection, as a second serverless-offline or Lambda instance has) polls it.
    const other = await secondInstance();
    try {
      const job = await pollJob(started.json().statusUrl, other.app);
      expect(job).toMatchObject({ state: 'completed', progress: { moved: 4 } });
    } finally {
      await other.close();
    }
    await amqp.channel.purgeQueue(queue);
  });

  it('cancels a running job before its next message: what moved stays moved, the rest stays in the DLQ', async () => {
    const ids = Array.from({ length: 10 }, (_, i) => `http-cancel-${i}-${randomUUID()}`);
    await seed(ids);
    const started = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq, rate: 1 } });
    expect(started.statusCode).toBe(202);
    const { statusUrl } = started.json() as { statusUrl: string };
    await waitFor(async () => (await queueDepth(amqp.connection, queue)) >= 1, 'the first message to move');
    const cancel = await app.inject({ method: 'POST', url: `${statusUrl}/cancel`, headers: auth, payload: {} });
    expect(cancel.statusCode).toBe(202);
    expect(cancel.json().state).toBe('cancelling');
    const job = await pollJob(statusUrl);
    expect(job).toMatchObject({ state: 'cancelled', report: { stopped: 'aborted' } });
    const movedCount = job.report!.moved.length;
    expect(movedCount).toBeGreaterThanOrEqual(1);
    expect(movedCount).toBeLessThan(10);
    await waitFor(async () => (await queueDepth(amqp.connection, dlq)) === 10 - movedCount, 'the rest back in the DLQ');
    expect(await queueDepth(amqp.connection, queue)).toBe(movedCount);

    const again = await app.inject({ method: 'POST', url: `${statusUrl}/cancel`, headers: auth, payload: {} });
    expect(again.statusCode).toBe(409);
    expect(again.json().detail).toMatch(/is cancelled; only a running job can be cancelled/);
    await amqp.channel.purgeQueue(queue);
    await amqp.channel.purgeQueue(dlq);
  });

  it('reports a job whose function process was killed as failed, loses nothing, and does not run it again when its message comes back', async () => {
    const ids = [1, 2, 3, 4, 5].map((i) => `http-gone-${i}-${randomUUID()}`);
    await seed(ids);
    // An instance of the app whose jobs go to a queue that only a killable job function process consumes.
    const killableJobs = uniqueQueue('dlq-http-jobs-killed');
    const other = await secondInstance(killableJobs);
    const worker = spawnWorker({ AMQP_URL, JOB_QUEUE: killableJobs, LOG_LEVEL: 'warn' }, { script: 'test/support/redrive-job-worker.ts' });
    const afterKill = new LogCapture();
    let rerun: Runner | undefined;
    try {
      await waitFor(() => worker.output().includes('ready'), `the job worker to start: ${worker.output()}`, 30_000);
      const started = await other.app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq, rate: 1 } });
      expect(started.statusCode).toBe(202);
      const { id, statusUrl } = started.json() as { id: string; statusUrl: string };
      await waitFor(async () => (await queueDepth(amqp.connection, queue)) >= 1, 'the first message to move', 20_000);
      await worker.kill('SIGKILL'); // the function's process dies: its connection, lock, claim and heartbeat go with it
      const job = await pollJob(statusUrl);
      expect(job.state).toBe('failed');
      expect(job.error).toMatch(/stopped reporting/);
      // The broker hands the killed consumer's unacked messages back to the DLQ as it drops its channel.
      await waitFor(async () => (await queueConsumers(amqp.connection, dlq)) === 0, 'the killed reader gone from the DLQ');
      const inDlq = await peekIds(dlq);
      const inQueue = await peekIds(queue);
      // Nothing lost; a kill between the copy's confirm and the original's ack leaves that one message in
      // both queues (the reprocessor's documented window, one message at most; the inbox drops the copy).
      expect(new Set([...inDlq, ...inQueue])).toEqual(new Set(ids));
      expect(inDlq.length + inQueue.length).toBeLessThanOrEqual(6);
      const moved = inQueue.length;
      expect(moved).toBeGreaterThanOrEqual(1);
      expect(inDlq.length).toBeGreaterThanOrEqual(1);

      // The killed process never acked the job message: the broker hands it to the next function instance,
      // which sees from the job's record that it was taken up already, and leaves it alone.
      ({ runner: rerun } = testRunner([redriveJobTrigger(killableJobs)], {
        dlqRedriveJob: jobFunction({ broker: jobBroker, publisher: jobPublisher }, afterKill),
      }));
      await rerun.start();
      await waitFor(
        () => handled(afterKill, id, 'duplicate'),
        `the redelivered job message to be handled: ${JSON.stringify(afterKill.lines)}`,
      );
      expect(await queueDepth(amqp.connection, queue)).toBe(moved);
      expect(await queueDepth(amqp.connection, dlq)).toBe(inDlq.length);
      expect((await pollJob(statusUrl)).state).toBe('failed');
    } finally {
      await rerun?.stop();
      await worker.kill('SIGKILL');
      await other.close();
      await deleteQueues(amqp, [killableJobs]);
      await purgeQueues(amqp.connection, [queue, dlq]); // a failure here must not leave messages to the next tests
    }
  }, 90_000);

  it('completes a job after the instance that accepted it has gone away', async () => {
    const ids = [1, 2, 3].map((i) => `http-left-${i}-${randomUUID()}`);
    await seed(ids);
    const other = await secondInstance();
    const started = await other.app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq, rate: 20 } });
    expect(started.statusCode).toBe(202);
    await other.close(); // right after the 202, as Lambda freezes (or ends) the HTTP instance
    const job = await pollJob(started.json().statusUrl);
    expect(job).toMatchObject({ state: 'completed', progress: { moved: 3 }, report: { moved: ids, stopped: 'done', depthAfter: 0 } });
    expect(job.pickedUpAt).not.toBeNull();
    expect(await queueDepth(amqp.connection, queue)).toBe(3);
    await amqp.channel.purgeQueue(queue);
  });

  it('runs a job once: its message delivered again after the job completed moves nothing', async () => {
    const first = [1, 2].map((i) => `http-once-${i}-${randomUUID()}`);
    await seed(first);
    const response = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq, rate: 50 } });
    expect(response.statusCode).toBe(202);
    const { id, statusUrl } = response.json() as { id: string; statusUrl: string };
    expect(await pollJob(statusUrl)).toMatchObject({ state: 'completed', progress: { moved: 2 } });
    // New dead letters arrive; then the job's message comes again (a duplicate publish, a redelivery).
    const later = [1, 2].map((i) => `http-once-later-${i}-${randomUUID()}`);
    await seed(later);
    await publishJobMessage({ job_id: id, queue: dlq, rate: 50, dry_run: false }, id);
    await waitFor(() => handled(jobLogs, id, 'duplicate'), 'the job message delivered again to be handled');
    expect(await queueDepth(amqp.connection, dlq)).toBe(2);
    expect(await queueDepth(amqp.connection, queue)).toBe(2);
    expect(await pollJob(statusUrl)).toMatchObject({ state: 'completed', progress: { moved: 2 } });
    await amqp.channel.purgeQueue(queue);
    await amqp.channel.purgeQueue(dlq);
  });

  it('dead-letters a message on the job queue that is not a job, with the reason, and runs nothing', async () => {
    await seed([`http-not-a-job-${randomUUID()}`]);
    const id = randomUUID();
    await publishJobMessage({ job_id: id, queue: 'order-events', dry_run: false }, id);
    await waitFor(async () => (await queueDepth(amqp.connection, dlqName(jobQueue))) === 1, 'the bad job message in its DLQ');
    const dead = await amqp.channel.get(dlqName(jobQueue), { noAck: true });
    if (dead === false) throw new Error('no dead letter');
    expect(dead.properties.headers).toMatchObject({
      [FAILURE_HEADERS.errorClass]: 'permanent',
      [FAILURE_HEADERS.errorName]: 'SchemaViolationError',
      [FAILURE_HEADERS.originalQueue]: jobQueue,
    });
    expect(String(dead.properties.headers?.[FAILURE_HEADERS.errorMessage])).toMatch(/queue/);
    expect(await queueDepth(amqp.connection, dlq)).toBe(1);
    await amqp.channel.purgeQueue(dlq);
  });

  it('waits for the job function, then fails the job, moving nothing, when another reader took the DLQ meanwhile', async () => {
    await seed([1, 2].map((i) => `http-race-${i}-${randomUUID()}`));
    const laterJobs = uniqueQueue('dlq-http-jobs-later');
    const other = await secondInstance(laterJobs);
    const { runner: later } = testRunner([redriveJobTrigger(laterJobs)], {
      dlqRedriveJob: jobFunction({ broker: jobBroker, publisher: jobPublisher }, new LogCapture()),
    });
    try {
      // The job queue exists, and no job function consumes it yet.
      await declareTopology(amqp.connection, topologyOptions(cfg, [{ name: laterJobs, bindings: [] }]));
      const started = await other.app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq } });
      expect(started.statusCode).toBe(202);
      const { statusUrl } = started.json() as { statusUrl: string };
      const waiting = await other.app.inject({ method: 'GET', url: statusUrl, headers: auth });
      expect(waiting.json()).toMatchObject({ state: 'running', pickedUpAt: null, progress: { moved: 0 } });
      // Another reader (say `npm run dlq -- list` elsewhere) takes the DLQ between the 202 and the job's start.
      const job = await withDlqLock(other.broker, dlq, async () => {
        await later.start();
        return pollJob(statusUrl);
      });
      expect(job.state).toBe('failed');
      expect(job.error).toMatch(/DlqBusyError: Another inspection or redrive/);
      expect(job.pickedUpAt).not.toBeNull();
      expect(await queueDepth(amqp.connection, queue)).toBe(0);
      await waitFor(async () => (await queueDepth(amqp.connection, dlq)) === 2, 'both messages still in the DLQ');
    } finally {
      await later.stop();
      await other.close();
      await deleteQueues(amqp, [laterJobs]);
    }
    await amqp.channel.purgeQueue(dlq);
  }, 30_000);

  it("stops a job before its function's timeout: failed, what moved stays moved, the rest stays in the DLQ", async () => {
    const ids = Array.from({ length: 10 }, (_, i) => `http-timeout-${i}-${randomUUID()}`);
    await seed(ids);
    const shortJobs = uniqueQueue('dlq-http-jobs-short');
    const other = await secondInstance(shortJobs);
    // A function with 6 s to live that stops 3 s before it, redriving 1 message a second.
    const { runner: short } = testRunner([redriveJobTrigger(shortJobs, { timeout: 6 })], {
      dlqRedriveJob: jobFunction({ broker: jobBroker, publisher: jobPublisher }, new LogCapture(), 3_000),
    });
    try {
      await short.start();
      const started = await other.app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: dlq, rate: 1 } });
      expect(started.statusCode).toBe(202);
      const job = await pollJob(started.json().statusUrl);
      expect(job.state).toBe('failed');
      expect(job.error).toMatch(/before the function's timeout/);
      const moved = job.report!.moved.length;
      expect(moved).toBeLessThan(10);
      await waitFor(async () => (await queueDepth(amqp.connection, dlq)) === 10 - moved, 'the rest back in the DLQ');
      expect(await queueDepth(amqp.connection, queue)).toBe(moved);
    } finally {
      await short.stop();
      await other.close();
      await deleteQueues(amqp, [shortJobs]);
    }
    await amqp.channel.purgeQueue(queue);
    await amqp.channel.purgeQueue(dlq);
  }, 30_000);

  it('answers 404 for a job it does not know', async () => {
    for (const id of [randomUUID(), 'not-a-job']) {
      const response = await app.inject({ method: 'GET', url: `/dlq/redrive/jobs/${id}`, headers: auth });
      expect(response.statusCode).toBe(404);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      const cancel = await app.inject({ method: 'POST', url: `/dlq/redrive/jobs/${id}/cancel`, headers: auth, payload: {} });
      expect(cancel.statusCode).toBe(404);
    }
  });
});

describe('GET /dlq/message', () => {
  it('shows one message in full, personal fields masked, and leaves the DLQ as it was', async () => {
    const ids = [1, 2].map((i) => `http-message-${i}-${randomUUID()}`);
    await seed(ids);
    const url = `/dlq/message?queue=${dlq}&position=2&message_id=${ids[1]}`;
    const response = await app.inject({ method: 'GET', url, headers: auth });
    expect(response.statusCode, response.body).toBe(200);
    const detail = response.json();
    expect(detail).toMatchObject({ position: 2, messageId: ids[1], errorClass: 'permanent', errorName: 'SchemaViolationError' });
    expect(detail.properties).toMatchObject({ messageId: ids[1], contentType: 'application/json' });
    expect(detail.properties.headers).toMatchObject({ [FAILURE_HEADERS.originalQueue]: queue });
    expect(JSON.parse(detail.body)).toEqual({ event_id: ids[1], user_id: '[redacted]' });
    await waitFor(async () => (await queueDepth(amqp.connection, dlq)) === 2, 'the messages back in the DLQ');

    const moved = await app.inject({ method: 'GET', url: `/dlq/message?queue=${dlq}&position=1&message_id=${ids[1]}`, headers: auth });
    expect(moved.statusCode).toBe(409);
    const past = await app.inject({ method: 'GET', url: `/dlq/message?queue=${dlq}&position=3`, headers: auth });
    expect(past.statusCode).toBe(404);
    const bad = await app.inject({ method: 'GET', url: `/dlq/message?queue=${dlq}&position=0`, headers: auth });
    expect(bad.json().errors).toEqual([expect.objectContaining({ field: 'position' })]);
    await amqp.channel.purgeQueue(dlq);
  });
});

describe('the console', () => {
  it('serves its page, script and style with a CSP that allows no inline script; its API needs the token', async () => {
    const page = await app.inject({ method: 'GET', url: '/console' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toMatch(/script-src 'self'/);
    expect(page.headers['content-security-policy']).not.toMatch(/unsafe-inline/);
    expect(page.body).toContain('<script src="/console/console.js" defer></script>');
    expect(page.body).not.toMatch(/<script>/);
    const script = await app.inject({ method: 'GET', url: '/console/console.js' });
    expect(script.headers['content-type']).toMatch(/^text\/javascript/);
    expect(script.body).toContain('sessionStorage');
    expect(script.body).not.toContain('innerHTML');
    expect((await app.inject({ method: 'GET', url: '/console/console.css' })).headers['content-type']).toMatch(/^text\/css/);
    expect((await app.inject({ method: 'GET', url: '/console/secrets.txt' })).statusCode).toBe(404);

    expect((await app.inject({ method: 'GET', url: '/console/api/flow' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/console/api/session', headers: { authorization: 'Bearer nope' } })).statusCode).toBe(
      401,
    );
    expect((await app.inject({ method: 'GET', url: '/console/api/session', headers: auth })).statusCode).toBe(204);
    const flow = await app.inject({ method: 'GET', url: '/console/api/flow', headers: auth });
    expect(flow.statusCode).toBe(200);
    expect(flow.json().queues.queues.map((q: { name: string }) => q.name)).toContain('order-events-dlq');
    expect(flow.json().triggers).toHaveProperty('EventSourceMappings');
  }, 60_000);
});

describe('the parking lot', () => {
  it('is listed like a DLQ, its messages shown in full, and never redriven', async () => {
    await amqp.channel.purgeQueue('parking-lot');
    const id = `parked-${randomUUID()}`;
    const channel = await amqp.connection.createConfirmChannel();
    channel.sendToQueue('parking-lot', Buffer.from(JSON.stringify({ event_id: id, user_id: 'bob' })), {
      messageId: id,
      contentType: 'application/json',
      headers: { [FAILURE_HEADERS.errorClass]: 'transient', [REDRIVE_HEADERS.count]: 3, [REDRIVE_HEADERS.parkedFrom]: dlq },
    });
    await channel.waitForConfirms();
    await channel.close();

    const listing = await app.inject({ method: 'GET', url: '/dlq?sample=5', headers: auth });
    expect(listing.json().parkingLot).toMatchObject({
      queue: 'parking-lot',
      status: 'ok',
      depth: 1,
      sample: [expect.objectContaining({ messageId: id, errorClass: 'transient', redriveCount: 3 })],
    });
    const one = await app.inject({ method: 'GET', url: `/dlq/message?queue=parking-lot&position=1&message_id=${id}`, headers: auth });
    expect(one.statusCode, one.body).toBe(200);
    expect(one.json().properties.headers).toMatchObject({ [REDRIVE_HEADERS.parkedFrom]: dlq });
    const redrive = await app.inject({ method: 'POST', url: '/dlq/redrive', headers: auth, payload: { queue: 'parking-lot' } });
    expect(redrive.statusCode).toBe(400);
    await waitFor(async () => (await queueDepth(amqp.connection, 'parking-lot')) === 1, 'the parked message back in place');
    await amqp.channel.purgeQueue('parking-lot');
  });
});

describe('npm run dlq -- redrive', () => {
  it('stays synchronous: when it returns, the messages have moved', async () => {
    const ids = [1, 2, 3].map((i) => `cli-sync-${i}-${randomUUID()}`);
    await seed(ids);
    const out: string[] = [];
    const io = { out: (line: string) => out.push(line), err: (line: string) => out.push(line) };
    const code = await runCli(['redrive', '--queue', dlq, '--rate', '50', '--json'], io, { config: cfg });
    expect(code, out.join('\n')).toBe(EXIT.ok);
    expect(JSON.parse(out.join('\n'))).toMatchObject({ moved: ids, stopped: 'done', depthAfter: 0 });
    expect(await queueDepth(amqp.connection, queue)).toBe(3);
    await amqp.channel.purgeQueue(queue);
  });
});

describe('the Lambda handler with the fixtures', () => {
  const fixture = (name: string) => JSON.parse(readFileSync(`fixtures/dlq-reprocessor/${name}`, 'utf8')) as APIGatewayProxyEventV2;
  const context = createLambdaContext({ functionName: 'rabbit-functions-local-dlqReprocessor', timeoutSeconds: 60, memorySize: 512 });
  let realJobs: Runner;

  beforeAll(async () => {
    // The deployed pair: the job function's own handler (the process's connection) on `dlq-redrive-jobs`.
    const { handler } = await import('../../handlers/dlq-redrive-job');
    // The default vhost is shared: a job another suite submitted and nobody ran (invoke.test's redrive fixture)
    // would otherwise be run here first and hold order-events-dlq, and this test's dry run would get 409.
    await purgeQueues(amqp.connection, [REDRIVE_JOBS_QUEUE]);
    ({ runner: realJobs } = testRunner([redriveJobTrigger(REDRIVE_JOBS_QUEUE)], { dlqRedriveJob: handler }));
    await realJobs.start();
  });

  afterAll(async () => {
    await realJobs.stop();
    const module = await import('../../handlers/dlq-reprocessor');
    await module.app.close();
    await closeMessaging();
  });

  it('answers list.json and redrive-dry-run.json with 200, and 401 once the token is wrong', async () => {
    const { handler } = await import('../../handlers/dlq-reprocessor');
    const invoke = (event: APIGatewayProxyEventV2) => handler(event, context) as Promise<APIGatewayProxyStructuredResultV2>;

    const list = await invoke(fixture('list.json'));
    expect(list.statusCode).toBe(200);
    expect(JSON.parse(list.body!).dlqs.map((d: { queue: string }) => d.queue)).toContain('order-events-dlq');

    const before = await queueDepth(amqp.connection, 'order-events-dlq');
    const dry = await invoke(fixture('redrive-dry-run.json'));
    expect(dry.statusCode).toBe(202);
    const job = JSON.parse(dry.body!);
    expect(job).toMatchObject({ dlq: 'order-events-dlq', request: { dryRun: true } });
    expect(dry.headers?.location).toBe(job.statusUrl);
    const status = fixture('list.json');
    status.rawPath = job.statusUrl;
    status.rawQueryString = '';
    status.requestContext.http.path = job.statusUrl;
    status.routeKey = 'GET /dlq/redrive/jobs/{id}';
    await waitFor(async () => JSON.parse((await invoke(status)).body!).state === 'completed', 'the dry run job to complete');
    expect(await queueDepth(amqp.connection, 'order-events-dlq')).toBe(before);

    const wrong = fixture('list.json');
    wrong.headers.authorization = `Bearer ${FIXTURE_TOKEN}-but-wrong`;
    expect((await invoke(wrong)).statusCode).toBe(401);
  });
});
