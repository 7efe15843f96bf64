/**
 * GET /health: 200 when the broker and the database both answer, 503 naming the one(s) that do not. The
 * broker check is what the process's Broker knows: connected is up, known down is down at once (no wait,
 * no connection attempt of its own), and only while nothing is known yet does it wait for the attempt.
 */
import type { FastifyPluginAsync } from 'fastify';
import { HEALTH_TIMEOUT_MS } from './limits';

type CheckStatus = 'up' | 'down';

interface HealthBody {
  status: 'ok' | 'unavailable';
  checks: Record<'broker' | 'database', CheckStatus>;
  /** The dependencies that are down. */
  down: Array<'broker' | 'database'>;
}

class HealthTimeoutError extends Error {
  override readonly name = 'HealthTimeoutError';
}

/** Runs `probe` with a deadline; resolves to the error, or undefined when it answered in time. */
async function failureOf(probe: () => Promise<unknown>, timeoutMs: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HealthTimeoutError(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  const attempt = probe();
  attempt.catch(() => undefined);
  try {
    await Promise.race([attempt, deadline]);
    return undefined;
  } catch (error) {
    return error;
  } finally {
    clearTimeout(timer);
  }
}

export const healthRoutes: FastifyPluginAsync = async (app) => {
  const { broker, store } = app.services;

  app.get('/health', async (request, reply) => {
    const [brokerFailure, databaseFailure] = await Promise.all([
      failureOf(() => broker.connectUnlessDown(), HEALTH_TIMEOUT_MS),
      failureOf(async () => (await store()).ping(), HEALTH_TIMEOUT_MS),
    ]);
    // Why a dependency is down goes to the log, not to an unauthenticated caller.
    if (brokerFailure)
      request.log.warn(
        { err: brokerFailure, broker: broker.status.state, since: broker.status.since.toISOString() },
        'health: broker down',
      );
    if (databaseFailure) request.log.warn({ err: databaseFailure }, 'health: database down');
    const checks: HealthBody['checks'] = { broker: brokerFailure ? 'down' : 'up', database: databaseFailure ? 'down' : 'up' };
    const down = (Object.keys(checks) as Array<keyof typeof checks>).filter((name) => checks[name] === 'down');
    const body: HealthBody = { status: down.length === 0 ? 'ok' : 'unavailable', checks, down };
    return reply
      .code(down.length === 0 ? 200 : 503)
      .header('Cache-Control', 'no-store')
      .send(body);
  });
};
