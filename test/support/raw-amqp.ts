/**
 * A minimal AMQP 0-9-1 publisher written straight onto `node:net`, for tests only.
 *
 * What it is for: sending messages that amqplib refuses to produce, so tests can prove the trigger survives
 * anything another client (pika, the Java client, Go...) can publish. Every basic property is optional and
 * carried as raw wire values: shortstrs may be any bytes (invalid UTF-8 included), `timestamp` is a bigint up
 * to 2^64-1, `deliveryMode`/`priority` any octet, and `headers` is a typed table in which every value names
 * its AMQP field type. A table (or one field value) can also be given as pre-encoded bytes, to send tag bytes
 * or keys no encoder would produce, and tables are encoded without recursion, so nesting thousands deep works.
 *
 * What it deliberately does not do: consume, declare anything, reconnect, heartbeat (it asks for none), TLS,
 * SASL other than PLAIN, flow control / connection.blocked, or validate what it sends — the broker is the
 * judge (a content header larger than frame-max is sent as is, for instance). One channel (1), in confirm
 * mode; after the broker closes it, every later publish rejects. Use the product's own clients for anything
 * else.
 */
import net from 'node:net';

/** A shortstr on the wire: a string is sent as UTF-8, a Buffer byte for byte (at most 255 bytes). */
export type ShortStr = string | Buffer;

/** One field value, naming its AMQP type tag explicitly (RabbitMQ's tags, as in its 0-9-1 errata). */
export type FieldValue =
  | { readonly t: 't'; readonly v: boolean }
  | { readonly t: 'b' | 'B' | 's' | 'u' | 'I' | 'i'; readonly v: number } // int8 uint8 int16 uint16 int32 uint32
  | { readonly t: 'l'; readonly v: bigint } // int64
  | { readonly t: 'T'; readonly v: bigint } // timestamp, uint64
  | { readonly t: 'f' | 'd'; readonly v: number } // float32, float64 (NaN and Infinity allowed)
  | { readonly t: 'D'; readonly places: number; readonly digits: number } // decimal: octet scale, uint32 value
  | { readonly t: 'S'; readonly v: string | Buffer } // longstr; a Buffer is sent byte for byte
  | { readonly t: 'x'; readonly v: Buffer } // byte array
  | { readonly t: 'V' } // void
  | { readonly t: 'A'; readonly v: readonly FieldValue[] }
  | { readonly t: 'F'; readonly v: FieldTable }
  | { readonly t: 'raw'; readonly v: Buffer }; // tag byte and value bytes, written verbatim

/** Entries in wire order; unlike a record, they allow duplicate, empty and non-UTF-8 keys. */
export type FieldEntries = ReadonlyArray<readonly [key: ShortStr, value: FieldValue]>;

/** A field table: a record, entries, or the table's pre-encoded contents (without the 4-byte length). */
export type FieldTable = Buffer | FieldEntries | { readonly [key: string]: FieldValue };

/** The 14 basic properties, all optional, as wire values. */
export interface RawProperties {
  contentType?: ShortStr;
  contentEncoding?: ShortStr;
  headers?: FieldTable;
  deliveryMode?: number;
  priority?: number;
  correlationId?: ShortStr;
  replyTo?: ShortStr;
  expiration?: ShortStr;
  messageId?: ShortStr;
  timestamp?: bigint;
  type?: ShortStr;
  userId?: ShortStr;
  appId?: ShortStr;
  clusterId?: ShortStr;
}

/** A basic.return the broker sent (mandatory publish with no route); its content is not kept. */
interface ReturnedMessage {
  replyCode: number;
  replyText: string;
  exchange: string;
  routingKey: string;
}

export interface RawPublisher {
  /** Publishes one message and resolves with the broker's confirm for it. */
  publish(
    exchange: ShortStr,
    routingKey: ShortStr,
    body: Buffer,
    properties?: RawProperties,
    options?: { mandatory?: boolean },
  ): Promise<'ack' | 'nack'>;
  /** basic.return frames received so far, oldest first. */
  readonly returns: readonly ReturnedMessage[];
  /** The frame-max the broker proposed and this publisher echoed. */
  readonly frameMax: number;
  /** Closes channel and connection with the close handshake, or destroys the socket if that fails. */
  close(): Promise<void>;
}

/** The broker closed the connection or the channel; `code` and `replyText` are its reply. */
export class BrokerCloseError extends Error {
  constructor(
    readonly scope: 'connection' | 'channel',
    readonly code: number,
    readonly replyText: string,
    readonly classId: number,
    readonly methodId: number,
  ) {
    super(`${scope} closed by the broker: ${code} ${replyText}`);
    this.name = 'BrokerCloseError';
  }
}

// Frame types, the frame-end octet, and the method ids used here (class, method).
const METHOD = 1;
const HEADER = 2;
const BODY = 3;
const FRAME_END = 0xce;
const M = {
  start: [10, 10],
  startOk: [10, 11],
  tune: [10, 30],
  tuneOk: [10, 31],
  open: [10, 40],
  openOk: [10, 41],
  close: [10, 50],
  closeOk: [10, 51],
  channelOpen: [20, 10],
  channelOpenOk: [20, 11],
  channelClose: [20, 40],
  channelCloseOk: [20, 41],
  publish: [60, 40],
  return: [60, 50],
  ack: [60, 80],
  nack: [60, 120],
  select: [85, 10],
  selectOk: [85, 11],
} as const;
type MethodId = readonly [classId: number, methodId: number];

/** A growable buffer with big-endian writers, and a patch for length prefixes written before their content. */
class Writer {
  private buf = Buffer.alloc(256);
  length = 0;

  private put(size: number, write: (buf: Buffer, at: number) => unknown): this {
    if (this.length + size > this.buf.length) {
      const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.length + size));
      this.buf.copy(bigger, 0, 0, this.length);
      this.buf = bigger;
    }
    write(this.buf, this.length);
    this.length += size;
    return this;
  }

  u8 = (n: number): this => this.put(1, (b, at) => b.writeUInt8(n, at));
  u16 = (n: number): this => this.put(2, (b, at) => b.writeUInt16BE(n, at));
  u32 = (n: number): this => this.put(4, (b, at) => b.writeUInt32BE(n, at));
  u64 = (n: bigint): this => this.put(8, (b, at) => b.writeBigUInt64BE(n, at));
  bytes = (data: Buffer): this => this.put(data.length, (b, at) => data.copy(b, at));

  shortstr(s: ShortStr): this {
    const data = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    if (data.length > 255) throw new RangeError(`shortstr of ${data.length} bytes; at most 255 fit`);
    return this.u8(data.length).bytes(data);
  }

  longstr(s: string | Buffer): this {
    const data = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    return this.u32(data.length).bytes(data);
  }

  patchU32(at: number, n: number): void {
    this.buf.writeUInt32BE(n, at);
  }

  done(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.length));
  }
}

type Item = readonly [key: ShortStr | null, value: FieldValue];

function tableItems(table: Exclude<FieldTable, Buffer>): readonly Item[] {
  return Array.isArray(table) ? (table as FieldEntries) : Object.entries(table as { readonly [key: string]: FieldValue });
}

/**
 * Writes a field table (4-byte length and contents). Nested arrays and tables go on an explicit stack rather
 * than the call stack, so depth is bounded by memory only.
 */
function writeTable(w: Writer, table: FieldTable): void {
  if (Buffer.isBuffer(table)) {
    w.longstr(table);
    return;
  }
  const stack: Array<{ lengthAt: number; items: readonly Item[]; next: number }> = [];
  const open = (items: readonly Item[]): void => {
    stack.push({ lengthAt: w.length, items, next: 0 });
    w.u32(0); // patched when the container ends
  };
  open(tableItems(table));
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const item = top.items[top.next++];
    if (!item) {
      w.patchU32(top.lengthAt, w.length - top.lengthAt - 4);
      stack.pop();
      continue;
    }
    const [key, value] = item;
    if (key !== null) w.shortstr(key);
    if (value.t === 'raw') {
      w.bytes(value.v);
      continue;
    }
    w.u8(value.t.charCodeAt(0));
    switch (value.t) {
      case 'A':
        open(value.v.map((v): Item => [null, v]));
        break;
      case 'F':
        if (Buffer.isBuffer(value.v)) w.longstr(value.v);
        else open(tableItems(value.v));
        break;
      case 't':
        w.u8(value.v ? 1 : 0);
        break;
      case 'b':
        w.u8(value.v & 0xff);
        break;
      case 'B':
        w.u8(value.v);
        break;
      case 's':
        w.u16(value.v & 0xffff);
        break;
      case 'u':
        w.u16(value.v);
        break;
      case 'I':
        w.u32(value.v >>> 0);
        break;
      case 'i':
        w.u32(value.v);
        break;
      case 'l':
        w.u64(BigInt.asUintN(64, value.v));
        break;
      case 'T':
        w.u64(value.v);
        break;
      case 'f': {
        const b = Buffer.alloc(4);
        b.writeFloatBE(value.v);
        w.bytes(b);
        break;
      }
      case 'd': {
        const b = Buffer.alloc(8);
        b.writeDoubleBE(value.v);
        w.bytes(b);
        break;
      }
      case 'D':
        w.u8(value.places).u32(value.digits);
        break;
      case 'S':
      case 'x':
        w.longstr(value.v);
        break;
      case 'V':
        break;
    }
  }
}

/** Encodes a field table to bytes: the 4-byte length and the contents. */
export function encodeTable(table: FieldTable): Buffer {
  const w = new Writer();
  writeTable(w, table);
  return w.done();
}

/** `leaf` wrapped in `depth` arrays (`'A'`) or single-key tables (`'F'`, key "n"), built without recursion. */
export function nested(depth: number, kind: 'A' | 'F', leaf: FieldValue): FieldValue {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = kind === 'A' ? { t: 'A', v: [value] } : { t: 'F', v: { n: value } };
  return value;
}

/** The content header payload: class, weight, body size, property flags and the present properties in order. */
function encodeContentHeader(bodySize: number, p: RawProperties): Buffer {
  const w = new Writer().u16(60).u16(0).u64(BigInt(bodySize));
  const flagsAt = w.length;
  w.u16(0);
  let flags = 0;
  // One entry per property, in wire order; bit 15 is the first property, bit 0 (continuation) stays clear.
  const fields: Array<[present: boolean, write: () => void]> = [
    [p.contentType !== undefined, () => w.shortstr(p.contentType!)],
    [p.contentEncoding !== undefined, () => w.shortstr(p.contentEncoding!)],
    [p.headers !== undefined, () => writeTable(w, p.headers!)],
    [p.deliveryMode !== undefined, () => w.u8(p.deliveryMode!)],
    [p.priority !== undefined, () => w.u8(p.priority!)],
    [p.correlationId !== undefined, () => w.shortstr(p.correlationId!)],
    [p.replyTo !== undefined, () => w.shortstr(p.replyTo!)],
    [p.expiration !== undefined, () => w.shortstr(p.expiration!)],
    [p.messageId !== undefined, () => w.shortstr(p.messageId!)],
    [p.timestamp !== undefined, () => w.u64(p.timestamp!)],
    [p.type !== undefined, () => w.shortstr(p.type!)],
    [p.userId !== undefined, () => w.shortstr(p.userId!)],
    [p.appId !== undefined, () => w.shortstr(p.appId!)],
    [p.clusterId !== undefined, () => w.shortstr(p.clusterId!)],
  ];
  fields.forEach(([present, write], i) => {
    if (!present) return;
    flags |= 1 << (15 - i);
    write();
  });
  const header = w.done();
  header.writeUInt16BE(flags, flagsAt);
  return header;
}

function frame(type: number, channel: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(8 + payload.length);
  out.writeUInt8(type, 0);
  out.writeUInt16BE(channel, 1);
  out.writeUInt32BE(payload.length, 3);
  payload.copy(out, 7);
  out.writeUInt8(FRAME_END, 7 + payload.length);
  return out;
}

function methodFrame(channel: number, [classId, methodId]: MethodId, args: (w: Writer) => unknown = () => undefined): Buffer {
  const w = new Writer().u16(classId).u16(methodId);
  args(w);
  return frame(METHOD, channel, w.done());
}

/** Reads the arguments of an incoming method. */
class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  /** Moves past the next `bytes` bytes and returns where they start. */
  private take(bytes: number): number {
    const start = this.at;
    this.at += bytes;
    return start;
  }
  u8 = (): number => this.buf.readUInt8(this.take(1));
  u16 = (): number => this.buf.readUInt16BE(this.take(2));
  u32 = (): number => this.buf.readUInt32BE(this.take(4));
  u64 = (): bigint => this.buf.readBigUInt64BE(this.take(8));
  shortstr = (): string => {
    const n = this.u8();
    const start = this.take(n);
    return this.buf.toString('utf8', start, start + n);
  };
}

interface Method {
  channel: number;
  classId: number;
  methodId: number;
  args: Reader;
}

interface Waiter {
  channel: number;
  id: MethodId;
  resolve: (args: Reader) => void;
  reject: (error: Error) => void;
}

const is = (m: Method, [classId, methodId]: MethodId): boolean => m.classId === classId && m.methodId === methodId;

/** Parses `amqp://user:pass@host:port/vhost`; the vhost is URL-decoded and defaults to "/". */
function parseAmqpUrl(url: string): { host: string; port: number; user: string; pass: string; vhost: string } {
  const u = new URL(url);
  if (u.protocol !== 'amqp:') throw new Error(`only amqp:// URLs are supported, got ${u.protocol}`);
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port ? Number(u.port) : 5672,
    user: u.username ? decodeURIComponent(u.username) : 'guest',
    pass: u.password ? decodeURIComponent(u.password) : 'guest',
    vhost: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/',
  };
}

class Publisher implements RawPublisher {
  readonly returns: ReturnedMessage[] = [];
  frameMax = 0;
  private incoming: Buffer = Buffer.alloc(0);
  private waiter: Waiter | undefined;
  private readonly confirms = new Map<bigint, (outcome: 'ack' | 'nack' | Error) => void>();
  private nextTag = 0n;
  private connectionFailure: Error | undefined;
  private channelFailure: Error | undefined;

  constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('socket closed')));
  }

  async handshake(user: string, pass: string, vhost: string): Promise<void> {
    const started = this.expect(0, M.start);
    this.socket.write(Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1])); // "AMQP" 0-9-1
    await started;
    this.send(
      methodFrame(0, M.startOk, (w) => {
        writeTable(w, {
          product: { t: 'S', v: 'raw-amqp test publisher' },
          connection_name: { t: 'S', v: 'raw-amqp' },
          capabilities: { t: 'F', v: { publisher_confirms: { t: 't', v: true }, authentication_failure_close: { t: 't', v: true } } },
        });
        w.shortstr('PLAIN').longstr(`\0${user}\0${pass}`).shortstr('en_US');
      }),
    );
    const tune = await this.expect(0, M.tune);
    const channelMax = tune.u16();
    this.frameMax = tune.u32();
    this.send(methodFrame(0, M.tuneOk, (w) => w.u16(channelMax).u32(this.frameMax).u16(0)));
    const opened = this.expect(0, M.openOk);
    this.send(methodFrame(0, M.open, (w) => w.shortstr(vhost).shortstr('').u8(0)));
    await opened;
    const channelOpened = this.expect(1, M.channelOpenOk);
    this.send(methodFrame(1, M.channelOpen, (w) => w.shortstr('')));
    await channelOpened;
    const selected = this.expect(1, M.selectOk);
    this.send(methodFrame(1, M.select, (w) => w.u8(0)));
    await selected;
  }

  publish(
    exchange: ShortStr,
    routingKey: ShortStr,
    body: Buffer,
    properties: RawProperties = {},
    options: { mandatory?: boolean } = {},
  ): Promise<'ack' | 'nack'> {
    const failure = this.channelFailure ?? this.connectionFailure;
    if (failure) return Promise.reject(failure);
    let frames: Buffer[];
    try {
      frames = [
        methodFrame(1, M.publish, (w) =>
          w
            .u16(0)
            .shortstr(exchange)
            .shortstr(routingKey)
            .u8(options.mandatory ? 1 : 0),
        ),
        frame(HEADER, 1, encodeContentHeader(body.length, properties)),
      ];
    } catch (error) {
      return Promise.reject(error as Error); // nothing was sent, so no delivery tag was used
    }
    const chunk = (this.frameMax || 131_072) - 8;
    for (let at = 0; at < body.length; at += chunk) frames.push(frame(BODY, 1, body.subarray(at, at + chunk)));
    const tag = ++this.nextTag;
    const confirmed = new Promise<'ack' | 'nack'>((resolve, reject) => {
      this.confirms.set(tag, (outcome) => (outcome instanceof Error ? reject(outcome) : resolve(outcome)));
    });
    this.socket.cork();
    for (const f of frames) this.socket.write(f);
    this.socket.uncork();
    return confirmed;
  }

  async close(): Promise<void> {
    try {
      if (!this.connectionFailure && !this.channelFailure) {
        const closed = this.expect(1, M.channelCloseOk);
        this.send(methodFrame(1, M.channelClose, (w) => w.u16(200).shortstr('bye').u16(0).u16(0)));
        await withTimeout(closed);
      }
      if (!this.connectionFailure) {
        const closed = this.expect(0, M.closeOk);
        this.send(methodFrame(0, M.close, (w) => w.u16(200).shortstr('bye').u16(0).u16(0)));
        await withTimeout(closed);
      }
    } catch {
      // the broker or the socket went away first; destroying the socket below is all that is left
    } finally {
      this.connectionFailure ??= new Error('publisher closed');
      this.socket.destroy();
    }
  }

  private send(data: Buffer): void {
    this.socket.write(data);
  }

  private expect(channel: number, id: MethodId): Promise<Reader> {
    if (this.connectionFailure) return Promise.reject(this.connectionFailure);
    return new Promise((resolve, reject) => {
      this.waiter = { channel, id, resolve, reject };
    });
  }

  private onData(chunk: Buffer): void {
    this.incoming = this.incoming.length ? Buffer.concat([this.incoming, chunk]) : chunk;
    while (this.incoming.length >= 7) {
      const size = this.incoming.readUInt32BE(3);
      if (this.incoming.length < size + 8) return;
      const type = this.incoming.readUInt8(0);
      const channel = this.incoming.readUInt16BE(1);
      const payload = this.incoming.subarray(7, 7 + size);
      this.incoming = this.incoming.subarray(size + 8);
      // Content frames only follow a basic.return here, whose content is not kept; heartbeats are not asked for.
      if (type === METHOD) {
        this.onMethod({
          channel,
          classId: payload.readUInt16BE(0),
          methodId: payload.readUInt16BE(2),
          args: new Reader(payload.subarray(4)),
        });
      }
    }
  }

  private onMethod(m: Method): void {
    if (is(m, M.close)) {
      const error = new BrokerCloseError('connection', m.args.u16(), m.args.shortstr(), m.args.u16(), m.args.u16());
      this.send(methodFrame(0, M.closeOk));
      this.fail(error, 'end');
    } else if (is(m, M.channelClose) && m.channel === 1) {
      const error = new BrokerCloseError('channel', m.args.u16(), m.args.shortstr(), m.args.u16(), m.args.u16());
      this.send(methodFrame(1, M.channelCloseOk));
      this.channelFailure = error;
      this.settleAll(error);
      if (this.waiter?.channel === 1) this.takeWaiter()!.reject(error);
    } else if (is(m, M.ack) || is(m, M.nack)) {
      const tag = m.args.u64();
      const multiple = (m.args.u8() & 1) === 1;
      const outcome = is(m, M.ack) ? 'ack' : 'nack';
      for (const [pending, settle] of this.confirms) {
        if (pending === tag || (multiple && pending < tag)) {
          this.confirms.delete(pending);
          settle(outcome);
        }
      }
    } else if (is(m, M.return)) {
      this.returns.push({
        replyCode: m.args.u16(),
        replyText: m.args.shortstr(),
        exchange: m.args.shortstr(),
        routingKey: m.args.shortstr(),
      });
    } else if (this.waiter && this.waiter.channel === m.channel && is(m, this.waiter.id)) {
      this.takeWaiter()!.resolve(m.args);
    }
    // anything else (connection.blocked, a close-ok nobody waits for) is ignored
  }

  private takeWaiter(): Waiter | undefined {
    const waiter = this.waiter;
    this.waiter = undefined;
    return waiter;
  }

  private settleAll(error: Error): void {
    for (const settle of this.confirms.values()) settle(error);
    this.confirms.clear();
  }

  /**
   * The connection is gone: everything pending rejects, with the broker's reason if it gave one. After the
   * broker's connection.close the socket is ended, so the close-ok written just before still goes out.
   */
  private fail(error: Error, socket: 'end' | 'destroy' = 'destroy'): void {
    this.connectionFailure ??= error;
    this.settleAll(this.connectionFailure);
    this.takeWaiter()?.reject(this.connectionFailure);
    if (socket === 'end') this.socket.end();
    else this.socket.destroy();
  }
}

function withTimeout<T>(promise: Promise<T>, ms = 5_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no reply within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Connects, authenticates (PLAIN), opens channel 1 and puts it in confirm mode. */
export async function openRawPublisher(url: string): Promise<RawPublisher> {
  const { host, port, user, pass, vhost } = parseAmqpUrl(url);
  const socket = net.connect({ host, port });
  const publisher = new Publisher(socket);
  try {
    await publisher.handshake(user, pass, vhost);
  } catch (error) {
    socket.destroy();
    throw error;
  }
  return publisher;
}
