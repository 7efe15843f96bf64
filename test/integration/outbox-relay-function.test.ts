/**
 * The outbox relay as a scheduled function (handlers/outbox-relay.ts), invoked as EventBridge invokes it, with
 * its committed fixture event, against a backlog in SQLite and in PostgreSQL and the real broker: it sends the
 * whole backlog once, in order, and returns; rows leased to their producer wait; two overlapping runs on one
 * PostgreSQL send each row once; with too little time left it starts no round; a run deletes the inbox claims
 * and published rows older than their retention, never an unpublished row.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Context } from 'aws-lambda';
import { createLambdaContext } from 'serverless-offline-rabbitmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RelayRunResult } from '../../handlers/outbox-relay';
import { createHandler } from '../../handlers/outbox-relay';
import { createLogger } from '../../shared/logging';
import { Broker, Publisher } from '../../shared/messaging';
import { type NewOutboxMessage, openStore, type Store } from '../../shared/store';
import { AMQP_URL, openTestAmqp, type TestAmqp } from '../support/amqp';
import { backends } from '../support/databases';

const ROOT = resolve(import.meta.dirname, '../..');
const scheduled = JSON.parse(readFileSync(join(ROOT, 'fixtures/outbox-relay/scheduled.json'), 'utf8')) as Record<string, unknown>;
const context = (timeoutSeconds = 60): Context =>
  createLambdaContext({ functionName: 'rabbit-functions-prod-outboxRelay', timeoutSeconds, memorySize: 512 });
const logger = createLogger({ level: 'silent' });

describe.each(backends())('outbox relay function on $name', (backend) => {
  const exchange = `outbox-relay-fn-${randomBytes(4).toString('hex')}`;
  let amqp: TestAmqp;
  let ids: string[] = [];
  const brokers: Broker[] = [];
  const stores: Store[] = [];

  beforeAll(async () => {
    await backend.setup();
    amqp = await openTestAmqp();
    await amqp.channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: true });
    const { queue } = await amqp.channel.assertQueue('', { exclusive: true, autoDelete: true });
    await amqp.channel.bindQueue(queue, exchange, '#');
    await amqp.channel.consume(queue, (message) => message && ids.push(String(message.properties.messageId)), { noAck: true });
  });
  afterEach(async () => {
    for (const broker of brokers.splice(0)) await broker.close();
    for (const store of stores.splice(0)) await store.close();
    ids = [];
  });
  afterAll(async () => {
    await amqp.close();
    await backend.teardown();
  });

  const rows = (count: number): NewOutboxMessage[] =>
    Array.from({ length: count }, (_, n) => ({ event_id: randomUUID(), exchange, routing_key: `row.${n}`, body: { n }, properties: {} }));

  /** A relay function with its own store (opened on the database given) and broker connection, as a Lambda container has. */
  async function relayFunction(options: Awaited<ReturnType<typeof backend.fresh>>, limit?: number) {
    const store = await openStore(options);
    stores.push(store);
    const broker = new Broker({ urls: [AMQP_URL], connectionName: 'outbox-relay-function-test' });
    brokers.push(broker);
    const publisher = new Publisher(broker);
    const handler = createHandler({
      store: async () => store,
      publisher: () => publisher,
      logger: () => logger,
      ...(limit ? { limit } : {}),
    });
    return { store, invoke: (ctx = context()) => handler(scheduled, ctx) as Promise<RelayRunResult> };
  }

  async function waitForIds(count: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (ids.length < count && Date.now() < deadline) await sleep(20);
    await sleep(200); // a duplicate would arrive within this
  }

  it('sends a backlog larger than one round, each row once and oldest first, then returns; a row leased to its producer waits', async () => {
    const { store, invoke } = await relayFunction(await backend.fresh(), 40);
    const backlog = rows(100);
    await store.outbox.add(backlog);
    // One row still leased to the producer that is publishing it: not the relay's to send yet.
    const leased = rows(1);
    await store.outbox.add(leased, { leaseMs: 60_000 });

    const result = await invoke();
    expect(result).toMatchObject({ published: 100, failed: 0, deferred: 0, rounds: 3, backlog: 1 });
    await waitForIds(100);
    expect(ids).toEqual(backlog.map((row) => row.event_id));

    // The next scheduled run finds nothing more to send.
    expect(await invoke()).toMatchObject({ published: 0, rounds: 1, backlog: 1 });
    await sleep(100);
    expect(ids).toHaveLength(100);
  });

  it('starts no round when the time left could not cover one (a publish wait, twice), and leaves the rows for the next run', async () => {
    const { store, invoke } = await relayFunction(await backend.fresh());
    await store.outbox.add(rows(3));
    expect(await invoke(context(15))).toMatchObject({ published: 0, rounds: 0, backlog: 3 });
    await sleep(200);
    expect(ids).toEqual([]);
  });

  it('deletes inbox claims and published rows older than their retention (7 days by default), never an unpublished row', async () => {
    const { store, invoke } = await relayFunction(await backend.fresh());
    const daysAgo = (days: number) => new Date(Date.now() - days * 24 * 60 * 60 * 1000).toISOString();
    const [old, recent, unpublished] = [rows(3), rows(1), rows(1)];
    await store.outbox.add([...old, ...recent, ...unpublished], { leaseMs: 60_000 }); // leased: this run sends none
    await store.db
      .updateTable('outbox')
      .set({ created_at: daysAgo(30) })
      .execute();
    const published = await store.db.selectFrom('outbox').select(['id', 'event_id']).execute();
    const idsOf = (group: NewOutboxMessage[]) =>
      published.filter((row) => group.some((m) => m.event_id === row.event_id)).map((row) => row.id);
    await store.outbox.markPublished(idsOf(old), daysAgo(8));
    await store.outbox.markPublished(idsOf(recent), daysAgo(6));
    await store.db
      .insertInto('inbox')
      .values([
        { consumer: 'inventory', message_id: 'claimed-8-days-ago', processed_at: daysAgo(8) },
        { consumer: 'inventory', message_id: 'claimed-6-days-ago', processed_at: daysAgo(6) },
      ])
      .execute();

    expect(await invoke()).toMatchObject({ published: 0, backlog: 1, pruned: { inbox: 1, outbox: 3 } });
    const left = await store.db.selectFrom('outbox').select('event_id').orderBy('id').execute();
    expect(left.map((row) => row.event_id)).toEqual([recent[0]!.event_id, unpublished[0]!.event_id]);
    expect(await store.inbox.claim('inventory', 'claimed-6-days-ago')).toBe(false);
    expect(await invoke()).toMatchObject({ pruned: { inbox: 0, outbox: 0 } });
  });

  it('sends its rows even when deleting expired rows fails: that failure is logged, and the next run prunes', async () => {
    const { store } = await relayFunction(await backend.fresh());
    const broker = new Broker({ urls: [AMQP_URL], connectionName: 'outbox-relay-function-test' });
    brokers.push(broker);
    const failingPrune = {
      outbox: store.outbox,
      inbox: Object.assign(Object.create(store.inbox), { prune: async () => Promise.reject(new Error('database went away')) }),
    } as unknown as Store;
    const handler = createHandler({ store: async () => failingPrune, publisher: () => new Publisher(broker), logger: () => logger });
    await store.outbox.add(rows(2));
    expect(await handler(scheduled, context())).toMatchObject({ published: 2, backlog: 0, pruned: { inbox: 0, outbox: 0 } });
    await waitForIds(2);
  });

  if (backend.name === 'postgres') {
    it('two runs at once on one PostgreSQL (a run outlasting its minute) send every row once', async () => {
      const options = await backend.fresh();
      const first = await relayFunction(options, 7);
      const second = await relayFunction(options, 7);
      const backlog = rows(150);
      await first.store.outbox.add(backlog);
      const results = await Promise.all([first.invoke(), second.invoke()]);
      await waitForIds(150);
      expect(results[0]!.published + results[1]!.published).toBe(150);
      expect(ids).toHaveLength(150);
      expect(new Set(ids)).toEqual(new Set(backlog.map((row) => row.event_id)));
      expect(await first.store.outbox.backlog()).toBe(0);
    });
  }
});
