/**
 * Publishing with publisher confirms and `mandatory`: `publish()` resolves only once the broker has taken
 * responsibility for the message (routed to at least one queue and confirmed). An unroutable message, a nack,
 * a lost channel or a confirm that never comes is an error the caller sees.
 *
 * While the Broker knows the broker is down, `publish()` fails at once with its BrokerDownError: nothing is
 * sent, no connection attempt is made for it (the Broker's one reconnect loop does that), and nothing waits.
 * Every publish ends within `confirmTimeoutMs`, and at most `maxPending` are under way at once, so a slow
 * or absent broker cannot make them pile up in memory.
 */
import type { Channel, ConfirmChannel, Message, Options } from 'amqplib';
import type { Broker } from './connection.js';

export class PublishError extends Error {
  override readonly name: string = 'PublishError';
}
/** No queue is bound for this exchange and routing key: the broker returned the message. */
export class UnroutableError extends PublishError {
  override readonly name = 'UnroutableError';
}
/** The broker refused the message (nack), e.g. a queue at its limit with reject-publish. */
export class PublishNackedError extends PublishError {
  override readonly name = 'PublishNackedError';
}
/**
 * The exchange does not exist. Found out on a channel of its own before anything is sent there: publishing to a
 * missing exchange would make the broker close the publishing channel, and every other publish still waiting
 * for its confirm on it would fail and be sent again (a duplicate of each that the broker had in fact taken).
 */
export class ExchangeNotFoundError extends PublishError {
  override readonly name = 'ExchangeNotFoundError';
}
/** No confirm arrived within the timeout; the message may or may not have been taken. */
class PublishTimeoutError extends PublishError {
  override readonly name = 'PublishTimeoutError';
}
/** `maxPending` publishes are already waiting for the broker; this one was not sent. */
export class PublisherBusyError extends PublishError {
  override readonly name = 'PublisherBusyError';
}

export interface PublisherOptions {
  /** How long a publish may take in all, waiting for a channel and then for the broker's confirm (default 10 s). */
  confirmTimeoutMs?: number;
  /** Publishes under way at once; one more fails at once with PublisherBusyError (default 10,000, a full batch). */
  maxPending?: number;
}

const defaults = { confirmTimeoutMs: 10_000, maxPending: 10_000 };

export interface OutgoingMessage {
  exchange: string;
  routingKey: string;
  body: Buffer;
  options: Options.Publish;
}

/**
 * A returned message reaches us before the ack of the same publish, on the same channel; this key ties the
 * two together. Messages with equal keys are routed alike, so it does not matter which one a return names.
 */
const returnKey = (exchange: string, routingKey: string, messageId: unknown, headers: unknown): string => {
  const entries = Object.entries((headers ?? {}) as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b));
  return JSON.stringify([exchange, routingKey, messageId ?? null, entries]);
};

export class Publisher {
  private channel: Promise<ConfirmChannel> | undefined;
  /** A plain channel for checking exchanges (a check of a missing one closes it, not the publishing channel). */
  private checkChannel: Promise<Channel> | undefined;
  /** Exchanges found to exist on this connection, or being checked; forgotten when the publishing channel closes. */
  private readonly exchanges = new Map<string, Promise<void>>();
  private readonly returned = new Map<string, number>();
  /** Failers of the publishes awaiting a confirm: one channel 'close' listener fails them all. */
  private readonly awaitingConfirm = new Set<(error: Error) => void>();
  private readonly confirmTimeoutMs: number;
  private readonly maxPending: number;
  /** Publishes under way (waiting for a channel or a confirm). */
  private pending = 0;

  constructor(
    private readonly broker: Broker,
    options: PublisherOptions = {},
  ) {
    ({ confirmTimeoutMs: this.confirmTimeoutMs, maxPending: this.maxPending } = { ...defaults, ...options });
  }

  /** True while the broker is known to be down: a publish would fail at once (BrokerDownError). */
  get brokerDown(): boolean {
    return this.broker.status.state === 'down';
  }

  /** Publishes under way right now (at most `maxPending`). */
  get pendingPublishes(): number {
    return this.pending;
  }

  /**
   * Publishes one message and waits for its confirm. Rejects at once with BrokerDownError while the broker
   * is known to be down, and with PublisherBusyError when `maxPending` publishes are under way.
   */
  async publish(message: OutgoingMessage): Promise<void> {
    if (this.pending >= this.maxPending) {
      throw new PublisherBusyError(`${this.pending} publishes already wait for the broker (maxPending ${this.maxPending})`);
    }
    this.pending++;
    try {
      await this.send(message);
    } finally {
      this.pending--;
    }
  }

  private send(message: OutgoingMessage): Promise<void> {
    const { exchange, routingKey, body, options } = message;
    const key = returnKey(exchange, routingKey, options.messageId, options.headers);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let sent = false;
      const settle = (error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.awaitingConfirm.delete(fail);
        if (error) reject(error);
        else resolve();
      };
      const fail = (error: Error) => settle(error);
      // One deadline for the whole publish, the wait for a channel included: nothing waits unbounded.
      const timer = setTimeout(
        () =>
          settle(
            new PublishTimeoutError(
              sent
                ? `No confirm from the broker within ${this.confirmTimeoutMs} ms`
                : `No channel to the broker within ${this.confirmTimeoutMs} ms; not sent`,
            ),
          ),
        this.confirmTimeoutMs,
      );
      this.getChannel().then(async (channel) => {
        if (settled) return; // timed out while waiting for the channel: too late to send now
        try {
          await this.knownExchange(exchange);
        } catch (error) {
          return settle(error as Error);
        }
        if (settled) return;
        this.awaitingConfirm.add(fail);
        try {
          sent = true;
          channel.publish(exchange, routingKey, body, { ...options, mandatory: true }, (error) => {
            if (error) return settle(new PublishNackedError(`Broker refused the message to ${exchange}/${routingKey}`));
            if (this.takeReturned(key)) {
              return settle(new UnroutableError(`No queue bound to exchange '${exchange}' for routing key '${routingKey}'`));
            }
            settle();
          });
        } catch (error) {
          settle(new PublishError(`Publish to ${exchange} failed: ${(error as Error).message}`));
        }
      }, fail);
    });
  }

  async close(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    if (channel) await (await channel.catch(() => undefined))?.close().catch(() => undefined);
    const checkChannel = this.checkChannel;
    this.checkChannel = undefined;
    if (checkChannel) await (await checkChannel.catch(() => undefined))?.close().catch(() => undefined);
  }

  /** Resolves once `exchange` is known to exist on this connection (checked once, on the check channel). */
  private knownExchange(exchange: string): Promise<void> {
    if (exchange === '') return Promise.resolve(); // the default exchange always exists
    let known = this.exchanges.get(exchange);
    if (!known) {
      known = this.checkExchange(exchange);
      this.exchanges.set(exchange, known);
      known.catch(() => this.exchanges.delete(exchange)); // not there (yet): asked again next time
    }
    return known;
  }

  private async checkExchange(exchange: string): Promise<void> {
    this.checkChannel ??= this.broker.connectUnlessDown().then(async (connection) => {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      channel.once('close', () => {
        this.checkChannel = undefined;
      });
      return channel;
    });
    const pending = this.checkChannel;
    const channel = await pending.catch((error: unknown) => {
      if (this.checkChannel === pending) this.checkChannel = undefined;
      throw error;
    });
    try {
      await channel.checkExchange(exchange);
    } catch (error) {
      const notFound = (error as { code?: unknown }).code === 404;
      if (!notFound) throw new PublishError(`Could not check exchange '${exchange}': ${(error as Error).message}`, { cause: error });
      throw new ExchangeNotFoundError(`Exchange '${exchange}' does not exist; not sent`, { cause: error });
    }
  }

  private takeReturned(key: string): boolean {
    const count = this.returned.get(key) ?? 0;
    if (count === 0) return false;
    if (count === 1) this.returned.delete(key);
    else this.returned.set(key, count - 1);
    return true;
  }

  private getChannel(): Promise<ConfirmChannel> {
    this.channel ??= this.openChannel();
    return this.channel;
  }

  private async openChannel(): Promise<ConfirmChannel> {
    try {
      // Not broker.connect(): that would wait out an outage; the caller's outbox row waits for the relay instead.
      const channel = await (await this.broker.connectUnlessDown()).createConfirmChannel();
      channel.on('error', () => undefined);
      channel.on('return', (message: Message) => {
        const key = returnKey(message.fields.exchange, message.fields.routingKey, message.properties.messageId, message.properties.headers);
        this.returned.set(key, (this.returned.get(key) ?? 0) + 1);
      });
      channel.once('close', () => {
        this.channel = undefined;
        this.returned.clear();
        this.exchanges.clear();
        const error = new PublishError('Channel closed before the broker confirmed the message');
        for (const fail of [...this.awaitingConfirm]) fail(error);
      });
      return channel;
    } catch (error) {
      this.channel = undefined;
      throw error;
    }
  }
}
