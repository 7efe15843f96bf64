/**
 * The Broker's state and the Publisher's fail-fast, against the real broker behind a TCP proxy that refuses
 * connections (test/support/tcp-proxy.ts): once the broker is known to be down, `publish()` rejects at once
 * with BrokerDownError and no connection attempt is made for it; a burst in a fresh process shares one
 * attempt; the one background loop reconnects when the proxy lets it, and publishing works again without a
 * new Broker. In a vhost of this test's own.
 *
 * Counting attempts is exact, not a matter of timing: a publish that fails fast settles in microtasks, so
 * no backoff timer of the loop can fire while a burst of them runs.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Broker, BrokerDownError, type OutgoingMessage, Publisher, PublisherBusyError } from '../../shared/messaging';
import { AMQP_URL, getMessage } from '../support/amqp';
import { waitFor } from '../support/runner';
import { TcpProxy } from '../support/tcp-proxy';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';

const EXCHANGE = 'broker-state';
const QUEUE = 'broker-state-seen';

describe('Broker state and fail-fast publishing (TCP proxy)', () => {
  let vhost: TestVhost;
  let amqp: VhostAmqp;
  let proxy: TcpProxy;
  let viaProxy: string;
  const opened: Array<{ close(): Promise<unknown> }> = [];

  beforeAll(async () => {
    vhost = await createVhost('broker-state');
    amqp = await openAmqp(vhost.url);
    await amqp.channel.assertExchange(EXCHANGE, 'topic', { durable: false });
    await amqp.channel.assertQueue(QUEUE, { durable: false });
    await amqp.channel.bindQueue(QUEUE, EXCHANGE, '#');
    const broker = new URL(AMQP_URL);
    proxy = new TcpProxy({ host: broker.hostname, port: Number(broker.port || 5672) });
    viaProxy = vhost.urlVia('127.0.0.1', await proxy.start());
  }, 120_000);

  afterEach(async () => {
    for (const resource of opened.splice(0).reverse()) await resource.close();
    proxy.up();
  });

  afterAll(async () => {
    await proxy?.close();
    await amqp?.close();
    await vhost?.remove();
  }, 120_000);

  /** A Broker and its Publisher through the proxy, closed after the test. */
  function through(options: Partial<ConstructorParameters<typeof Broker>[0]> = {}, maxPending?: number) {
    const broker = new Broker({ urls: [viaProxy], connectionName: 'broker-state-test', ...options });
    const publisher = new Publisher(broker, maxPending ? { maxPending } : {});
    opened.push(broker, publisher);
    return { broker, publisher };
  }

  const message = (id = randomUUID()): OutgoingMessage => ({
    exchange: EXCHANGE,
    routingKey: 'state.test',
    body: Buffer.from(JSON.stringify({ id })),
    options: { messageId: id, contentType: 'application/json' },
  });

  /** Starts `count` publishes at once and returns how each ended (the error, or undefined). */
  async function burst(publisher: Publisher, count: number): Promise<unknown[]> {
    const results = await Promise.allSettled(Array.from({ length: count }, () => publisher.publish(message())));
    return results.map((result) => (result.status === 'rejected' ? result.reason : undefined));
  }

  it('fails every publish at once with BrokerDownError once the broker is known down, making no attempt of its own', async () => {
    proxy.down();
    // The backoff is long, so the loop waits after its first round: any further attempt would be a publish's.
    const { broker, publisher } = through({ initialBackoffMs: 120_000, maxBackoffMs: 120_000 });
    expect(broker.status.state).toBe('idle');

    // A burst in a fresh process (nothing known yet): all of it waits for one attempt, then fails with it.
    const first = await burst(publisher, 200);
    expect(first.every((error) => error instanceof BrokerDownError)).toBe(true);
    expect(proxy.stats.refused, 'one connection attempt for the whole burst').toBe(1);
    const { state, since, lastError, failedAttempts, reconnecting } = broker.status;
    expect({ state, failedAttempts, reconnecting }).toEqual({ state: 'down', failedAttempts: 1, reconnecting: true });
    expect(since).toBeInstanceOf(Date);
    expect(lastError).toBeInstanceOf(Error);
    expect((first[0] as BrokerDownError).since).toEqual(since);

    // Known down: every publish fails at once, none opens a connection.
    const began = performance.now();
    for (let i = 0; i < 20; i++) {
      const errors = await burst(publisher, 50);
      expect(errors.every((error) => error instanceof BrokerDownError)).toBe(true);
    }
    const perPublishMs = (performance.now() - began) / 1_000;
    expect(proxy.stats.refused, 'no connection attempt per publish').toBe(1);
    expect(publisher.pendingPublishes).toBe(0);
    await expect(broker.connectUnlessDown()).rejects.toBeInstanceOf(BrokerDownError);
    console.log(`[broker-state] 1000 publishes while down: ${perPublishMs.toFixed(3)} ms each; connection attempts ${proxy.stats.refused}`);
  });

  it('reconnects in the background when the proxy comes back, and publishing works again without a restart', async () => {
    const { broker, publisher } = through({ initialBackoffMs: 50, maxBackoffMs: 200 });
    const downs: unknown[] = [];
    broker.on('down', (status) => downs.push(status));
    await publisher.publish(message());
    expect(broker.status.state).toBe('connected');

    // The connection is cut and new ones refused: the loop notices by itself, nobody has to publish.
    proxy.down();
    await waitFor(() => broker.status.state === 'down', 'the broker to be known down');
    expect(downs).toHaveLength(1);
    const refusedBefore = proxy.stats.refused;
    const errors = await burst(publisher, 100);
    expect(errors.every((error) => error instanceof BrokerDownError)).toBe(true);
    expect(proxy.stats.refused - refusedBefore, 'a burst while down makes no connection attempt').toBe(0);

    proxy.up();
    await waitFor(() => broker.status.state === 'connected', 'the background loop to reconnect', 10_000);
    expect(broker.status).toMatchObject({ lastError: undefined, failedAttempts: 0 });
    const id = randomUUID();
    await publisher.publish(message(id));
    let seen: string | undefined;
    while (seen !== id) seen = (await getMessage(amqp.channel, QUEUE)).properties.messageId as string;
    expect(downs, 'one outage, reported once').toHaveLength(1);
  });

  it('is not down while another URL of the list answers (failover is not an outage)', async () => {
    proxy.down();
    const broker = new Broker({ urls: [viaProxy, vhost.url], connectionName: 'broker-state-failover' });
    const publisher = new Publisher(broker);
    opened.push(broker, publisher);
    const downs: unknown[] = [];
    broker.on('down', (status) => downs.push(status));
    await publisher.publish(message());
    expect(broker.status.state).toBe('connected');
    expect(downs).toEqual([]);
  });

  it('bounds the publishes under way: one more than maxPending fails at once with PublisherBusyError', async () => {
    const { publisher } = through({}, 3);
    const errors = await burst(publisher, 5);
    expect(errors.filter((error) => error === undefined)).toHaveLength(3);
    expect(errors.filter((error) => error instanceof PublisherBusyError)).toHaveLength(2);
    expect(publisher.pendingPublishes).toBe(0);
    expect((await burst(publisher, 3)).every((error) => error === undefined)).toBe(true);
  });
});
