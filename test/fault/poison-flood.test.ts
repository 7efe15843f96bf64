/**
 * Fault suite: a flood of 2,000 messages on `order-events`, one in ten malformed or schema-invalid (ten kinds
 * of bad: broken JSON, invalid UTF-8, an empty body, a zero or textual quantity, a missing order id, an id
 * that is no UUID, an unknown event type, a JSON array, no messageId). Every bad one must end in
 * `order-events-dlq` with its reason in headers, body and properties as published, and every good one must
 * be processed once. The good messages' throughput is measured against a clean flood of the same size in the
 * same test and reported; it is never asserted (timings depend on the machine, correctness does not).
 *
 * The real inventory-reservation function, fed by the runner with its settings from functions/*.yml, on the
 * default store (SQLite), in a vhost of this test's own.
 */

import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { GetMessage } from 'amqplib';
import type { Runner } from 'serverless-offline-rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appHooks } from '../../shared/app/runner-hooks';
import { eventProperties, newEvent, type OrderPlaced } from '../../shared/events';
import type { Store } from '../../shared/store';
import { queueDepth } from '../support/amqp';
import { waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';

const ROOT = resolve(import.meta.dirname, '../..');
const FLOOD = 2_000;
const QUEUE = 'order-events';
const DLQ = 'order-events-dlq';

interface Outgoing {
  body: Buffer;
  messageId: string | undefined;
  /** For a bad message: the error the DLQ must name. */
  expectedError?: string;
  /** Identifies the message in the DLQ: its messageId, or a marker inside its body. */
  key: string;
  good?: OrderPlaced;
}

const goodOrder = (tag: string): Outgoing => {
  const event = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: `flood-${tag}`, item: 'widget', quantity: 1 });
  return { body: Buffer.from(JSON.stringify(event)), messageId: event.event_id, key: event.event_id, good: event };
};

/** The ten kinds of bad message, each with the error the poison-message middleware must name. */
const BAD_KINDS: ReadonlyArray<{ error: string; make: (id: string) => { body: Buffer; messageId?: string } }> = [
  { error: 'MalformedMessageError', make: (id) => ({ body: Buffer.from(`{"event_id": "${id}", not json`) }) },
  {
    error: 'MalformedMessageError',
    make: (id) => ({
      body: Buffer.concat([Buffer.from(`{"user_id":"${id}","item":"`), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]),
    }),
  },
  { error: 'MalformedMessageError', make: () => ({ body: Buffer.alloc(0) }) },
  { error: 'SchemaViolationError', make: (id) => ({ body: json({ ...valid(id), quantity: 0 }) }) },
  { error: 'SchemaViolationError', make: (id) => ({ body: json({ ...valid(id), order_id: undefined }) }) },
  { error: 'SchemaViolationError', make: (id) => ({ body: json({ ...valid(id), quantity: '3' }) }) },
  { error: 'SchemaViolationError', make: (id) => ({ body: json({ ...valid(id), event_id: `not-a-uuid-${id}` }) }) },
  { error: 'UnknownEventTypeError', make: (id) => ({ body: json({ ...valid(id), event_type: 'OrderShipped' }) }) },
  { error: 'UnknownEventTypeError', make: (id) => ({ body: json([valid(id)]) }) },
  // A good body without a messageId cannot be processed exactly once: refused, not guessed at.
  { error: 'MissingMessageIdError', make: (id) => ({ body: json(valid(id)), messageId: undefined }) },
];

function valid(tag: string): Record<string, unknown> {
  return newEvent('OrderPlaced', { order_id: randomUUID(), user_id: `bad-${tag}`, item: 'widget', quantity: 1 });
}
function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function flood(size: number, badEvery: number | undefined, tag: string): Outgoing[] {
  return Array.from({ length: size }, (_, i) => {
    if (!badEvery || i % badEvery !== badEvery - 1) return goodOrder(`${tag}-${i}`);
    const n = Math.floor(i / badEvery);
    const kind = BAD_KINDS[n % BAD_KINDS.length]!;
    const key = `bad-${tag}-${n}`;
    const made = kind.make(key);
    const messageId = 'messageId' in made ? made.messageId : key;
    // A message without a messageId is found in the DLQ by the marker in its body.
    return { body: made.body, messageId, expectedError: kind.error, key };
  });
}

describe('a flood with one message in ten malformed or schema-invalid', () => {
  let vhost: TestVhost;
  let amqp: VhostAmqp;
  let dir: string;
  let store: Store;
  let runner: Runner;

  const publish = async (messages: readonly Outgoing[]) => {
    for (const m of messages) {
      const properties = m.good
        ? eventProperties(m.good, 'order-intake', `corr-${m.key}`)
        : {
            contentType: 'application/json',
            persistent: true,
            correlationId: `corr-${m.key}`,
            ...(m.messageId ? { messageId: m.messageId } : {}),
          };
      amqp.channel.publish('orders', 'order.placed', m.body, properties);
    }
    await amqp.channel.waitForConfirms();
  };
  const claims = async () =>
    Number(
      (
        await store.db
          .selectFrom('inbox')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('consumer', '=', 'inventory-reservation')
          .executeTakeFirstOrThrow()
      ).n,
    );
  /** Publishes `messages` and measures until all good ones are claimed and all bad ones dead-lettered. */
  const run = async (messages: Outgoing[]) => {
    const good = messages.filter((m) => m.good).length;
    const bad = messages.length - good;
    const claimsBefore = await claims();
    const dlqBefore = await queueDepth(amqp.connection, DLQ);
    const started = performance.now();
    let goodDoneMs = 0;
    await publish(messages);
    await waitFor(
      async () => {
        if (!goodDoneMs && (await claims()) - claimsBefore >= good) goodDoneMs = performance.now() - started;
        return goodDoneMs > 0 && (await queueDepth(amqp.connection, DLQ)) - dlqBefore >= bad;
      },
      `${good} good messages processed and ${bad} bad ones dead-lettered`,
      120_000,
    );
    const allDoneMs = performance.now() - started;
    return {
      good,
      bad,
      goodDoneMs,
      allDoneMs,
      goodPerSecond: Math.round((good / goodDoneMs) * 1000),
      allPerSecond: Math.round((messages.length / allDoneMs) * 1000),
    };
  };

  beforeAll(async () => {
    vhost = await createVhost('fault-flood');
    amqp = await openAmqp(vhost.url);
    dir = await mkdtemp(join(tmpdir(), 'fault-flood-'));
    Object.assign(process.env, {
      AMQP_URL: vhost.url,
      AMQP_URLS: '',
      DATABASE_URL: '',
      SQLITE_PATH: join(dir, 'app.sqlite'),
      RETRY_DELAYS_MS: '200,400',
      LOG_LEVEL: 'silent',
      WEBHOOK_URL: '',
    });
    const { loadConfig } = await import('../../shared/config');
    const { createLogger } = await import('../../shared/logging');
    const { declareTopology, topologyOptions } = await import('../../shared/messaging');
    const { openStore } = await import('../../shared/store');
    const { InProcessInvoker, loadService, Runner, triggersFromFunctions } = await import('serverless-offline-rabbitmq');
    const { handler } = await import('../../handlers/inventory-reservation');
    store = await openStore();
    await store.stock.upsert({ widget: 1_000_000 });
    await declareTopology(amqp.connection, topologyOptions(loadConfig()));
    const service = loadService(ROOT);
    runner = new Runner({
      urls: loadConfig().amqpUrls,
      triggers: triggersFromFunctions(service.functions, service.info).filter((t) => t.functionKey === 'inventoryReservation'),
      invoker: new InProcessInvoker(async () => handler as never),
      logger: createLogger({ level: 'silent' }),
      hooks: appHooks({ relayStore: false }),
    });
    await runner.start();
  }, 60_000);

  afterAll(async () => {
    await runner?.stop();
    const { closeMessaging } = await import('../../shared/messaging');
    await closeMessaging();
    await store?.close();
    await amqp?.close();
    await vhost?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('dead-letters every bad message with its reason and processes every good one, and reports the throughput', async () => {
    await run(flood(100, undefined, 'warm')); // JIT, connections and the store warmed up before anything is timed
    const cleanMessages = flood(FLOOD, undefined, 'clean');
    const clean = await run(cleanMessages);
    const floodMessages = flood(FLOOD, 10, 'flood');
    const dirty = await run(floodMessages);

    const ratio = dirty.goodPerSecond / clean.goodPerSecond;
    console.log(
      `[fault] poison flood, ${FLOOD} messages each (inventoryReservation, batchSize/window from functions/*.yml, SQLite): ` +
        `clean run ${clean.good} good in ${Math.round(clean.goodDoneMs)} ms = ${clean.goodPerSecond} good msg/s; ` +
        `1-in-10 bad run ${dirty.good} good in ${Math.round(dirty.goodDoneMs)} ms = ${dirty.goodPerSecond} good msg/s ` +
        `(${Math.round(ratio * 100)}% of clean), all ${dirty.bad} bad dead-lettered after ${Math.round(dirty.allDoneMs)} ms ` +
        `(${dirty.allPerSecond} msg/s in all, vs ${clean.allPerSecond} msg/s clean)`,
    );

    // The DLQ holds exactly the bad messages, each with its reason, body and properties as published.
    const dead: GetMessage[] = [];
    for (;;) {
      const message = await amqp.channel.get(DLQ, { noAck: true });
      if (!message) break;
      dead.push(message);
    }
    const bad = floodMessages.filter((m) => !m.good);
    expect(dead).toHaveLength(bad.length);
    const keyOf = (m: GetMessage) => m.properties.messageId ?? /bad-flood-\d+/.exec(m.content.toString('latin1'))?.[0];
    const deadByKey = new Map(dead.map((m) => [String(keyOf(m)), m]));
    const wrong: string[] = [];
    for (const m of bad) {
      const found = deadByKey.get(m.key);
      const headers = found?.properties.headers ?? {};
      if (!found) wrong.push(`${m.key}: not in the DLQ`);
      else if (headers['x-error-name'] !== m.expectedError)
        wrong.push(`${m.key}: x-error-name ${String(headers['x-error-name'])}, expected ${m.expectedError}`);
      else if (headers['x-error-class'] !== 'permanent') wrong.push(`${m.key}: x-error-class ${String(headers['x-error-class'])}`);
      else if (!String(headers['x-error-message'] ?? '')) wrong.push(`${m.key}: no x-error-message`);
      else if (headers['x-original-queue'] !== QUEUE || headers['x-attempts'] !== 1)
        wrong.push(`${m.key}: original queue / attempts ${String(headers['x-original-queue'])} / ${String(headers['x-attempts'])}`);
      else if (Number.isNaN(Date.parse(String(headers['x-first-failed-at'])))) wrong.push(`${m.key}: x-first-failed-at unreadable`);
      else if (!found.content.equals(m.body)) wrong.push(`${m.key}: body changed`);
      else if (found.properties.correlationId !== `corr-${m.key}` || found.properties.contentType !== 'application/json')
        wrong.push(`${m.key}: properties changed`);
    }
    expect(wrong).toEqual([]);
    const reasons = Object.fromEntries(
      BAD_KINDS.map((k) => [k.error, dead.filter((m) => m.properties.headers?.['x-error-name'] === k.error).length]),
    );
    expect(reasons).toEqual({ MalformedMessageError: 60, SchemaViolationError: 80, UnknownEventTypeError: 40, MissingMessageIdError: 20 });

    // Every good message of both floods had its effect exactly once; no bad one had any.
    const goods = [...cleanMessages, ...floodMessages].filter((m) => m.good).map((m) => m.good!);
    const claimed = new Set(
      (await store.db.selectFrom('inbox').select('message_id').where('consumer', '=', 'inventory-reservation').execute()).map(
        (r) => r.message_id,
      ),
    );
    expect(goods.filter((g) => !claimed.has(g.event_id)).map((g) => g.event_id)).toEqual([]);
    expect(bad.filter((m) => m.messageId && claimed.has(m.messageId)).map((m) => m.key)).toEqual([]);
    const outcomes = (await store.db.selectFrom('outbox').select('body').where('routing_key', 'like', 'inventory.%').execute()).map(
      (r) => JSON.parse(r.body) as { order_id: string; event_type: string },
    );
    const outcomeOrders = new Set(outcomes.map((o) => o.order_id));
    expect(outcomes.filter((o) => o.event_type === 'InventoryReserved')).toHaveLength(outcomes.length);
    expect(goods.filter((g) => !outcomeOrders.has(g.order_id)).map((g) => g.order_id)).toEqual([]);
    expect(outcomes).toHaveLength(goods.length + 100); // + the warm-up
    expect((await store.stock.get('widget'))?.reserved).toBe(goods.length + 100);
    expect(await queueDepth(amqp.connection, QUEUE)).toBe(0);
  }, 300_000);
});
