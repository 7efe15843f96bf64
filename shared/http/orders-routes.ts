/**
 * Order routes: POST /order, GET /orders/{order_id}, GET /orders (admin only when ORDERS_LIST_ADMIN_ONLY). Thin: read the request, call the domain
 * step, publish the new event right after commit (bounded wait), answer. While the broker is known to be
 * down the publish fails at once and the answer does not wait: the outbox relay sends the event later.
 */
import type { FastifyPluginAsync } from 'fastify';
import { ORDER_ID_ATTRIBUTE, tagActiveSpan } from 'middy-rabbitmq/tracing';
import { parseInput, ValidationError } from '../contract/validation';
import { getOrder, ListOrdersQuery, listOrders, OrderId, PlaceOrderRequest, placeOrder } from '../domain/orders';
import { publishCommitted } from '../outbox';
import type { Order } from '../store';
import { adminAuth } from './admin-auth';
import { MAX_KEY_LENGTH } from './limits';

/** What GET /orders/{id} and GET /orders show of an order. */
interface OrderView {
  order_id: string;
  user_id: string;
  item: string;
  quantity: number;
  status: Order['status'];
  reason: string | null;
  created_at: string;
  updated_at: string;
  notified_at: string | null;
  /** The id every log line and message this order caused carries (the console shows it to search the logs). */
  correlation_id: string | null;
}

const toOrderView = (order: Order): OrderView => ({
  order_id: order.order_id,
  user_id: order.user_id,
  item: order.item,
  quantity: order.quantity,
  status: order.status,
  reason: order.reason,
  created_at: order.created_at,
  updated_at: order.updated_at,
  notified_at: order.notified_at,
  correlation_id: order.correlation_id,
});

/** The 202 body: the same for the first request and for any retry with the same Idempotency-Key. */
const acceptedBody = (order: Order) => ({
  order_id: order.order_id,
  status: 'accepted' as const,
  message: 'Order accepted for processing',
  timestamp: order.created_at,
});

const KEY = new RegExp(`^[\\x21-\\x7e]{1,${MAX_KEY_LENGTH}}$`);

/** The Idempotency-Key header, if any; ValidationError when it is not 1-200 visible ASCII characters. */
export function idempotencyKey(header: unknown): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header === 'string' && KEY.test(header)) return header;
  throw new ValidationError([{ field: 'Idempotency-Key', message: `must be 1 to ${MAX_KEY_LENGTH} visible ASCII characters` }]);
}

export const ordersRoutes: FastifyPluginAsync = async (app) => {
  const { broker, config, publisher } = app.services;

  app.post('/order', async (request, reply) => {
    // What the client sent is checked before the store is touched: a bad request is a 400 even when the
    // database is away.
    const key = idempotencyKey(request.headers['idempotency-key']);
    const order = parseInput(PlaceOrderRequest, request.body);
    const store = await app.services.store();
    const result = await placeOrder(store, order, {
      correlationId: request.correlationId,
      ...(key ? { idempotencyKey: key } : {}),
      backlogLimit: config.outboxBacklogLimit,
      backlog: () => app.services.backlog.read(config.outboxBacklogLimit),
      // Published right below, within the wait: the relays leave the row alone until a little after that
      // (not while the broker is known down: then the relay sends it as soon as the broker is back).
      ...(publisher.brokerDown ? {} : { publishLeaseMs: 2 * config.intakePublishWaitMs }),
    });
    tagActiveSpan({ [ORDER_ID_ATTRIBUTE]: result.order.order_id }); // the request's span: find the order's trace by its id
    if (result.created) {
      // The order is committed; whatever happens here, the answer is 202 and the relay sends what is left.
      const eventId = result.event.event_id;
      const [outcome] = await publishCommitted(store, publisher, [result.message], {
        timeoutMs: config.intakePublishWaitMs,
        logger: request.log,
      }).catch((error: unknown) => {
        request.log.warn({ err: error, eventId }, 'publish after commit failed; the outbox relay will send it');
        return ['failed' as const];
      });
      if (outcome !== 'published') app.services.backlog.add(1);
      if (outcome === 'deferred') {
        const { since, lastError } = broker.status;
        request.log.info(
          {
            orderId: result.order.order_id,
            eventId,
            publish: outcome,
            brokerDownSince: since.toISOString(),
            brokerError: lastError?.message,
          },
          'order accepted; publish deferred (broker down): the outbox relay will send it',
        );
      } else {
        request.log.info({ orderId: result.order.order_id, eventId, publish: outcome }, 'order accepted');
      }
    } else {
      reply.header('Idempotent-Replayed', 'true');
    }
    return reply.code(202).header('Location', `/orders/${result.order.order_id}`).send(acceptedBody(result.order));
  });

  app.get<{ Params: { order_id: string } }>('/orders/:order_id', async (request) => {
    const orderId = parseInput(OrderId, request.params.order_id, 'order_id');
    return toOrderView(await getOrder(await app.services.store(), orderId));
  });

  // Every user's orders: behind the admin token when ORDERS_LIST_ADMIN_ONLY is on (deployments), open locally.
  // In a scope of its own, so the token guards this route only; an order's own URL stays open (its id is an
  // unguessable UUID).
  await app.register(async (list) => {
    if (config.ordersListAdminOnly) await list.register(adminAuth, { token: config.adminToken });
    list.get('/orders', async (request) => {
      const query = parseInput(ListOrdersQuery, request.query ?? {}, 'query');
      const page = await listOrders(await app.services.store(), query);
      return { orders: page.orders.map(toOrderView), next_cursor: page.nextCursor };
    });
  });
};
