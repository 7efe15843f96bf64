/**
 * Issue 14's reproduction: under `serverless offline start` (what `npm start` runs) every POST /order without
 * an X-Correlation-Id got the same correlation id, "offlineContext_resourceId", serverless-offline's constant
 * API Gateway request id for HTTP API events. Here several orders go through the real serverless offline, in a
 * vhost of the test's own, and each must have an id of its own in the response, in its stored order row and
 * outbox row, on every message it causes, and no log line may carry the constant. The same run reads the
 * runner's Prometheus endpoint (METRICS_PORT) after the flow.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports';
import { waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';
import { groupAlive } from '../support/worker-process';

const root = fileURLToPath(new URL('../..', import.meta.url));
const ORDERS = 5;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The trace id of a `traceparent` header (version 00), if it is one. */
const traceIdOf = (traceparent: unknown): string | undefined =>
  typeof traceparent === 'string' ? /^00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent)?.[1] : undefined;

describe('correlation ids under serverless offline start', () => {
  const dir = mkdtempSync(join(tmpdir(), 'correlation-offline-'));
  const sqlitePath = join(dir, 'app.sqlite');
  const tap = 'correlation-tap';
  let vhost: TestVhost;
  let amqp: VhostAmqp;
  let offline: ChildProcess;
  let output = '';
  let api = '';
  let metricsUrl = '';

  beforeAll(async () => {
    vhost = await createVhost('correlation');
    amqp = await openAmqp(vhost.url);
    const httpPort = await freePort();
    const metricsPort = await freePort();
    metricsUrl = `http://localhost:${metricsPort}/metrics`;
    offline = spawn(process.execPath, [join(root, 'node_modules/osls/bin/serverless.js'), 'offline', 'start'], {
      cwd: root,
      detached: true,
      env: {
        ...process.env,
        CI: 'true',
        AMQP_URL: vhost.url,
        SQLITE_PATH: sqlitePath,
        HTTP_PORT: String(httpPort),
        LAMBDA_PORT: String(await freePort()),
        LOG_FORMAT: 'json',
        METRICS_PORT: String(metricsPort),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    offline.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    offline.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    api = `http://localhost:${httpPort}`;
    await waitFor(
      () => (output.match(/"message":"consuming"/g) ?? []).length >= 3 || offline.exitCode !== null,
      `the three queue triggers to consume. Output so far:\n${output}`,
      150_000,
    );
    expect(offline.exitCode, output).toBeNull();
    // The triggers' hooks declared the topology; a queue of the test's own sees a copy of every message.
    await amqp.channel.assertQueue(tap, { durable: false });
    await amqp.channel.bindQueue(tap, 'orders', 'order.placed');
    await amqp.channel.bindQueue(tap, 'inventory', 'inventory.*');
  }, 180_000);

  afterAll(async () => {
    if (offline?.pid && groupAlive(offline.pid)) {
      process.kill(-offline.pid, 'SIGINT');
      await waitFor(() => !groupAlive(offline.pid!), 'serverless offline to stop', 30_000).catch(() =>
        process.kill(-offline.pid!, 'SIGKILL'),
      );
    }
    await amqp?.close();
    await vhost?.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('gives every order without X-Correlation-Id an id of its own: response, order row, outbox, messages, logs', async () => {
    const placed: Array<{ orderId: string; correlationId: string }> = [];
    for (let i = 0; i < ORDERS; i++) {
      const response = await fetch(`${api}/order`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user_id: `user-${i}`, item: i % 2 ? 'Burger' : 'Sushi', quantity: 1 }),
      });
      expect(response.status, await response.clone().text()).toBe(202);
      const { order_id: orderId } = (await response.json()) as { order_id: string };
      placed.push({ orderId, correlationId: response.headers.get('x-correlation-id') ?? '' });
    }
    const ids = placed.map((p) => p.correlationId);
    expect(new Set(ids).size, ids.join(', ')).toBe(ORDERS);
    for (const id of ids) expect(id).toMatch(UUID);
    const byOrder = new Map(placed.map((p) => [p.orderId, p.correlationId]));

    // Each order causes OrderPlaced and then InventoryReserved (Burger) or InventoryFailed (Sushi: sold out).
    const messages: Array<{ type: string; orderId: string; correlationId: unknown; traceId: string | undefined }> = [];
    await waitFor(
      async () => {
        for (;;) {
          const message = await amqp.channel.get(tap, { noAck: true });
          if (!message) break;
          const body = JSON.parse(message.content.toString()) as { order_id: string };
          messages.push({
            type: message.properties.type as string,
            orderId: body.order_id,
            correlationId: message.properties.correlationId,
            traceId: traceIdOf(message.properties.headers?.traceparent),
          });
        }
        return messages.length >= ORDERS * 2;
      },
      `${ORDERS * 2} messages (OrderPlaced and an inventory answer per order)`,
      60_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; got ${JSON.stringify(messages)}\n${output.slice(-4_000)}`);
    });
    expect(messages).toHaveLength(ORDERS * 2);
    for (const message of messages) expect(message.correlationId, message.type).toBe(byOrder.get(message.orderId));
    expect(messages.filter((m) => m.type === 'OrderPlaced')).toHaveLength(ORDERS);
    // W3C trace context, through serverless-offline's worker threads: an order's two messages are in one
    // trace (begun by its request), each order in a trace of its own.
    const traceOf = new Map(messages.filter((m) => m.type === 'OrderPlaced').map((m) => [m.orderId, m.traceId]));
    for (const message of messages) expect(message.traceId, message.type).toBe(traceOf.get(message.orderId));
    expect(new Set(traceOf.values()).size).toBe(ORDERS);
    for (const traceId of traceOf.values()) expect(traceId).toMatch(/^[0-9a-f]{32}$/);

    const db = new Database(sqlitePath, { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT order_id, correlation_id FROM orders').all() as Array<{ order_id: string; correlation_id: string }>;
      expect(rows).toHaveLength(ORDERS);
      for (const row of rows) expect(row.correlation_id).toBe(byOrder.get(row.order_id));
      const outbox = db.prepare('SELECT body, properties, traceparent FROM outbox').all() as Array<{
        body: string;
        properties: string;
        traceparent: string | null;
      }>;
      expect(outbox).toHaveLength(ORDERS * 2);
      for (const row of outbox) {
        const { order_id: orderId } = JSON.parse(row.body) as { order_id: string };
        expect((JSON.parse(row.properties) as { correlationId?: string }).correlationId).toBe(byOrder.get(orderId));
        expect(traceIdOf(row.traceparent)).toBe(traceOf.get(orderId));
      }
    } finally {
      db.close();
    }

    // The request's log lines carry its own id; none carries serverless-offline's constant.
    expect(output).not.toContain('offlineContext_resourceId');
    for (const id of ids) expect(output).toContain(`"correlationId":"${id}"`);
    for (const traceId of traceOf.values()) expect(output).toContain(`"trace_id":"${traceId}"`);
  }, 120_000);

  it("serves the triggers' counts for Prometheus on METRICS_PORT: every order through each queue function once", async () => {
    function value(name: string, fn: string, queue: string): number | undefined {
      const line = text.split('\n').find((l) => l.startsWith(`${name}{function="${fn}",queue="${queue}"} `));
      return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    const functions = [
      ['inventoryReservation', 'order-events'],
      ['notification', 'inventory-events'],
      ['orderStatus', 'order-status-events'],
    ] as const;
    let text = '';
    const read = async () => {
      const response = await fetch(metricsUrl);
      expect(response.status).toBe(200);
      text = await response.text();
    };
    // Each order's inventory answer is being processed by notification and orderStatus: wait for the last ack.
    await waitFor(
      async () => {
        await read();
        return functions.every(([fn, queue]) => value('rabbitmq_trigger_records_acked_total', fn, queue) === ORDERS);
      },
      `every record acked by every queue function`,
      30_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${text}`);
    });
    for (const [fn, queue] of functions) {
      const counts = Object.fromEntries(
        ['received', 'acked', 'requeued', 'dead_lettered', 'filtered', 'rejected'].map((c) => [
          c,
          value(`rabbitmq_trigger_records_${c}_total`, fn, queue),
        ]),
      );
      expect(counts, `${fn}\n${text}`).toEqual({
        received: ORDERS,
        acked: ORDERS,
        requeued: 0,
        dead_lettered: 0,
        filtered: 0,
        rejected: 0,
      });
      expect(value('rabbitmq_trigger_failed_invocations_total', fn, queue)).toBe(0);
      // Batching (a 0.5 s window) decides how many invocations carried them.
      const invocations = value('rabbitmq_trigger_invocations_total', fn, queue)!;
      expect(invocations).toBeGreaterThanOrEqual(1);
      expect(invocations).toBeLessThanOrEqual(ORDERS);
      expect(value('rabbitmq_trigger_state', fn, `${queue}",state="Enabled`)).toBe(1);
      // What each function's middleware did, learnt from the batch report in serverless-offline's Invoke answer
      // (the functions run in its worker threads); every message the orders caused carries an AMQP timestamp.
      const outcomes = Object.fromEntries(
        ['processed', 'duplicate', 'retried', 'dead_lettered'].map((o) => [
          o,
          value('rabbitmq_function_records_total', fn, `${queue}",outcome="${o}`),
        ]),
      );
      expect(outcomes, `${fn}\n${text}`).toEqual({ processed: ORDERS, duplicate: 0, retried: 0, dead_lettered: 0 });
      expect(value('rabbitmq_function_unreported_invocations_total', fn, queue)).toBe(0);
      expect(value('rabbitmq_function_batch_duration_seconds_count', fn, queue)).toBe(invocations);
      expect(value('rabbitmq_trigger_message_age_seconds_count', fn, queue)).toBe(ORDERS);
    }
  }, 60_000);
});
