/**
 * The hand-written baseline of `bench:http`: the same durable work as `POST /order`, without this repository's
 * framework (no middy, no zod, no pino, no Kysely, no shared/*). A plain fastify route that
 *   1. checks the body by hand (an object with exactly user_id, item, quantity: two non-empty strings of at
 *      most 200 characters and an integer 1..1,000,000), else 400;
 *   2. stores the order row and its OrderPlaced outbox row atomically, in the tables our migrations made
 *      (SQLite: one `begin immediate` transaction with two prepared inserts through better-sqlite3;
 *      PostgreSQL: one statement, a data-modifying WITH, through a pg Pool: its own transaction, committed);
 *   3. publishes the event with amqplib on a confirm channel to exchange `orders`, routing key `order.placed`
 *      (mandatory, the contract's properties), and waits for the confirm;
 *   4. marks the outbox row published with one UPDATE, and answers 202 with the same body as the real intake.
 * It is invoked exactly like the real handler minus middy: API Gateway v2 events through @fastify/aws-lambda.
 */
import { randomUUID } from 'node:crypto';
import awsLambdaFastify from '@fastify/aws-lambda';
import type { APIGatewayProxyEventV2, APIGatewayProxyResult, Context } from 'aws-lambda';
import fastify from 'fastify';

export type BaselineStore = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

interface Placed {
  order_id: string;
  user_id: string;
  item: string;
  quantity: number;
  correlation_id: string;
  at: string;
  event_id: string;
  body: string;
  properties: string;
  claimed_until: string;
}

interface Durable {
  place(order: Placed): Promise<void>;
  markPublished(eventId: string, at: string): Promise<void>;
  close(): Promise<void>;
}

const ORDER_COLUMNS =
  'order_id, user_id, item, quantity, status, reason, correlation_id, idempotency_key, request_hash, created_at, updated_at, notified_at';
const OUTBOX_COLUMNS = 'event_id, exchange, routing_key, body, properties, created_at, claimed_until';
const EXCHANGE = 'orders';
const ROUTING_KEY = 'order.placed';
/** The real intake keeps the relays off its row for twice its publish wait; the baseline writes a lease as well. */
const LEASE_MS = 10_000;

async function sqliteDurable(path: string): Promise<Durable> {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(path);
  // The pragmas the store uses.
  db.pragma('busy_timeout = 5000');
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  const insertOrder = db.prepare(`insert into orders (${ORDER_COLUMNS}) values (?, ?, ?, ?, 'accepted', null, ?, null, null, ?, ?, null)`);
  const insertOutbox = db.prepare(`insert into outbox (${OUTBOX_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?)`);
  const mark = db.prepare('update outbox set published_at = ? where event_id = ? and published_at is null');
  const place = db.transaction((o: Placed) => {
    insertOrder.run(o.order_id, o.user_id, o.item, o.quantity, o.correlation_id, o.at, o.at);
    insertOutbox.run(o.event_id, EXCHANGE, ROUTING_KEY, o.body, o.properties, o.at, o.claimed_until);
  });
  return {
    place: async (o) => void place.immediate(o),
    markPublished: async (eventId, at) => void mark.run(at, eventId),
    close: async () => void db.close(),
  };
}

async function postgresDurable(url: string): Promise<Durable> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url });
  pool.on('error', () => undefined);
  const placeSql =
    `with placed as (insert into orders (${ORDER_COLUMNS}) values ($1, $2, $3, $4, 'accepted', null, $5, null, null, $6, $6, null) returning order_id) ` +
    `insert into outbox (${OUTBOX_COLUMNS}) values ($7, '${EXCHANGE}', '${ROUTING_KEY}', $8, $9, $6, $10)`;
  return {
    place: async (o) =>
      void (await pool.query(placeSql, [
        o.order_id,
        o.user_id,
        o.item,
        o.quantity,
        o.correlation_id,
        o.at,
        o.event_id,
        o.body,
        o.properties,
        o.claimed_until,
      ])),
    markPublished: async (eventId, at) =>
      void (await pool.query('update outbox set published_at = $1 where event_id = $2 and published_at is null', [at, eventId])),
    close: () => pool.end(),
  };
}

const text = (value: unknown): value is string => typeof value === 'string' && value.trim().length > 0 && value.length <= 200;

/** The order in `body`, or undefined when it is not exactly { user_id, item, quantity } with sane values. */
function checkOrder(body: unknown): { user_id: string; item: string; quantity: number } | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const { user_id, item, quantity, ...rest } = body as Record<string, unknown>;
  if (Object.keys(rest).length > 0 || !text(user_id) || !text(item)) return undefined;
  if (typeof quantity !== 'number' || !Number.isInteger(quantity) || quantity < 1 || quantity > 1_000_000) return undefined;
  return { user_id: user_id.trim(), item: item.trim(), quantity };
}

export type BaselineHandler = (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyResult>;

/** The baseline intake on `store` and the broker at `amqpUrl`: its Lambda handler, and `close()`. */
export async function createBaseline(store: BaselineStore, amqpUrl: string): Promise<{ handler: BaselineHandler; close(): Promise<void> }> {
  const { default: amqp } = await import('amqplib');
  const durable = store.kind === 'sqlite' ? await sqliteDurable(store.path) : await postgresDurable(store.url);
  const connection = await amqp.connect(amqpUrl, { clientProperties: { connection_name: 'bench-http-baseline' } });
  const channel = await connection.createConfirmChannel();
  channel.on('return', () => undefined); // an unroutable message still gets its confirm; nothing to do here
  const publish = (body: Buffer, options: Record<string, unknown>) =>
    new Promise<void>((resolve, reject) =>
      channel.publish(EXCHANGE, ROUTING_KEY, body, { ...options, mandatory: true }, (error) =>
        error ? reject(new Error('broker refused the message')) : resolve(),
      ),
    );

  const app = fastify();
  app.post('/order', async (request, reply) => {
    const input = checkOrder(request.body);
    if (!input) return reply.code(400).send({ error: 'invalid order' });
    const now = new Date();
    const at = now.toISOString();
    const orderId = randomUUID();
    const eventId = randomUUID();
    const correlationId = randomUUID();
    const body = JSON.stringify({ ...input, order_id: orderId, timestamp: at, event_id: eventId, event_type: 'OrderPlaced' });
    const properties = {
      contentType: 'application/json',
      deliveryMode: 2,
      persistent: true,
      messageId: eventId,
      type: 'OrderPlaced',
      timestamp: Math.floor(now.getTime() / 1000),
      appId: 'order-intake',
      correlationId,
    };
    await durable.place({
      ...input,
      order_id: orderId,
      correlation_id: correlationId,
      at,
      event_id: eventId,
      body,
      properties: JSON.stringify(properties),
      claimed_until: new Date(now.getTime() + LEASE_MS).toISOString(),
    });
    await publish(Buffer.from(body), properties);
    await durable.markPublished(eventId, new Date().toISOString());
    return reply
      .code(202)
      .header('location', `/orders/${orderId}`)
      .send({ order_id: orderId, status: 'accepted', message: 'Order accepted for processing', timestamp: at });
  });
  await app.ready();
  const handler = awsLambdaFastify<APIGatewayProxyEventV2>(app) as unknown as BaselineHandler;
  return {
    handler,
    close: async () => {
      await app.close().catch(() => undefined);
      await channel.close().catch(() => undefined);
      await connection.close().catch(() => undefined);
      await durable.close().catch(() => undefined);
    },
  };
}
