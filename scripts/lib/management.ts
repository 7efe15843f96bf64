/**
 * The RabbitMQ management HTTP API, where it answers: its address (MANAGEMENT_URL, else derived from the
 * first broker URL), the broker's credentials, and the few calls `npm start` and `npm run status` make.
 * The project works without it; callers fall back to AMQP.
 */
import type { Config } from '../../shared/config';

export interface ManagementTarget {
  /** Base URL without credentials, e.g. http://127.0.0.1:15672; empty when it cannot be told (see `unknown`). */
  url: string;
  /** Why there is no URL to try: MANAGEMENT_URL unset and the broker not on its default port. */
  unknown?: string;
  username: string;
  password: string;
  /** The virtual host of the broker URL (`/` when the URL names none). */
  vhost: string;
}

/**
 * Where the management API should be: MANAGEMENT_URL if set (credentials in it win), else port 15672 on the
 * broker's host over http (amqp:// on 5672) or https on the broker's host (amqps:// on 5671, as Amazon MQ
 * serves it). A broker on another port is not guessed: port 15672 there may well belong to another broker.
 * Credentials default to the broker URL's, as the management API accepts the same users.
 */
export function managementTarget(cfg: Config, env: NodeJS.ProcessEnv = process.env): ManagementTarget {
  const broker = new URL(cfg.amqpUrls[0]!);
  const vhostPath = decodeURIComponent(broker.pathname.replace(/^\//, ''));
  const vhost = vhostPath || '/';
  const username = decodeURIComponent(broker.username) || 'guest';
  const password = decodeURIComponent(broker.password) || 'guest';
  const configured = env.MANAGEMENT_URL?.trim();
  if (configured) {
    const url = new URL(configured);
    const target: ManagementTarget = {
      url: '',
      username: url.username ? decodeURIComponent(url.username) : username,
      password: url.password ? decodeURIComponent(url.password) : password,
      vhost,
    };
    url.username = '';
    url.password = '';
    target.url = url.toString().replace(/\/+$/, '');
    return target;
  }
  const secure = broker.protocol === 'amqps:';
  const port = broker.port || (secure ? '5671' : '5672');
  if (port !== (secure ? '5671' : '5672')) {
    return {
      url: '',
      unknown: `MANAGEMENT_URL is not set and the broker is not on its default port (${port}), so where its management API is cannot be told`,
      username,
      password,
      vhost,
    };
  }
  const host = broker.hostname.includes(':') ? `[${broker.hostname}]` : broker.hostname;
  const url = secure ? `https://${host}` : `http://${host}:15672`;
  return { url, username, password, vhost };
}

/** The management API answered, but not with what was asked. */
class ManagementError extends Error {
  override readonly name = 'ManagementError';
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** GET `path` from the management API as JSON; ManagementError on any failure, saying which. */
async function managementGet<T>(target: ManagementTarget, path: string, timeoutMs = 3_000): Promise<T> {
  if (target.unknown) throw new ManagementError(target.unknown);
  const auth = Buffer.from(`${target.username}:${target.password}`).toString('base64');
  let response: Response;
  try {
    response = await fetch(`${target.url}${path}`, {
      headers: { authorization: `Basic ${auth}`, accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const why =
      (error as Error).name === 'TimeoutError'
        ? `no answer within ${timeoutMs} ms`
        : (cause?.code ?? cause?.message ?? (error as Error).message);
    throw new ManagementError(`the management API at ${target.url} did not answer (${why})`);
  }
  if (response.status === 401) {
    await response.body?.cancel();
    throw new ManagementError(`the management API at ${target.url} refused user '${target.username}' (401)`, 401);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new ManagementError(`the management API at ${target.url}${path} answered ${response.status}`, response.status);
  }
  try {
    return (await response.json()) as T;
  } catch {
    throw new ManagementError(`the management API at ${target.url}${path} answered with something that is not JSON`);
  }
}

/** Resolves true when the management API answers with our credentials, false with the reason otherwise. */
export async function probeManagement(target: ManagementTarget, timeoutMs = 2_000): Promise<{ up: true } | { up: false; reason: string }> {
  try {
    await managementGet(target, '/api/overview', timeoutMs);
    return { up: true };
  } catch (error) {
    return { up: false, reason: (error as Error).message };
  }
}

/** One queue as /api/queues lists it (the fields status uses; absent until the broker's first stats round). */
export interface ManagementQueue {
  name: string;
  type?: string;
  state?: string;
  messages?: number;
  messages_ready?: number;
  messages_unacknowledged?: number;
  consumers?: number;
  message_stats?: {
    publish_details?: { rate?: number };
    deliver_get_details?: { rate?: number };
    ack_details?: { rate?: number };
  };
}

/** Every queue of the target's virtual host. */
export function managementQueues(target: ManagementTarget, timeoutMs = 5_000): Promise<ManagementQueue[]> {
  const columns = 'name,type,state,messages,messages_ready,messages_unacknowledged,consumers,message_stats';
  return managementGet<ManagementQueue[]>(target, `/api/queues/${encodeURIComponent(target.vhost)}?columns=${columns}`, timeoutMs);
}
