/**
 * A TCP proxy between the code under test and the broker that a test can cut: `sever()` destroys every
 * connection through it at once (what a failed switch, a broker node restart or a NAT timeout looks like to
 * the client), and `down()` ... `up()` refuses new connections meanwhile (the outage lasts). Only the
 * connections through this proxy are hit; other tests on the same broker are not.
 */
import net from 'node:net';

export class TcpProxy {
  private server: net.Server | undefined;
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  private refusing = false;
  /** Connections opened through the proxy, and connections it cut or refused. */
  readonly stats = { accepted: 0, severed: 0, refused: 0 };

  constructor(private readonly target: { host: string; port: number }) {}

  /** Listens on 127.0.0.1 on a free port; resolves to the port. */
  async start(): Promise<number> {
    const server = net.createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return (server.address() as net.AddressInfo).port;
  }

  /** Connections open right now. */
  get open(): number {
    return this.pairs.size;
  }

  /** Destroys every open connection, both sides; returns how many were cut. */
  sever(): number {
    const count = this.pairs.size;
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
    this.stats.severed += count;
    return count;
  }

  /** Cuts every connection and refuses new ones until `up()`. */
  down(): number {
    this.refusing = true;
    return this.sever();
  }

  up(): void {
    this.refusing = false;
  }

  /** Cuts everything and stops listening. */
  async close(): Promise<void> {
    this.refusing = true;
    this.sever();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    if (this.refusing) {
      this.stats.refused++;
      client.destroy();
      return;
    }
    this.stats.accepted++;
    const upstream = net.connect(this.target.port, this.target.host);
    const pair = { client, upstream };
    this.pairs.add(pair);
    const drop = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
