/**
 * One broker connection per process, with failover across several broker URLs and reconnection with
 * exponential backoff. Everything that needs AMQP (publisher, topology, runner) asks the Broker for channels
 * and registers `onConnect` hooks that run after every (re)connection, before anyone is told it is up.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { redactUrl } from '../config';

export interface BrokerOptions {
  /** Broker URLs, tried in turn (a cluster's nodes). */
  urls: readonly string[];
  /** Name shown in the management UI's connection list. */
  connectionName?: string;
  /** AMQP heartbeat in seconds (default 10), so a dead peer is noticed. */
  heartbeatSeconds?: number;
  /** First wait before reconnecting, doubled on each failure up to `maxBackoffMs` (defaults 200 ms, 10 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Attempts before `connect()` gives up; the default (Infinity) keeps trying until `close()`. */
  maxAttempts?: number;
}

const defaults = {
  connectionName: 'rabbit-functions',
  heartbeatSeconds: 10,
  initialBackoffMs: 200,
  maxBackoffMs: 10_000,
  maxAttempts: Number.POSITIVE_INFINITY,
};

/** The broker could not be reached at any of its URLs (or the Broker was closed while connecting). */
export class BrokerUnavailableError extends Error {
  override readonly name = 'BrokerUnavailableError';
}

type Hook = (connection: ChannelModel) => Promise<void>;

/**
 * Events: `connected` (connection), `disconnected` (error or undefined), `error` is never emitted so an
 * unhandled broker failure cannot crash the process; failures are reported through `disconnected`.
 */
export class Broker extends EventEmitter {
  readonly options: Required<BrokerOptions>;
  private current: ChannelModel | undefined;
  private connecting: Promise<ChannelModel> | undefined;
  private readonly hooks: Hook[] = [];
  private closed = false;
  private urlIndex = 0;

  constructor(options: BrokerOptions) {
    super();
    if (options.urls.length === 0) throw new BrokerUnavailableError('No broker URL configured (AMQP_URL / AMQP_URLS)');
    this.options = { ...defaults, ...options };
  }

  /** Runs `hook` after every connection, and now if already connected. */
  async onConnect(hook: Hook): Promise<void> {
    this.hooks.push(hook);
    if (this.current) await hook(this.current);
  }

  get connected(): boolean {
    return this.current !== undefined;
  }

  /** The live connection, connecting (with failover and backoff) if there is none. */
  connect(): Promise<ChannelModel> {
    if (this.closed) return Promise.reject(new BrokerUnavailableError('Broker connection was closed'));
    if (this.current) return Promise.resolve(this.current);
    this.connecting ??= this.connectLoop().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  async createChannel(): Promise<Channel> {
    return (await this.connect()).createChannel();
  }

  async createConfirmChannel(): Promise<ConfirmChannel> {
    return (await this.connect()).createConfirmChannel();
  }

  /** Closes the connection and stops reconnecting. */
  async close(): Promise<void> {
    this.closed = true;
    const connection = this.current;
    this.current = undefined;
    if (connection) await connection.close().catch(() => undefined);
  }

  private async connectLoop(): Promise<ChannelModel> {
    const { urls, maxAttempts, initialBackoffMs, maxBackoffMs } = this.options;
    let lastError: unknown;
    for (let attempt = 1; attempt <= maxAttempts && !this.closed; attempt++) {
      const url = urls[this.urlIndex % urls.length]!;
      try {
        const connection = await this.open(url);
        return connection;
      } catch (error) {
        // A broker that answers but disagrees with us (e.g. a queue declared with other arguments) will not
        // change its mind on retry: report it at once.
        if ((error as { fatal?: boolean }).fatal) throw error;
        lastError = error;
        this.urlIndex++;
        this.emit('connectFailed', { url: redactUrl(url), attempt, error });
        // A full round over every URL fails before the backoff grows.
        const round = Math.floor((attempt - 1) / urls.length);
        if (attempt % urls.length === 0 && attempt < maxAttempts) {
          await sleep(Math.min(maxBackoffMs, initialBackoffMs * 2 ** round));
        }
      }
    }
    const where = urls.map(redactUrl).join(', ');
    throw new BrokerUnavailableError(
      this.closed
        ? 'Broker connection was closed'
        : `RabbitMQ unreachable at ${where}: ${lastError instanceof Error ? lastError.message : String(lastError)}`,
    );
  }

  private async open(url: string): Promise<ChannelModel> {
    const connection = await amqp.connect(url, {
      clientProperties: { connection_name: this.options.connectionName },
      heartbeat: this.options.heartbeatSeconds,
      timeout: 5_000,
    } as object);
    // Without an 'error' listener a broker-side close would crash the process.
    connection.on('error', () => undefined);
    connection.once('close', (error?: Error) => {
      if (this.current !== connection) return;
      this.current = undefined;
      this.emit('disconnected', error);
    });
    try {
      for (const hook of this.hooks) await hook(connection);
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
    if (this.closed) {
      await connection.close().catch(() => undefined);
      throw new BrokerUnavailableError('Broker connection was closed');
    }
    this.current = connection;
    this.emit('connected', connection);
    return connection;
  }
}
