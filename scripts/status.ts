/**
 * `npm run status`: each queue of the topology (work queues, their DLQs, the retry queues, the parking lot)
 * with its depth and consumers, and message rates where the broker reports them; then every RabbitMQ trigger
 * (event source mapping) of every runner process on this machine (`npm start`, each `npm run worker`) with its
 * state as AWS reports it.
 *
 * Queues: the RabbitMQ management HTTP API when it answers (MANAGEMENT_URL, default port 15672 on the broker's
 * host, with the broker URL's credentials): depth split into ready/unacknowledged, consumers, and rates.
 * Otherwise AMQP (a passive declare per queue): messages ready and consumers, no rates.
 * Triggers: the status files the runners keep in the service's status directory (custom.rabbitmqTrigger.statusDir,
 * default .build/rabbitmq-trigger; see shared/runner/status-file.ts); they are shown even when the broker is down.
 *
 *   npm run status                              # tables
 *   npm run status -- --json                    # the same as JSON, the mappings with AWS's field names
 *   npm run status -- --service-dir path/to/svc # the triggers of another service's runners
 */

import { relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_STATUS_DIR, loadService, readRunnerStatus, statusDirectory, triggerSettings } from 'serverless-offline-rabbitmq';
import { ConfigError, config } from '../shared/config';
import { collectStatus, reportTriggers, type StatusReport, type TriggersReport } from './lib/status';

const root = fileURLToPath(new URL('..', import.meta.url));

export type { StatusReport, TriggersReport };

/** The triggers of every runner process of the service in `serviceDir` on this machine, from their status files. */
export function collectTriggers(serviceDir: string): TriggersReport {
  let directory = resolve(serviceDir, DEFAULT_STATUS_DIR);
  try {
    directory = statusDirectory(serviceDir, triggerSettings(loadService(serviceDir).custom));
  } catch {
    // No readable serverless.yml: the default directory is the best guess.
  }
  return reportTriggers(directory, readRunnerStatus(directory));
}

const clock = (iso: string | undefined) => (iso ? new Date(iso).toTimeString().slice(0, 8) : '');
const cut = (text: string, width: number) => (text.length <= width ? text : `${text.slice(0, width - 3)}...`);

/** Left-aligned columns, numbers (columns named in `numeric`) right-aligned. */
function table(header: string[], rows: string[][], numeric: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    `  ${cells
      .map((cell, i) => (numeric.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()}`;
  return [line(header), ...rows.map(line)];
}

export function formatTriggers(report: TriggersReport): string {
  const where = relative(process.cwd(), report.directory) || report.directory;
  if (report.runners.length === 0) {
    return `RabbitMQ triggers: no runner process on this machine (npm start or npm run worker starts one; status files in ${where}).`;
  }
  const lines = [
    `RabbitMQ triggers (event source mappings) of ${report.runners.length} runner process${report.runners.length === 1 ? '' : 'es'} on this machine (${where}):`,
  ];
  for (const runner of report.runners) {
    const broker = `broker ${runner.broker.state}${runner.broker.lastError ? ` (${cut(runner.broker.lastError, 80)})` : ''}`;
    const stale = runner.staleForMs ? `; NOT UPDATED for ${Math.round(runner.staleForMs / 1000)} s: is it stuck?` : '';
    lines.push(
      `  ${runner.label} pid ${runner.pid}, ${[runner.service, runner.stage].filter(Boolean).join(' ')}, started ${clock(runner.startedAt)}, ${broker}${stale}`,
    );
  }
  const header = [
    'function',
    'queue',
    'process',
    'state',
    'reason',
    'last processing result',
    'in',
    'filtered',
    'acked',
    'requeued',
    'dead-lettered',
  ];
  const rows = report.EventSourceMappings.map((m) => {
    const { counts } = m.Local;
    const at = m.Local.lastProcessingResultAt ? ` (${clock(m.Local.lastProcessingResultAt)})` : '';
    return [
      m.Local.functionKey,
      m.Queues.join(','),
      `${m.Local.process} ${m.Local.pid}`,
      m.State,
      m.StateTransitionReason,
      `${cut(m.LastProcessingResult, 48)}${at}`,
      String(counts.received),
      String(counts.filtered),
      String(counts.acked),
      String(counts.requeued),
      String(counts.deadLettered + counts.rejected),
    ];
  });
  lines.push('', ...table(header, rows, new Set([6, 7, 8, 9, 10])));
  const stopped = report.EventSourceMappings.filter((m) => m.State === 'Failed');
  if (stopped.length) {
    lines.push('', 'Stopped for good (AWS stops such a consumer; fix the cause and restart that process):');
    for (const m of stopped) {
      lines.push(
        `  ${m.Local.functionKey} <- ${m.Queues.join(',')} (${m.Local.process} ${m.Local.pid}): ${m.StateTransitionReason}: ${m.Local.stateTransitionDetail ?? m.LastProcessingResult}`,
      );
    }
  }
  return lines.join('\n');
}

const show = (value: number | null) => (value === null ? '-' : String(value));
const rate = (value: number) => (value === 0 ? '0' : value < 10 ? value.toFixed(1) : value.toFixed(0));

export function formatStatus(report: StatusReport): string {
  const management = report.source === 'management';
  const header = management
    ? ['queue', 'kind', 'messages', 'ready', 'unacked', 'consumers', 'in/s', 'out/s', 'ack/s']
    : ['queue', 'kind', 'messages ready', 'consumers'];
  const rows = report.queues.map((q) => {
    if (!q.exists) return [q.name, q.kind, 'missing: not declared (npm run topology)'];
    return management
      ? [
          q.name,
          q.kind,
          show(q.messages),
          show(q.ready),
          show(q.unacknowledged),
          show(q.consumers),
          rate(q.rates!.publish),
          rate(q.rates!.deliver),
          rate(q.rates!.ack),
        ]
      : [q.name, q.kind, show(q.messages), show(q.consumers)];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.filter((r) => r.length === header.length).map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    '  ' +
    cells
      .map((c, i) => (cells.length < header.length ? c : i >= 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const dead = report.queues.filter((q) => q.kind === 'dead letters' || q.kind === 'parking lot');
  const deadTotal = dead.reduce((sum, q) => sum + (q.messages ?? 0), 0);
  const lines = [
    `RabbitMQ queues (vhost ${report.vhost}) from ${report.detail}`,
    line(header),
    ...rows.map((row) =>
      row.length === header.length ? line(row) : line([row[0]!.padEnd(widths[0]!), row[1]!.padEnd(widths[1]!), row[2]!]),
    ),
    '',
    deadTotal === 0
      ? 'Dead letters: none.'
      : `Dead letters: ${dead
          .filter((q) => q.messages)
          .map((q) => `${q.messages} in ${q.name}`)
          .join(', ')} (see GET /dlq; redrive with POST /dlq/redrive).`,
  ];
  if (management) lines.push('Rates are per second, averaged by the broker; its figures refresh every few seconds.');
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      'service-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      'Usage: npm run status [-- --json] [--service-dir DIR]\n' +
        '  MANAGEMENT_URL selects the management API (default port 15672 on the broker host); --service-dir the service\n' +
        "  whose runners' triggers to show (default: this project).",
    );
    return;
  }
  const cfg = config();
  const triggers = collectTriggers(values['service-dir'] ? resolve(values['service-dir']) : root);
  let queues: StatusReport | undefined;
  let failure: Error | undefined;
  try {
    queues = await collectStatus(cfg);
  } catch (error) {
    failure = error as Error;
  }
  // The triggers are shown even when the broker cannot be asked: a broker that refuses the runners is when
  // their state matters most.
  if (values.json) console.log(JSON.stringify({ ...queues, ...(failure ? { error: failure.message } : {}), ...triggers }, null, 2));
  else console.log([...(queues ? [formatStatus(queues), ''] : []), formatTriggers(triggers)].join('\n'));
  if (failure) throw failure;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(`status: ${(error as Error).message}`);
    process.exit(error instanceof ConfigError ? 2 : 1);
  });
}
