/**
 * Admin stock routes, behind the bearer token ADMIN_TOKEN (encapsulated: the token check covers only
 * these routes). With ADMIN_TOKEN unset every admin request is refused, so admin is off by default.
 *
 *   GET  /admin/stock                    every item
 *   GET  /admin/stock/{item}             one item
 *   POST /admin/stock/{item}/restock     {quantity}: adds to what is available
 */
import type { FastifyPluginAsync } from 'fastify';
import * as z from 'zod';
import { parseInput, storableText } from '../contract/validation';
import type { StockRow } from '../store';
import { adminAuth } from './admin-auth';
import { StockItemNotFoundError } from './problem';

const ItemName = storableText().trim().min(1).max(200);
const RestockRequest = z.strictObject({ quantity: z.number().int().positive().max(1_000_000) });

const stockView = (row: StockRow) => ({
  item: row.item,
  available: row.available,
  reserved: row.reserved,
  updated_at: row.updated_at,
});

export const adminRoutes: FastifyPluginAsync = async (app) => {
  const { config, store } = app.services;
  await app.register(adminAuth, { token: config.adminToken });

  app.get('/stock', async () => {
    const rows = await (await store()).stock.list();
    return { items: rows.map(stockView) };
  });

  app.get<{ Params: { item: string } }>('/stock/:item', async (request) => {
    const item = parseInput(ItemName, request.params.item, 'item');
    const row = await (await store()).stock.get(item);
    if (!row) throw new StockItemNotFoundError(item);
    return stockView(row);
  });

  app.post<{ Params: { item: string } }>('/stock/:item/restock', async (request) => {
    const item = parseInput(ItemName, request.params.item, 'item');
    const { quantity } = parseInput(RestockRequest, request.body);
    const row = await (await store()).stock.restock(item, quantity);
    request.log.info({ item, quantity, available: row.available }, 'stock restocked');
    return stockView(row);
  });
};
