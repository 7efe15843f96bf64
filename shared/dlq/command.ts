/**
 * The `npm run dlq` command (entry point: cli.ts): parsing, running and printing, testable in-process.
 *
 *   npm run dlq -- list [--queue <dlq>]... [--sample <n>] [--json]
 *   npm run dlq -- redrive --queue <dlq> [--limit <n>] [--rate <per-second>] [--error-class <class>[,<class>]]
 *                          [--error-name <name>] [--dry-run] [--json]
 *
 * Exit codes: 0 done; 1 something failed (broker unreachable, a message could not be moved, interrupted);
 * 2 bad command line; 3 the DLQ is busy with another list or redrive. Ctrl-C during a redrive stops it
 * after the message in hand; nothing is lost.
 */

import { parseArgs } from 'node:util';
import { type Config, ConfigError, config as processConfig } from '../config';
import { UsageError } from '../lib/usage-error';
import { createLogger } from '../logging';
import { createBroker, Publisher } from '../messaging';
import { DlqBusyError, InvalidDlqOptionsError, NotADlqError } from './errors';
import type { DlqMessageSummary } from './message';
import { DLQ_ERROR_CLASSES } from './message';
import { parseListRequest, parseRedriveRequest } from './options';
import { type DlqListing, DlqReprocessor, type RedriveReport } from './reprocessor';

const USAGE = `Usage:
  npm run dlq -- list [--queue <dlq>]... [--sample <n>] [--json]
      Each DLQ's depth and its first messages (not removed, order kept), and the parking lot's depth.
  npm run dlq -- redrive --queue <dlq> [--limit <n>] [--rate <per-second>] [--error-class <class>[,<class>]]
                         [--error-name <name>] [--dry-run] [--json]
      Moves messages back to the queue they came from (parks those redriven too often in parking-lot).
      --error-class: ${DLQ_ERROR_CLASSES.join(', ')} (broker: dead-lettered by the broker's delivery limit)
      --dry-run: report what would be moved, parked and skipped, change nothing.
Exit codes: 0 done, 1 failed, 2 bad command line, 3 DLQ busy.`;

export const EXIT = { ok: 0, failed: 1, usage: 2, busy: 3 } as const;

export { UsageError } from '../lib/usage-error';

const OPTIONS = {
  queue: { type: 'string', multiple: true },
  sample: { type: 'string' },
  limit: { type: 'string' },
  rate: { type: 'string' },
  'error-class': { type: 'string' },
  'error-name': { type: 'string' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Numbers stay text when they are not numbers, so the validation names the flag. */
const number = (value: string | undefined): number | string | undefined =>
  value === undefined ? undefined : /^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;

const flag = (field: string) => `--${field.replace(/_/g, '-')}`;

export type Command =
  | { command: 'help' }
  | { command: 'list'; json: boolean; request: unknown }
  | { command: 'redrive'; json: boolean; request: unknown };

/** The command line's flags and words; UsageError (without node's hint about `--`) when they do not parse. */
function parseOptions(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

/** Reads the command line into a command and its (not yet validated) request; UsageError when it makes no sense. */
export function parseCommandLine(argv: readonly string[]): Command {
  const { values, positionals } = parseOptions(argv);
  const [command, ...rest] = positionals;
  if (values.help || command === 'help' || command === undefined) return { command: 'help' };
  if (rest.length > 0) throw new UsageError(`Unexpected argument '${rest[0]}'`);
  const json = values.json ?? false;
  const given = (names: ReadonlyArray<keyof typeof values>) => names.filter((name) => values[name] !== undefined);
  if (command === 'list') {
    const wrong = given(['limit', 'rate', 'error-class', 'error-name', 'dry-run']);
    if (wrong.length > 0) throw new UsageError(`--${wrong[0]} is an option of 'redrive', not of 'list'`);
    return { command, json, request: { queue: values.queue, sample: values.sample } };
  }
  if (command === 'redrive') {
    if (values.sample !== undefined) throw new UsageError(`--sample is an option of 'list', not of 'redrive'`);
    const queues = values.queue ?? [];
    if (queues.length === 0) throw new UsageError('redrive needs --queue <dlq>, e.g. --queue order-events-dlq');
    if (queues.length > 1) throw new UsageError('redrive takes one --queue at a time');
    const classes = values['error-class']
      ?.split(',')
      .map((part) => part.trim())
      .filter(Boolean);
    return {
      command,
      json,
      request: {
        queue: queues[0],
        limit: number(values.limit),
        rate: number(values.rate),
        error_class: classes && classes.length === 1 ? classes[0] : classes,
        error_name: values['error-name'],
        dry_run: values['dry-run'],
      },
    };
  }
  throw new UsageError(`Unknown command '${command}' (expected list or redrive)`);
}

/** The request fields with undefined ones left out, so the schema sees only what was given. */
const given = (request: unknown): Record<string, unknown> =>
  Object.fromEntries(Object.entries(request as Record<string, unknown>).filter(([, value]) => value !== undefined));

const line = (summary: DlqMessageSummary): string => {
  const error =
    summary.errorClass === 'broker'
      ? `broker: ${summary.death?.reason ?? '?'} in ${summary.death?.queue ?? '?'} x${summary.death?.count ?? 1}`
      : `${summary.errorClass}: ${summary.errorName ?? '?'}: ${summary.errorMessage ?? ''}`;
  const facts = [
    summary.type ?? 'no type',
    `attempts ${summary.attempts ?? '?'}`,
    `redriven ${summary.redriveCount}x`,
    summary.firstFailedAt ? `first failed ${summary.firstFailedAt}` : undefined,
    summary.wouldPark ? 'would be parked' : `-> ${summary.redriveTarget}`,
  ].filter(Boolean);
  const preview = summary.bodyPreview ? `\n       body (${summary.bodyBytes} bytes): ${summary.bodyPreview}` : '';
  return `  ${String(summary.position).padStart(3)}. ${summary.messageId ?? '(no message id)'}  ${error}\n       ${facts.join(', ')}${preview}`;
};

function formatListing(listing: DlqListing): string {
  const out: string[] = [];
  for (const dlq of listing.dlqs) {
    const state =
      dlq.status === 'ok'
        ? `${dlq.depth} message(s)`
        : dlq.status === 'busy'
          ? 'busy: another list or redrive has its messages checked out; depth unknown until it ends'
          : 'not declared';
    out.push(`${dlq.queue} (from ${dlq.source}): ${state}`);
    for (const summary of dlq.sample) out.push(line(summary));
    if (dlq.depth !== null && dlq.depth > dlq.sample.length && dlq.sample.length > 0)
      out.push(`       ... and ${dlq.depth - dlq.sample.length} more`);
  }
  out.push(
    `${listing.parkingLot.queue}: ${listing.parkingLot.depth ?? 'not declared'}${listing.parkingLot.depth === null ? '' : ' message(s)'}`,
  );
  return out.join('\n');
}

export function formatReport(report: RedriveReport): string {
  const targets = Object.entries(report.targets)
    .map(([queue, count]) => `${queue}: ${count}`)
    .join(', ');
  const verb = report.dryRun ? 'would move' : 'moved';
  const out = [
    `${report.dlq}${report.dryRun ? ' (dry run, nothing changed)' : ''}: ${verb} ${report.moved.length}${targets ? ` (${targets})` : ''}, ` +
      `${report.dryRun ? 'would park' : 'parked'} ${report.parked.length}, skipped ${report.skipped.length}, failed ${report.failed.length}; ` +
      `examined ${report.examined} of ${report.depthBefore}, stopped: ${report.stopped}` +
      (report.depthAfter === null ? '' : `; ${report.depthAfter} left in the DLQ`),
  ];
  const ids = (label: string, list: string[]) => {
    if (list.length > 0) out.push(`  ${label}: ${list.join(', ')}`);
  };
  ids(verb, report.moved);
  ids(report.dryRun ? 'would park' : 'parked', report.parked);
  ids('skipped', report.skipped);
  for (const failure of report.failed) out.push(`  failed ${failure.id}: ${failure.error}`);
  if (report.error && report.failed.length === 0) out.push(`  error: ${report.error}`);
  return out.join('\n');
}

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

const consoleIo: CliIo = { out: (text) => console.log(text), err: (text) => console.error(text) };

/** Runs the command; resolves with the exit code. Never throws for a user error. */
export async function runCli(
  argv: readonly string[],
  io: CliIo = consoleIo,
  options: { config?: Config; signal?: AbortSignal } = {},
): Promise<number> {
  let command: Command;
  let cfg: Config;
  try {
    command = parseCommandLine(argv);
    if (command.command === 'help') {
      io.out(USAGE);
      return EXIT.ok;
    }
    cfg = options.config ?? processConfig();
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`dlq: ${error.message}\n\n${USAGE}`);
      return EXIT.usage;
    }
    if (error instanceof ConfigError) {
      io.err(`dlq: ${error.message}`);
      return EXIT.failed;
    }
    throw error;
  }

  const broker = createBroker(cfg, { connectionName: 'dlq-cli', maxAttempts: cfg.amqpUrls.length });
  const publisher = new Publisher(broker);
  // Log lines go to stderr so that --json output on stdout stays parseable.
  const logger = createLogger({ level: cfg.logLevel === 'info' ? 'warn' : cfg.logLevel, destination: process.stderr });
  const reprocessor = new DlqReprocessor({ broker, publisher, config: cfg, logger });
  try {
    if (command.command === 'list') {
      const listing = await reprocessor.list(parseListRequest(given(command.request)));
      io.out(command.json ? JSON.stringify(listing, null, 2) : formatListing(listing));
      return EXIT.ok;
    }
    const request = parseRedriveRequest(given(command.request));
    const report = await reprocessor.redrive({ ...request, ...(options.signal ? { signal: options.signal } : {}) });
    io.out(command.json ? JSON.stringify(report, null, 2) : formatReport(report));
    return report.failed.length > 0 || report.stopped === 'interrupted' ? EXIT.failed : EXIT.ok;
  } catch (error) {
    if (error instanceof InvalidDlqOptionsError) {
      io.err(`dlq: ${error.issues.map((issue) => `${flag(issue.field)}: ${issue.message}`).join('; ')}\n\n${USAGE}`);
      return EXIT.usage;
    }
    if (error instanceof NotADlqError) {
      io.err(`dlq: ${error.message}`);
      return EXIT.usage;
    }
    if (error instanceof DlqBusyError) {
      io.err(`dlq: ${error.message}`);
      return EXIT.busy;
    }
    io.err(`dlq: ${error instanceof Error ? error.message : String(error)}`);
    return EXIT.failed;
  } finally {
    // Broker first: closing the publisher alone would wait on a connection that is still being retried.
    await broker.close();
    await publisher.close();
  }
}
