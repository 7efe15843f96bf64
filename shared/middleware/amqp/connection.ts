/**
 * One broker connection per process, with failover across several broker URLs and reconnection with
 * exponential backoff. Everything that needs AMQP (publisher, topology, runner) asks the Broker for channels
 * and registers `onConnect` hooks that run after every (re)connection, before anyone is told it is up.
 *
 * The Broker also knows its state (`status`): connected, connecting (nothing known yet), or down since the
 * first failed round of attempts, with the last error. One reconnect loop per Broker does every attempt,
 * however many callers want a connection, so a burst of work during an outage cannot open more.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ChannelModel } from 'amqplib';
import { redactUrl } from '../lib/redact-url.js';

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
  /**
   * Each wait is shortened by up to this fraction at random (default 0.5, "equal jitter"), so processes that
   * lost the broker at the same moment (every Lambda instance, the runner) do not all come back in lockstep.
   */
  backoffJitter?: number;
  /** Attempts before `connect()` gives up; the default (Infinity) keeps trying until `close()`. */
  maxAttempts?: number;
}

const defaults = {
  connectionName: 'rabbit-functions',
  heartbeatSeconds: 10,
  initialBackoffMs: 200,
  maxBackoffMs: 10_000,
  backoffJitter: 0.5,
  maxAttempts: Number.POSITIVE_INFINITY,
};

/** The broker could not be reached at any of its URLs (or the Broker was closed while connecting). */
export class BrokerUnavailableError extends Error {
  override readonly name: string = 'BrokerUnavailableError';
}

/**
 * The broker is known to be down: the last round of attempts over every URL failed and the reconnect loop is
 * waiting out its backoff. Thrown at once by `connectUnlessDown()`, so callers that can defer their work (the
 * outbox) do not wait for a broker that is not there.
 */
export class BrokerDownError extends BrokerUnavailableError {
  override readonly name = 'BrokerDownError';
  constructor(
    readonly since: Date,
    readonly lastError: Error | undefined,
  ) {
    super(
      `RabbitMQ down since ${since.toISOString()}${lastError ? `: ${lastError.message}` : ''}`,
      lastError ? { cause: lastError } : undefined,
    );
  }
}

/**
 * `idle`: nothing tried yet. `connecting`: an attempt is under way and nothing is known (a fresh process, or
 * just after the connection was lost). `connected`. `down`: a whole round of attempts failed; the loop keeps
 * trying with backoff (unless it ran out of `maxAttempts`). `closed`: `close()` was called.
 */
export type BrokerState = 'idle' | 'connecting' | 'connected' | 'down' | 'closed';

export interface BrokerStatus {
  state: BrokerState;
  /** When this state began; for `down`, the first failed round of this outage. */
  since: Date;
  /** Why the last attempt failed or the connection was lost; undefined once connected. */
  lastError: Error | undefined;
  /** Failed connection attempts since the last successful one. */
  failedAttempts: number;
  /** Whether the reconnect loop is running (there is never more than one). */
  reconnecting: boolean;
}

type Hook = (connection: ChannelModel) => Promise<void>;

/** A promise with its settlers, shared by everyone waiting for the same thing. */
interface Waiting<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function waiting<T>(): Waiting<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  promise.catch(() => undefined); // nobody may be waiting when it fails
  return { promise, resolve, reject };
}

/**
 * Events: `connected` (connection), `disconnected` (error or undefined), `connectFailed` ({ url, attempt,
 * error }), `down` (BrokerStatus, once per outage). `error` is never emitted so an unhandled broker failure
 * cannot crash the process; failures are reported through `disconnected`.
 *
 * A lost connection starts the reconnect loop at once, in the background: the next caller finds the
 * broker connected again, or known to be down.
 */
export class Broker extends EventEmitter {
  readonly options: Required<BrokerOptions>;
  private current: ChannelModel | undefined;
  private connecting: Promise<ChannelModel> | undefined;
  private readonly hooks: Hook[] = [];
  private closed = false;
  private urlIndex = 0;
  /** Wakes the loop from its backoff when the Broker is closed, so no timer outlives it. */
  private readonly closing = new AbortController();
  private state: BrokerState = 'idle';
  private since = new Date();
  private lastError: Error | undefined;
  private failedAttempts = 0;
  /** What `connectUnlessDown()` callers wait on while `connecting`: one promise for all of them, not one each. */
  private attempt: Waiting<ChannelModel> | undefined;

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

  /** What this Broker knows about the broker right now (a copy). */
  get status(): BrokerStatus {
    return {
      state: this.state,
      since: this.since,
      lastError: this.lastError,
      failedAttempts: this.failedAttempts,
      reconnecting: this.connecting !== undefined,
    };
  }

  /** The live connection, connecting (with failover and backoff) if there is none; waits however long that takes. */
  connect(): Promise<ChannelModel> {
    if (this.closed) return Promise.reject(new BrokerUnavailableError('Broker connection was closed'));
    if (this.current) return Promise.resolve(this.current);
    return this.reconnect();
  }

  /**
   * The live connection, without waiting for a broker known to be down: rejects at once with BrokerDownError
   * then (the reconnect loop keeps going in the background; this starts it if it had given up). While
   * nothing is known yet (first use, or just after a lost connection) it waits for the round of attempts
   * under way, which the connect timeout bounds.
   */
  connectUnlessDown(): Promise<ChannelModel> {
    if (this.closed) return Promise.reject(new BrokerUnavailableError('Broker connection was closed'));
    if (this.current) return Promise.resolve(this.current);
    void this.reconnect();
    if (this.state === 'down') return Promise.reject(new BrokerDownError(this.since, this.lastError));
    return this.attempt!.promise;
  }

  async createChannel(): Promise<Channel> {
    return (await this.connect()).createChannel();
  }

  /** Closes the connection and stops reconnecting. */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    this.enter('closed');
    const connection = this.current;
    this.current = undefined;
    if (connection) await connection.close().catch(() => undefined);
  }

  /** The reconnect loop's promise, starting the loop if it is not running: there is only ever one. */
  private reconnect(): Promise<ChannelModel> {
    if (!this.connecting) {
      if (this.state === 'idle') this.enter('connecting');
      const loop = this.connectLoop().finally(() => {
        this.connecting = undefined;
      });
      loop.catch(() => undefined); // the loop may run with nobody waiting on it: its outcome is in `status`
      this.connecting = loop;
    }
    return this.connecting;
  }

  /** Moves to `state`, settling whoever waits for the round of attempts that just ended. */
  private enter(state: BrokerState, error?: Error): void {
    if (error) this.lastError = error;
    if (state === this.state) return;
    const waiters = this.attempt;
    this.state = state;
    this.since = new Date();
    if (state === 'connecting') {
      this.attempt = waiting();
      return;
    }
    this.attempt = undefined;
    if (state === 'connected') {
      this.lastError = undefined;
      this.failedAttempts = 0;
      waiters?.resolve(this.current!);
    } else if (state === 'down') {
      waiters?.reject(new BrokerDownError(this.since, this.lastError));
      this.emit('down', this.status);
    } else {
      waiters?.reject(new BrokerUnavailableError('Broker connection was closed'));
    }
  }

  private async connectLoop(): Promise<ChannelModel> {
    const { urls, maxAttempts, initialBackoffMs, maxBackoffMs, backoffJitter } = this.options;
    let lastError: unknown;
    for (let attempt = 1; attempt <= maxAttempts && !this.closed; attempt++) {
      const url = urls[this.urlIndex % urls.length]!;
      try {
        const connection = await this.open(url);
        return connection;
      } catch (error) {
        lastError = error;
        this.failedAttempts++;
        // A broker that answers but disagrees with us (e.g. a queue declared with other arguments) will not
        // change its mind on retry: report it at once.
        if ((error as { fatal?: boolean }).fatal) {
          if (!this.closed) this.enter('down', error as Error);
          throw error;
        }
        this.urlIndex++;
        this.emit('connectFailed', { url: redactUrl(url), attempt, error });
        // Down once a whole round over every URL failed (one dead node of a cluster is failover, not an
        // outage), or when the loop is about to give up.
        const roundFailed = attempt % urls.length === 0 || attempt >= maxAttempts;
        if (roundFailed && !this.closed) this.enter('down', error as Error);
        else this.lastError = error as Error;
        // A full round over every URL fails before the backoff grows.
        const round = Math.floor((attempt - 1) / urls.length);
        if (attempt % urls.length === 0 && attempt < maxAttempts) {
          const backoffMs = Math.min(maxBackoffMs, initialBackoffMs * 2 ** round) * (1 - backoffJitter * Math.random());
          await sleep(backoffMs, undefined, { signal: this.closing.signal }).catch(() => undefined);
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
    // amqplib (and the net/tls it brings) is loaded with the first connection, not at import: cold starts that
    // do not reach the broker yet (or at all) do not pay for it.
    const { default: amqp } = await import('amqplib');
    const connection = await amqp.connect(url, {
      clientProperties: { connection_name: this.options.connectionName },
      heartbeat: this.options.heartbeatSeconds,
      timeout: 5_000,
      // Frames go out as they are written: with Nagle's algorithm on (amqplib's default) a publish or ack
      // written while an earlier segment is unacknowledged waits for the broker's delayed ACK (~40 ms).
      noDelay: true,
    } as object);
    // Without an 'error' listener a broker-side close would crash the process.
    connection.on('error', () => undefined);
    connection.once('close', (error?: Error) => {
      if (this.current !== connection) return;
      this.current = undefined;
      if (this.closed) return void this.emit('disconnected', error);
      // Nothing is known about the broker yet (it may be a blip): the loop tries at once, and callers wait
      // for that round rather than fail.
      this.enter('connecting', error ?? new Error('connection closed'));
      void this.reconnect();
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
    this.enter('connected');
    this.emit('connected', connection);
    return connection;
  }
}
