/**
 * The runner's metrics for Prometheus: `GET /metrics` answers the text exposition format (version 0.0.4) with
 * the counts every trigger already keeps (TriggerCounts, the same numbers `npm run status` shows), one series
 * per function and queue, and each mapping's state. Served by the runner of `npm start` (serverless-offline)
 * and of `npm run worker` on METRICS_PORT (default 9464, Prometheus's customary exporter port; `off`: none).
 *
 * Written out by hand rather than through prom-client: the counts live in the triggers, a scrape only reads
 * them, and the format is a few lines of text.
 */
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { TriggerDefinitionError } from './definitions';
import type { EventSourceMappingStatus, MappingState, TriggerCounts } from './mapping';

const DEFAULT_METRICS_PORT = 9464;

const COUNTERS: ReadonlyArray<{ key: keyof TriggerCounts; name: string; help: string }> = [
  { key: 'invocations', name: 'rabbitmq_trigger_invocations_total', help: 'Invocations of the function by this trigger.' },
  {
    key: 'failedInvocations',
    name: 'rabbitmq_trigger_failed_invocations_total',
    help: 'Invocations that threw, timed out or did not load; their batch was requeued.',
  },
  {
    key: 'received',
    name: 'rabbitmq_trigger_records_received_total',
    help: 'Deliveries taken from the queue, redeliveries included.',
  },
  {
    key: 'acked',
    name: 'rabbitmq_trigger_records_acked_total',
    help: 'Deliveries acknowledged (processed, filtered out or dead-lettered).',
  },
  { key: 'requeued', name: 'rabbitmq_trigger_records_requeued_total', help: 'Deliveries returned to the queue (a failed batch, a stop).' },
  {
    key: 'deadLettered',
    name: 'rabbitmq_trigger_records_dead_lettered_total',
    help: 'Deliveries the trigger dead-lettered itself (no aws:rmq form, too large), never shown to the function.',
  },
  {
    key: 'filtered',
    name: 'rabbitmq_trigger_records_filtered_total',
    help: 'Deliveries that matched none of the filter criteria: acknowledged, never invoked.',
  },
  {
    key: 'rejected',
    name: 'rabbitmq_trigger_records_rejected_total',
    help: "Deliveries rejected without requeue to the queue's own dead-lettering.",
  },
];

const STATES: readonly MappingState[] = ['Creating', 'Enabling', 'Enabled', 'Disabling', 'Disabled', 'Updating', 'Deleting', 'Failed'];

/** A label value, escaped as the text format asks (backslash, double quote, newline). */
const label = (value: string) => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

const series = (mapping: EventSourceMappingStatus) =>
  `function="${label(mapping.Local.functionKey)}",queue="${label(mapping.Queues[0] ?? '')}"`;

/** The mappings' counts and states in Prometheus's text format. */
export function prometheusText(mappings: readonly EventSourceMappingStatus[]): string {
  const lines: string[] = [];
  for (const { key, name, help } of COUNTERS) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
    for (const mapping of mappings) lines.push(`${name}{${series(mapping)}} ${mapping.Local.counts[key]}`);
  }
  const state = 'rabbitmq_trigger_state';
  lines.push(`# HELP ${state} The mapping's State as AWS names it (1 for the current one).`, `# TYPE ${state} gauge`);
  for (const mapping of mappings) {
    for (const name of STATES) lines.push(`${state}{${series(mapping)},state="${name}"} ${mapping.State === name ? 1 : 0}`);
  }
  return `${lines.join('\n')}\n`;
}

/** METRICS_PORT: a port (0 for any free one), `off` for no endpoint; unset: 9464. A bad value: TriggerDefinitionError naming it. */
export function metricsPort(env: Readonly<Record<string, string | undefined>>): number | undefined {
  const raw = env.METRICS_PORT?.trim();
  if (!raw) return DEFAULT_METRICS_PORT;
  if (/^(off|false|none|disabled?)$/i.test(raw)) return undefined;
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65_535)
    throw new TriggerDefinitionError(`METRICS_PORT must be a port number (0-65535) or off, got '${raw}'`);
  return port;
}

export interface MetricsServer {
  /** The port it listens on. */
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` on `port` (every interface, as Prometheus exporters do). A port already taken (another
 * runner on this machine, say) is logged and leaves the runner without an endpoint: it never stops the triggers.
 */
export async function serveMetrics(options: {
  port: number;
  mappings: () => readonly EventSourceMappingStatus[];
  logger: Logger;
}): Promise<MetricsServer | undefined> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      let body: string;
      try {
        body = prometheusText(options.mappings());
      } catch (error) {
        options.logger.warn({ err: error }, 'could not render the metrics');
        response.writeHead(500).end();
        return;
      }
      response
        .writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
        .end(request.method === 'HEAD' ? undefined : body);
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: the metrics are at /metrics\n');
    }
  });
  const listening = await new Promise<Error | undefined>((resolve) => {
    server.once('error', resolve);
    server.listen(options.port, () => resolve(undefined));
  });
  if (listening) {
    options.logger.warn(
      { err: listening, port: options.port },
      `no metrics endpoint: port ${options.port} is not free (another runner?); set METRICS_PORT to another port, or off`,
    );
    return undefined;
  }
  server.on('error', (error) => options.logger.warn({ err: error }, 'metrics endpoint error'));
  const { port } = server.address() as { port: number };
  options.logger.info({ url: `http://localhost:${port}/metrics` }, 'serving metrics');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
