/**
 * Publishing with publisher confirms and `mandatory`: `publish()` resolves only once the broker has taken
 * responsibility for the message (routed to at least one queue and confirmed). An unroutable message, a nack,
 * a lost channel or a confirm that never comes is an error the caller sees.
 */
import type { ConfirmChannel, Message, Options } from 'amqplib';
import type { Broker } from './connection';

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
/** No confirm arrived within the timeout; the message may or may not have been taken. */
export class PublishTimeoutError extends PublishError {
  override readonly name = 'PublishTimeoutError';
}

export interface PublisherOptions {
  /** How long to wait for the broker's confirm (default 10 s). */
  confirmTimeoutMs?: number;
}

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
  private readonly returned = new Map<string, number>();
  /** Failers of the publishes awaiting a confirm: one channel 'close' listener fails them all. */
  private readonly awaitingConfirm = new Set<(error: Error) => void>();
  private readonly confirmTimeoutMs: number;

  constructor(
    private readonly broker: Broker,
    options: PublisherOptions = {},
  ) {
    this.confirmTimeoutMs = options.confirmTimeoutMs ?? 10_000;
  }

  /** Publishes one message and waits for its confirm. */
  async publish(message: OutgoingMessage): Promise<void> {
    const channel = await this.getChannel();
    const { exchange, routingKey, body, options } = message;
    const key = returnKey(exchange, routingKey, options.messageId, options.headers);
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.awaitingConfirm.delete(fail);
        if (error) reject(error);
        else resolve();
      };
      const fail = (error: Error) => settle(error);
      const timer = setTimeout(
        () => settle(new PublishTimeoutError(`No confirm from the broker within ${this.confirmTimeoutMs} ms`)),
        this.confirmTimeoutMs,
      );
      this.awaitingConfirm.add(fail);
      try {
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
    });
  }

  /** Publishes several messages in one round of confirms; rejects if any of them fails. */
  async publishAll(messages: readonly OutgoingMessage[]): Promise<void> {
    const results = await Promise.allSettled(messages.map((message) => this.publish(message)));
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async close(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    if (channel) await (await channel.catch(() => undefined))?.close().catch(() => undefined);
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
      const channel = await this.broker.createConfirmChannel();
      channel.on('error', () => undefined);
      channel.on('return', (message: Message) => {
        const key = returnKey(message.fields.exchange, message.fields.routingKey, message.properties.messageId, message.properties.headers);
        this.returned.set(key, (this.returned.get(key) ?? 0) + 1);
      });
      channel.once('close', () => {
        this.channel = undefined;
        this.returned.clear();
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
