/** Stock: how many of each item can still be reserved. Reservation never oversells. */
import type { Kysely } from 'kysely';
import { type Database, type StockRow, toIso } from './schema';

export type ReserveResult = 'reserved' | 'out_of_stock' | 'unknown_item';

/** Item name → quantity. */
export type StockLevels = Readonly<Record<string, number>>;

export class Stock {
  constructor(private readonly db: Kysely<Database>) {}

  async get(item: string): Promise<StockRow | undefined> {
    return this.db.selectFrom('stock').selectAll().where('item', '=', item).executeTakeFirst();
  }

  /** Every item, by name. */
  async list(): Promise<StockRow[]> {
    return this.db.selectFrom('stock').selectAll().orderBy('item').execute();
  }

  /** Adds the items that are missing with the given availability; existing items are left alone. Returns how many were added. */
  async seed(levels: StockLevels): Promise<number> {
    const rows = toRows(levels);
    if (rows.length === 0) return 0;
    const result = await this.db
      .insertInto('stock')
      .values(rows)
      .onConflict((oc) => oc.column('item').doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0n);
  }

  /** Sets the availability of the given items, adding missing ones; reserved counts are kept. */
  async upsert(levels: StockLevels): Promise<void> {
    const rows = toRows(levels);
    if (rows.length === 0) return;
    await this.db
      .insertInto('stock')
      .values(rows)
      .onConflict((oc) =>
        oc.column('item').doUpdateSet((eb) => ({
          available: eb.ref('excluded.available'),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
      .execute();
  }

  /** Adds `amount` (a positive integer) to the item's availability, adding the item if missing. */
  async restock(item: string, amount: number): Promise<StockRow> {
    assertQuantity(amount, 'amount', 1);
    return this.db
      .insertInto('stock')
      .values({ item, available: amount, updated_at: toIso() })
      .onConflict((oc) =>
        oc.column('item').doUpdateSet((eb) => ({
          available: eb('stock.available', '+', eb.ref('excluded.available')),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /**
   * Takes `quantity` of `item` if that many are available, in ONE conditional update, so concurrent
   * reservations can never oversell; only when nothing was updated, a lookup tells why.
   */
  async reserve(item: string, quantity: number): Promise<ReserveResult> {
    assertQuantity(quantity, 'quantity', 1);
    const result = await this.db
      .updateTable('stock')
      .set((eb) => ({
        available: eb('available', '-', quantity),
        reserved: eb('reserved', '+', quantity),
        updated_at: toIso(),
      }))
      .where('item', '=', item)
      .where('available', '>=', quantity)
      .executeTakeFirst();
    if (result.numUpdatedRows > 0n) return 'reserved';
    return (await this.get(item)) ? 'out_of_stock' : 'unknown_item';
  }
}

function toRows(levels: StockLevels) {
  const updatedAt = toIso();
  return Object.entries(levels).map(([item, available]) => {
    assertQuantity(available, `stock of ${item}`, 0);
    return { item, available, updated_at: updatedAt };
  });
}

function assertQuantity(value: number, what: string, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${what} must be an integer >= ${min}, got ${value}`);
  }
}
