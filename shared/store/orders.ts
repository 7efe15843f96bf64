/** Orders: what intake stores, the status projection updates, and GET /orders reads (newest first). */
import { CompiledQuery, type Kysely } from 'kysely';
import { traced } from 'middy-rabbitmq/tracing';
import { DuplicateError, InvalidCursorError, isUniqueViolation } from './errors';
import type { DialectName } from './migrations';
import { type NewOutboxMessage, OUTBOX_COLUMNS, outboxRows, valueList } from './outbox';
import { type Database, type Order, type OrderStatus, toIso } from './schema';
import { TRANSACTION_SPAN, transactionSpanOptions } from './spans';

export interface NewOrder {
  order_id: string;
  user_id: string;
  item: string;
  quantity: number;
  /** Defaults to 'accepted'. */
  status?: OrderStatus;
  reason?: string | null;
  correlation_id?: string | null;
  idempotency_key?: string | null;
  request_hash?: string | null;
  /** Defaults to now. */
  created_at?: Date | string;
}

export interface OrderPage {
  orders: Order[];
  /** Pass back as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export class Orders {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  /**
   * Stores a new order and the events that announce it, atomically, in the fewest round trips: one statement
   * on PostgreSQL (a data-modifying WITH: both inserts or neither), a transaction on SQLite (in-process, no
   * round trips). Call it outside a transaction. Throws DuplicateError for an existing order id or key.
   */
  async insertWithOutbox(order: NewOrder, messages: readonly NewOutboxMessage[], options: { leaseMs?: number } = {}): Promise<Order> {
    const row = orderRow(order);
    const outbox = outboxRows(messages, options);
    try {
      // One transaction: a single statement on PostgreSQL, a transaction of two on SQLite.
      await traced(TRANSACTION_SPAN, transactionSpanOptions(this.dialect), () => this.insertBoth(row, outbox));
    } catch (error) {
      if (isUniqueViolation(error))
        throw new DuplicateError(`Order ${order.order_id} or its idempotency key already exists`, { cause: error });
      throw error;
    }
    return row;
  }

  private async insertBoth(row: ReturnType<typeof orderRow>, outbox: ReturnType<typeof outboxRows>): Promise<void> {
    // Intake's hot path: the statements' text depends only on the number of events, so it is made once and
    // only the values change (Kysely's builder compiled both inserts on every request: about a tenth of
    // intake's CPU in bench:http's profile).
    const orderValues = ORDER_COLUMNS.map((column) => row[column]);
    const outboxValues = outbox.flatMap((r) => OUTBOX_COLUMNS.map((column) => r[column]));
    if (this.dialect === 'postgres') {
      await this.db.executeQuery(CompiledQuery.raw(insertSql('postgres', outbox.length), [...orderValues, ...outboxValues]));
    } else {
      await this.db.transaction().execute(async (trx) => {
        await trx.executeQuery(CompiledQuery.raw(insertSql('sqlite', 0), orderValues));
        if (outbox.length > 0) await trx.executeQuery(CompiledQuery.raw(insertSql('sqlite', outbox.length, 'outbox'), outboxValues));
      });
    }
  }

  /** Stores a new order. Throws DuplicateError when the order id or idempotency key already exists. */
  async insert(order: NewOrder): Promise<Order> {
    const row = orderRow(order);
    try {
      await this.db.insertInto('orders').values(row).execute();
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new DuplicateError(`Order ${order.order_id} or its idempotency key already exists`, { cause: error });
      }
      throw error;
    }
    return row;
  }

  async get(orderId: string): Promise<Order | undefined> {
    return this.db.selectFrom('orders').selectAll().where('order_id', '=', orderId).executeTakeFirst();
  }

  async findByIdempotencyKey(key: string): Promise<Order | undefined> {
    return this.db.selectFrom('orders').selectAll().where('idempotency_key', '=', key).executeTakeFirst();
  }

  /**
   * One page of orders, newest first (ties broken by order id). `limit` is clamped to 1..MAX_PAGE_SIZE.
   * Keyset pagination: a page never repeats or skips an order, however many are added meanwhile.
   * Throws InvalidCursorError for a cursor this store did not hand out.
   */
  async list(options: { limit?: number; cursor?: string | null } = {}): Promise<OrderPage> {
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? DEFAULT_PAGE_SIZE), 1), MAX_PAGE_SIZE);
    let query = this.db.selectFrom('orders').selectAll();
    if (options.cursor) {
      const [createdAt, orderId] = decodeCursor(options.cursor);
      query = query.where((eb) =>
        eb.or([eb('created_at', '<', createdAt), eb.and([eb('created_at', '=', createdAt), eb('order_id', '<', orderId)])]),
      );
    }
    const rows = await query
      .orderBy('created_at', 'desc')
      .orderBy('order_id', 'desc')
      .limit(limit + 1)
      .execute();
    const orders = rows.slice(0, limit);
    const last = orders.at(-1);
    return { orders, nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
  }

  /** Sets the status (and reason, null unless given); returns the updated order, undefined if unknown. */
  async setStatus(orderId: string, status: OrderStatus, reason?: string | null): Promise<Order | undefined> {
    return this.db
      .updateTable('orders')
      .set({ status, reason: reason ?? null, updated_at: toIso() })
      .where('order_id', '=', orderId)
      .returningAll()
      .executeTakeFirst();
  }

  /** Records when the customer was told; false if the order is unknown. */
  async markNotified(orderId: string, at: Date | string = new Date()): Promise<boolean> {
    const iso = toIso(at);
    const result = await this.db
      .updateTable('orders')
      .set({ notified_at: iso, updated_at: iso })
      .where('order_id', '=', orderId)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }
}

function encodeCursor(order: Order): string {
  return Buffer.from(JSON.stringify([order.created_at, order.order_id])).toString('base64url');
}

/** A part of a cursor this store could have written: text without NUL, which PostgreSQL cannot even compare. */
const cursorPart = (part: unknown): part is string => typeof part === 'string' && !part.includes('\u0000');

function decodeCursor(cursor: string): [string, string] {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2 && value.every(cursorPart)) {
      return [value[0] as string, value[1] as string];
    }
  } catch {
    // fall through
  }
  throw new InvalidCursorError();
}

/** An order row as stored, with its defaults filled in. */
/** The columns intake's insert writes, in its statement's order. */
const ORDER_COLUMNS = [
  'order_id',
  'user_id',
  'item',
  'quantity',
  'status',
  'reason',
  'correlation_id',
  'idempotency_key',
  'request_hash',
  'created_at',
  'updated_at',
  'notified_at',
] as const satisfies readonly (keyof Order)[];

const insertSqls = new Map<string, string>();

/**
 * The text of intake's insert: on PostgreSQL the order and its `events` outbox rows in one data-modifying WITH;
 * on SQLite the order alone (`events` 0), or the outbox rows alone (`only` 'outbox'), for one transaction.
 */
function insertSql(dialect: DialectName, events: number, only?: 'outbox'): string {
  const key = `${dialect}:${events}:${only ?? ''}`;
  let text = insertSqls.get(key);
  if (text === undefined) {
    const order = `insert into orders (${ORDER_COLUMNS.join(', ')}) values ${valueList(dialect, 0, 1, ORDER_COLUMNS.length)}`;
    const outbox = (offset: number) =>
      `insert into outbox (${OUTBOX_COLUMNS.join(', ')}) values ${valueList(dialect, offset, events, OUTBOX_COLUMNS.length)}`;
    text =
      dialect === 'postgres'
        ? events === 0
          ? order
          : `with placed as (${order} returning order_id) ${outbox(ORDER_COLUMNS.length)}`
        : only
          ? outbox(0)
          : order;
    insertSqls.set(key, text);
  }
  return text;
}

function orderRow(order: NewOrder): Order {
  const createdAt = toIso(order.created_at);
  return {
    order_id: order.order_id,
    user_id: order.user_id,
    item: order.item,
    quantity: order.quantity,
    status: order.status ?? 'accepted',
    reason: order.reason ?? null,
    correlation_id: order.correlation_id ?? null,
    idempotency_key: order.idempotency_key ?? null,
    request_hash: order.request_hash ?? null,
    created_at: createdAt,
    updated_at: createdAt,
    notified_at: null,
  };
}
