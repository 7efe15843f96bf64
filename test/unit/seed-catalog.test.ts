/**
 * The local demo catalog (issue #13, seed fidelity): a fresh database with the seed on takes the reference
 * system's own example order, through the real inventoryReservation handler (its store an in-memory SQLite
 * database seeded as the handler's own store is, its publisher a recorder); the one sold-out item is refused
 * with out_of_stock; and every order the README and the fixtures show is one that catalog can serve.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Context } from 'aws-lambda';
import { rabbitMQEventFromBodies } from 'middy-rabbitmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createHandler } from '../../handlers/inventory-reservation';
import { loadConfig } from '../../shared/config';
import { SEED_CATALOG } from '../../shared/domain/inventory';
import { newEvent } from '../../shared/events';
import { createLogger } from '../../shared/logging';
import type { OutgoingMessage, Publisher } from '../../shared/messaging';
import { openStore, type Store } from '../../shared/store';

const ROOT = resolve(import.meta.dirname, '../..');
const context = { awsRequestId: 'req-seed', functionName: 'inventoryReservation' } as Context;

/** The reference system's own example order, as its README posts it. */
const REFERENCE_ORDER = { user_id: 'user123', item: 'Burger', quantity: 2 } as const;
const SOLD_OUT = Object.entries(SEED_CATALOG).filter(([, stock]) => stock === 0);

describe('the seeded demo catalog', () => {
  it('is a campus food menu with sensible stock and exactly one item sold out', () => {
    expect(Object.keys(SEED_CATALOG)).toEqual(expect.arrayContaining(['Burger', 'Pizza', 'Salad', 'Sandwich', 'Coffee']));
    for (const [item, stock] of Object.entries(SEED_CATALOG)) {
      expect(Number.isInteger(stock) && stock >= 0 && stock <= 1_000, `${item}: ${stock}`).toBe(true);
    }
    expect(SOLD_OUT).toHaveLength(1);
  });

  it('is seeded locally (the setting defaults on, serverless.yml says true for the local stage) and never in a deployment', () => {
    expect(loadConfig({}).seedCatalog).toBe(true);
    const params = (parse(readFileSync(join(ROOT, 'serverless.yml'), 'utf8')) as { params: Record<string, { seedCatalog?: string }> })
      .params;
    expect(params.local?.seedCatalog).toBe('true');
    expect(params.default?.seedCatalog).toBe('false'); // every other stage is a deployment
  });
});

describe('the reference order on a fresh database with the seed on (the real inventoryReservation handler)', () => {
  let store: Store;
  const published: OutgoingMessage[] = [];
  const publisher = { publish: async (message: OutgoingMessage) => void published.push(message) } as unknown as Publisher;
  const handler = () =>
    createHandler({
      store: async () => store,
      publisher: () => publisher,
      logger: () => createLogger({ level: 'silent' }),
      retryDelaysMs: () => [100],
    });
  const outcomes = () =>
    published.filter((m) => m.exchange === 'inventory').map((m) => JSON.parse(m.body.toString()) as Record<string, unknown>);

  beforeEach(async () => {
    published.length = 0;
    store = await openStore({ sqlitePath: ':memory:' });
    // What the handler's own store does on its first use when SEED_CATALOG is on (the local default).
    if (loadConfig({}).seedCatalog) await store.stock.seed(SEED_CATALOG);
  });
  afterEach(async () => {
    await store.close();
  });

  it('reserves {"user_id": "user123", "item": "Burger", "quantity": 2} and emits InventoryReserved', async () => {
    const order = newEvent('OrderPlaced', { order_id: randomUUID(), ...REFERENCE_ORDER });
    const report = await handler()(rabbitMQEventFromBodies({ queue: 'order-events', bodies: [order] }), context);
    expect(report).toEqual({ records: 1, processed: 1, duplicates: 0, retried: 0, deadLettered: 0 });
    expect(outcomes()).toEqual([
      expect.objectContaining({ event_type: 'InventoryReserved', order_id: order.order_id, ...REFERENCE_ORDER }),
    ]);
    expect(await store.stock.get('Burger')).toMatchObject({ available: SEED_CATALOG.Burger! - 2, reserved: 2 });
  });

  it('rejects an order for the sold-out item with reason out_of_stock, and moves no stock', async () => {
    const [soldOut] = SOLD_OUT[0]!;
    const order = newEvent('OrderPlaced', { order_id: randomUUID(), user_id: 'user123', item: soldOut, quantity: 1 });
    const report = await handler()(rabbitMQEventFromBodies({ queue: 'order-events', bodies: [order] }), context);
    expect(report).toMatchObject({ records: 1, processed: 1, deadLettered: 0 });
    expect(outcomes()).toEqual([
      expect.objectContaining({ event_type: 'InventoryFailed', order_id: order.order_id, item: soldOut, reason: 'out_of_stock' }),
    ]);
    expect(await store.stock.get(soldOut)).toMatchObject({ available: 0, reserved: 0 });
  });
});

describe('the orders the README and the fixtures show', () => {
  it("README's curl posts the reference order", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const posted = [...readme.matchAll(/-d '(\{[^']*"item"[^']*\})'/g)].map((m) => JSON.parse(m[1]!) as unknown);
    expect(posted.length).toBeGreaterThan(0);
    for (const order of posted) expect(order).toEqual(REFERENCE_ORDER);
  });

  it('every fixture order names an item of the catalog (POST /order bodies and OrderPlaced/Inventory* messages)', () => {
    const items: Array<{ file: string; item: unknown }> = [];
    const collect = (file: string, value: unknown): void => {
      if (Array.isArray(value)) for (const v of value) collect(file, v);
      else if (value && typeof value === 'object') {
        const record = value as Record<string, unknown>;
        if (record.routeKey === 'POST /order' && typeof record.body === 'string') items.push({ file, item: JSON.parse(record.body).item });
        if (typeof record.data === 'string' && record.basicProperties) {
          const text = Buffer.from(record.data, 'base64').toString('utf8');
          if (text.startsWith('{"') && text.includes('"item"')) items.push({ file, item: JSON.parse(text).item });
        }
        for (const v of Object.values(record)) collect(file, v);
      }
    };
    for (const folder of readdirSync(join(ROOT, 'fixtures'))) {
      for (const file of readdirSync(join(ROOT, 'fixtures', folder)).filter((f) => f.endsWith('.json'))) {
        collect(`${folder}/${file}`, JSON.parse(readFileSync(join(ROOT, 'fixtures', folder, file), 'utf8')));
      }
    }
    expect(items.length).toBeGreaterThan(0);
    for (const { file, item } of items) expect(Object.keys(SEED_CATALOG), file).toContain(item);
  });
});
