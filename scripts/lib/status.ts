/**
 * What `npm run status` and the console's Flow view (shared/console/flow.ts) show, collected: the queues of
 * the topology (management API when it answers, else AMQP) and the report of the runners' triggers. No command
 * line, no serverless.yml and no runner code here (types only), so a function bundle can carry it.
 */
import type { ChannelModel } from 'amqplib';
import type { EventSourceMappingStatus, FoundRunnerStatus } from 'serverless-offline-rabbitmq';
import { type Config, redactUrl } from '../../shared/config';
import { Broker, dlqName, FUNCTION_QUEUES, PARKING_LOT_QUEUE, topology, topologyOptions, WORK_QUEUES } from '../../shared/messaging';
import { type ManagementQueue, managementQueues, managementTarget } from './management';

type QueueKind = 'work' | 'dead letters' | 'retry' | 'parking lot';

interface QueueStatus {
  name: string;
  kind: QueueKind;
  /** False when the broker has no such queue (topology not declared yet). */
  exists: boolean;
  /** Ready + unacknowledged (management); ready only over AMQP, which cannot see unacknowledged ones. */
  messages: number | null;
  ready: number | null;
  unacknowledged: number | null;
  consumers: number | null;
  /** Messages per second as the management API averages them; null over AMQP. */
  rates: { publish: number; deliver: number; ack: number } | null;
}

export interface StatusReport {
  source: 'management' | 'amqp';
  /** Where the figures came from, and why not the management API when it is AMQP. */
  detail: string;
  vhost: string;
  queues: QueueStatus[];
}

/** The queues of the topology for this configuration, with their kind, in declaration order. */
function statusQueues(cfg: Config): Array<{ name: string; kind: QueueKind }> {
  const work = new Set([...WORK_QUEUES, ...FUNCTION_QUEUES].map((queue) => queue.name));
  const dlqs = new Set([...work].map(dlqName));
  return topology(topologyOptions(cfg)).queues.map(({ name }) => ({
    name,
    kind: work.has(name) ? 'work' : dlqs.has(name) ? 'dead letters' : name === PARKING_LOT_QUEUE ? 'parking lot' : 'retry',
  }));
}

function fromManagement(queues: ReadonlyArray<{ name: string; kind: QueueKind }>, listed: ManagementQueue[]): QueueStatus[] {
  const byName = new Map(listed.map((queue) => [queue.name, queue]));
  return queues.map(({ name, kind }) => {
    const q = byName.get(name);
    if (!q) return { name, kind, exists: false, messages: null, ready: null, unacknowledged: null, consumers: null, rates: null };
    const stats = q.message_stats ?? {};
    return {
      name,
      kind,
      exists: true,
      messages: q.messages ?? null,
      ready: q.messages_ready ?? null,
      unacknowledged: q.messages_unacknowledged ?? null,
      consumers: q.consumers ?? null,
      rates: {
        publish: stats.publish_details?.rate ?? 0,
        deliver: stats.deliver_get_details?.rate ?? 0,
        ack: stats.ack_details?.rate ?? 0,
      },
    };
  });
}

async function fromAmqp(connection: ChannelModel, queues: ReadonlyArray<{ name: string; kind: QueueKind }>): Promise<QueueStatus[]> {
  const result: QueueStatus[] = [];
  for (const { name, kind } of queues) {
    // A passive declare of a missing queue closes its channel (404), so each queue gets its own.
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    try {
      const { messageCount, consumerCount } = await channel.checkQueue(name);
      result.push({
        name,
        kind,
        exists: true,
        messages: messageCount,
        ready: messageCount,
        unacknowledged: null,
        consumers: consumerCount,
        rates: null,
      });
    } catch (error) {
      if (!/NOT_FOUND|404/.test((error as Error).message)) throw error;
      result.push({ name, kind, exists: false, messages: null, ready: null, unacknowledged: null, consumers: null, rates: null });
    } finally {
      await channel.close().catch(() => undefined);
    }
  }
  return result;
}

/** Queue figures from the management API if it answers, else over AMQP; throws when neither can be reached. */
export async function collectStatus(cfg: Config, env: NodeJS.ProcessEnv = process.env): Promise<StatusReport> {
  const queues = statusQueues(cfg);
  const target = managementTarget(cfg, env);
  let managementProblem: string;
  try {
    const listed = await managementQueues(target);
    return {
      source: 'management',
      detail: `the management API at ${target.url}`,
      vhost: target.vhost,
      queues: fromManagement(queues, listed),
    };
  } catch (error) {
    managementProblem = (error as Error).message;
  }
  const broker = new Broker({ urls: cfg.amqpUrls, connectionName: 'status-cli', maxAttempts: cfg.amqpUrls.length, initialBackoffMs: 100 });
  try {
    let connection: ChannelModel;
    try {
      connection = await broker.connect();
    } catch (error) {
      throw new Error(
        `${(error as Error).message}. Before that, ${managementProblem}. ` +
          'Is RabbitMQ running? `npm start` starts it (docker compose or rabbitmq-server); AMQP_URL and MANAGEMENT_URL say where to look.',
      );
    }
    return {
      source: 'amqp',
      detail:
        `AMQP at ${cfg.amqpUrls.map(redactUrl).join(', ')}, because ${managementProblem}. ` +
        'Rates need the management API (rabbitmq-plugins enable rabbitmq_management; the docker compose image has it).',
      vhost: target.vhost,
      queues: await fromAmqp(connection, queues),
    };
  } finally {
    await broker.close();
  }
}

/** One mapping of one runner process; `Local` says which. */
interface MappingReport extends EventSourceMappingStatus {
  Local: EventSourceMappingStatus['Local'] & { pid: number; process: string };
}

export interface TriggersReport {
  /** Where the runners' status files were looked for. */
  directory: string;
  /** The runner processes found alive, without their mappings. */
  runners: Array<Omit<FoundRunnerStatus, 'EventSourceMappings'>>;
  /** Every mapping of every runner, as ListEventSourceMappings names the list. */
  EventSourceMappings: MappingReport[];
}

/** The triggers of the runner processes whose status files (found in `directory`) a reader read. */
export function reportTriggers(directory: string, found: readonly FoundRunnerStatus[]): TriggersReport {
  return {
    directory,
    runners: found.map(({ EventSourceMappings: _, ...runner }) => runner),
    EventSourceMappings: found.flatMap((runner) =>
      runner.EventSourceMappings.map((mapping) => ({ ...mapping, Local: { ...mapping.Local, pid: runner.pid, process: runner.label } })),
    ),
  };
}
