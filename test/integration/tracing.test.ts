/**
 * W3C trace context through the whole system, seen by an in-memory exporter: one order posted over real HTTP
 * (with a client's `traceparent`) to the intake app, the three queue functions fed by the runner from the real
 * broker (a virtual host of this test's own), one SQLite file. The notification's webhook answers 503 once,
 * so its record is retried once through the retry queue. Every span the order causes must be in the client's
 * trace, each parented on the span that caused it, and every log line of it must name its trace and span.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { FastifyInstance } from 'fastify';
import { startTracing, stopTracing } from 'middy-rabbitmq/tracing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogCapture, waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost } from '../support/vhost';

const ROOT = resolve(import.meta.dirname, '../..');
const sqlitePath = join(mkdtempSync(join(tmpdir(), 'tracing-')), 'app.sqlite');

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const idOf = (span: ReadableSpan) => span.spanContext().spanId;

describe('one order, one trace: intake, inventory, notification and status', () => {
  const exporter = new InMemorySpanExporter();
  const logs = new LogCapture();
  let vhost: TestVhost;
  let app: FastifyInstance;
  let base: string;
  let webhook: Server;
  let webhookCalls = 0;
  const webhookTraceparents: unknown[] = [];
  let stopAll: () => Promise<void>;

  beforeAll(async () => {
    vhost = await createVhost('tracing');
    // The webhook is down for its first call: the notification record fails (transient) and is retried once.
    webhook = createServer((request, response) => {
      request.resume();
      webhookTraceparents.push(request.headers.traceparent);
      response.statusCode = ++webhookCalls === 1 ? 503 : 200;
      response.end();
    });
    await new Promise<void>((done) => webhook.listen(0, '127.0.0.1', done));
    // Configuration is read once per process: set before anything reads it.
    Object.assign(process.env, {
      AMQP_URL: vhost.url,
      SQLITE_PATH: sqlitePath,
      RETRY_DELAYS_MS: '200,400',
      LOG_LEVEL: 'info',
      WEBHOOK_URL: `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/hook`,
      OUTBOX_RELAY_INTERVAL_MS: '200',
    });
    await startTracing({ exporter });

    const { createLogger } = await import('../../shared/logging');
    const { openStore } = await import('../../shared/store');
    const { buildApp } = await import('../../shared/http');
    const { appHooks } = await import('../../shared/app/runner-hooks');
    const { loadConfig } = await import('../../shared/config');
    const { InProcessInvoker, loadService, Runner, triggersFromFunctions } = await import('serverless-offline-rabbitmq');
    const { closeMessaging } = await import('../../shared/messaging');
    const logger = createLogger({ level: 'info', destination: logs });
    const store = await openStore({ sqlitePath });
    await store.stock.seed({ Burger: 10 });
    const deps = { store: async () => store, logger: () => logger };
    const handlers: Record<string, { createHandler: (d: typeof deps) => unknown }> = {
      inventoryReservation: await import('../../handlers/inventory-reservation'),
      notification: await import('../../handlers/notification'),
      orderStatus: await import('../../handlers/order-status'),
    };
    app = buildApp({ store, logger: logger.child({ function: 'order-intake' }) });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
    const service = loadService(ROOT);
    const runner = new Runner({
      urls: loadConfig().amqpUrls,
      triggers: triggersFromFunctions(service.functions, service.info).map((t) => ({ ...t, maximumBatchingWindow: 0.05 })),
      invoker: new InProcessInvoker(async (trigger) => handlers[trigger.functionKey]!.createHandler(deps) as never),
      logger: createLogger({ level: 'error' }),
      hooks: appHooks({ relayStore: async () => store }),
    });
    await runner.start();
    stopAll = async () => {
      await runner.stop();
      await app.close();
      await store.close();
      await closeMessaging();
    };
  }, 60_000);

  afterAll(async () => {
    await stopAll?.();
    await stopTracing();
    webhook?.close();
    await vhost?.remove();
  });

  it('continues the client’s trace through every function, a retried record included, and logs its ids', async () => {
    const clientTrace = hex(16);
    const clientSpan = hex(8);
    const response = await fetch(`${base}/order`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${clientTrace}-${clientSpan}-01`, tracestate: 'vendor=opaque' },
      body: JSON.stringify({ user_id: 'trace-user', item: 'Burger', quantity: 1 }),
    });
    expect(response.status).toBe(202);
    const { order_id: orderId } = (await response.json()) as { order_id: string };

    const inTrace = () => exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === clientTrace);
    const named = (name: string) => inTrace().filter((span) => span.name === name);
    await waitFor(
      () => named('inventory-events process').length === 2 && named('order-status-events process').length === 1,
      'the notification (twice) and status records to be traced',
      30_000,
    );

    // Intake: the request continues the client's span; its transaction and its publish are the request's children.
    const [request] = named('POST /order');
    expect(request).toMatchObject({ kind: SpanKind.SERVER });
    expect(parentOf(request!)).toBe(clientSpan);
    expect(request!.spanContext().traceState?.get('vendor')).toBe('opaque');
    const [intakeTx] = named('db transaction').filter((span) => parentOf(span) === idOf(request!));
    expect(intakeTx).toBeDefined();
    const [orderPublish] = named('orders publish');
    expect(orderPublish).toMatchObject({ kind: SpanKind.PRODUCER });
    expect(parentOf(orderPublish!)).toBe(idOf(request!));

    // Inventory: its record is the child of intake's publish; what it emits is published under the record.
    const [reservation] = named('order-events process');
    expect(reservation).toMatchObject({ kind: SpanKind.CONSUMER });
    expect(parentOf(reservation!)).toBe(idOf(orderPublish!));
    expect(reservation!.attributes['app.record.outcome']).toBe('processed');
    const [inventoryPublish] = named('inventory publish');
    expect(parentOf(inventoryPublish!)).toBe(idOf(reservation!));

    // Notification: attempt 1 fails and is published to the retry exchange under its own span; attempt 2 is
    // the child of that retry publish.
    const notifications = named('inventory-events process').sort(
      (a, b) => Number(a.attributes['messaging.rabbitmq.attempt']) - Number(b.attributes['messaging.rabbitmq.attempt']),
    );
    const [first, second] = notifications as [ReadableSpan, ReadableSpan];
    expect(first.attributes).toMatchObject({ 'messaging.rabbitmq.attempt': 1, 'app.record.outcome': 'retried' });
    expect(first.status.message).toMatch(/WebhookUnavailableError|503/);
    expect(parentOf(first)).toBe(idOf(inventoryPublish!));
    const [retryPublish] = named('retry publish');
    expect(parentOf(retryPublish!)).toBe(idOf(first));
    expect(second.attributes).toMatchObject({ 'messaging.rabbitmq.attempt': 2, 'app.record.outcome': 'processed' });
    expect(parentOf(second)).toBe(idOf(retryPublish!));

    // Order status: the other consumer of the same inventory message.
    const [status] = named('order-status-events process');
    expect(parentOf(status!)).toBe(idOf(inventoryPublish!));
    expect(status!.attributes['app.record.outcome']).toBe('processed');

    // Each span names its function (one service.name per process: npm run worker runs them all in one).
    expect([request!, reservation!, first, status!].map((span) => span.attributes['faas.name'])).toEqual([
      'order-intake',
      'inventory-reservation',
      'notification',
      'order-status',
    ]);

    // A trace viewer finds the order's trace by its id: the request and every record name it.
    for (const span of [request!, reservation!, first, second, status!]) expect(span.attributes['app.order_id']).toBe(orderId);

    // Each record links to its invocation's span: a root of its own (a batch serves many traces), which holds
    // the batch's transaction.
    const all = exporter.getFinishedSpans();
    for (const record of [reservation!, first, second, status!]) {
      const invocation = all.find((span) => span.spanContext().spanId === record.links[0]?.context.spanId);
      expect(invocation?.parentSpanContext).toBeUndefined();
      expect(invocation?.spanContext().traceId).not.toBe(clientTrace);
      const batchTx = all.find((span) => span.name === 'db transaction' && parentOf(span) === idOf(invocation!));
      expect(batchTx?.attributes['db.transaction.outcome']).toBe('commit');
    }
    expect(webhookCalls).toBe(2);
    // Each webhook call is a client span under its attempt, and the receiver gets that span's context.
    const calls = named('POST webhook');
    expect(calls.map(parentOf).sort()).toEqual([idOf(first), idOf(second)].sort());
    const callOf = (attempt: ReadableSpan) => calls.find((span) => parentOf(span) === idOf(attempt))!;
    expect(callOf(first).attributes['http.response.status_code']).toBeUndefined(); // it failed: 503
    expect(callOf(second).attributes['http.response.status_code']).toBe(200);
    expect(webhookTraceparents).toEqual([first, second].map((attempt) => `00-${clientTrace}-${idOf(callOf(attempt))}-01`));

    // Log lines: the request's and each record's carry their span's ids.
    const line = (pick: (l: Record<string, unknown>) => boolean) => logs.lines.filter(pick);
    const requestLine = line((l) => l.message === 'request completed' && l.path === '/order')[0];
    expect(requestLine).toMatchObject({ trace_id: clientTrace, span_id: idOf(request!) });
    const handled = line((l) => l.message === 'record handled' && l.trace_id === clientTrace);
    expect(handled.map((l) => l.span_id).sort()).toEqual([reservation!, first, second, status!].map(idOf).sort());
    expect(line((l) => l.message === 'customer notified')[0]).toMatchObject({ trace_id: clientTrace, span_id: idOf(second) });
    for (const l of line((l) => l.message === 'invocation finished')) expect(l.trace_id).toMatch(/^[0-9a-f]{32}$/);

    // The order's stored event kept the request's context (what the relay would continue after a crash).
    const { openStore } = await import('../../shared/store');
    const reader = await openStore({ sqlitePath });
    try {
      const orderRow = await reader.db
        .selectFrom('outbox')
        .select(['traceparent', 'tracestate'])
        .where('routing_key', '=', 'order.placed')
        .where('body', 'like', `%${orderId}%`)
        .executeTakeFirst();
      expect(orderRow).toEqual({ traceparent: `00-${clientTrace}-${idOf(request!)}-01`, tracestate: 'vendor=opaque' });
    } finally {
      await reader.close();
    }
  }, 60_000);

  it('carries the trace through a dead letter and its redrive: each copy is the child of the span that sent it', async () => {
    const { Broker, Publisher } = await import('../../shared/messaging');
    const { DlqReprocessor } = await import('../../shared/dlq');
    const { loadConfig } = await import('../../shared/config');
    const clientTrace = hex(16);
    const clientSpan = hex(8);
    const eventId = randomUUID();
    // A schema violation (no order_id): permanent, dead-lettered at once, and again after a redrive.
    const amqp = await openAmqp(vhost.url);
    const broker = new Broker({ urls: [loadConfig().amqpUrls[0]!], connectionName: 'tracing-test-dlq' });
    try {
      amqp.channel.publish('orders', 'order.placed', Buffer.from(JSON.stringify({ event_id: eventId, event_type: 'OrderPlaced' })), {
        messageId: eventId,
        type: 'OrderPlaced',
        contentType: 'application/json',
        persistent: true,
        headers: { traceparent: `00-${clientTrace}-${clientSpan}-01` },
      });
      await amqp.channel.waitForConfirms();
      const records = () =>
        exporter
          .getFinishedSpans()
          .filter((span) => span.spanContext().traceId === clientTrace && span.name === 'order-events process')
          .sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
      await waitFor(() => records().length === 1, 'the record to be dead-lettered', 15_000);
      const spans = () => exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === clientTrace);
      const [first] = records();
      expect(parentOf(first!)).toBe(clientSpan);
      expect(first!.attributes['app.record.outcome']).toBe('dead-lettered');
      const deadLetter = spans().find((span) => span.name === 'dlx publish' && parentOf(span) === idOf(first!));
      expect(deadLetter).toBeDefined();

      const report = await new DlqReprocessor({ broker, publisher: new Publisher(broker) }).redrive({ queue: 'order-events-dlq' });
      expect(report.moved).toHaveLength(1);
      await waitFor(() => records().length === 2, 'the redriven record to be processed', 15_000);
      const redrive = spans().find((span) => span.name === '(default) publish' && parentOf(span) === idOf(deadLetter!));
      expect(redrive).toBeDefined();
      const [, second] = records();
      expect(parentOf(second!)).toBe(idOf(redrive!));
      const again = spans().find((span) => span.name === 'dlx publish' && parentOf(span) === idOf(second!));
      // The dead letter in the queue now carries that last publish span's context.
      await waitFor(async () => (await amqp.channel.checkQueue('order-events-dlq')).messageCount === 1, 'the dead letter', 15_000);
      const message = await amqp.channel.get('order-events-dlq', { noAck: true });
      expect(message ? message.properties.headers?.traceparent : undefined).toBe(`00-${clientTrace}-${idOf(again!)}-01`);
    } finally {
      await broker.close();
      await amqp.close();
    }
  }, 60_000);

  it('starts a new trace for a request without traceparent, and ignores an invalid one', async () => {
    const before = new Set(exporter.getFinishedSpans().map((span) => span.spanContext().traceId));
    for (const traceparent of [undefined, '00-00000000000000000000000000000000-0000000000000000-01', 'garbage']) {
      const response = await fetch(`${base}/order`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(traceparent ? { traceparent } : {}) },
        body: JSON.stringify({ user_id: 'trace-user-2', item: 'Burger', quantity: 1 }),
      });
      expect(response.status).toBe(202);
    }
    await waitFor(() => exporter.getFinishedSpans().filter((s) => s.name === 'POST /order').length >= 4, 'the requests to be traced');
    const requests = exporter.getFinishedSpans().filter((s) => s.name === 'POST /order' && !before.has(s.spanContext().traceId));
    expect(requests).toHaveLength(3);
    expect(new Set(requests.map((s) => s.spanContext().traceId)).size).toBe(3);
    for (const span of requests) expect(span.parentSpanContext).toBeUndefined();
  });
});
