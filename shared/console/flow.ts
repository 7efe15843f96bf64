/**
 * What the console's Flow view shows: the queues as `npm run status` collects them (scripts/lib/status.ts:
 * management API when it answers, else AMQP), and the triggers of the runners on this machine from their status
 * files, reported as `npm run status` reports them. Deployed, there are no local runners (the triggers are AWS's
 * event source mappings), so the list is empty.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { FoundRunnerStatus } from 'serverless-offline-rabbitmq';
import { collectStatus, reportTriggers, type StatusReport, type TriggersReport } from '../../scripts/lib/status';
import type { Config } from '../config';

/**
 * Where `npm start`'s runner keeps its status files: shared/runner's DEFAULT_STATUS_DIR, relative to the service
 * (serverless-offline's working directory). Named here, not imported, so no runner code goes into a Lambda zip.
 */
const STATUS_DIR = '.build/rabbitmq-trigger';
/** A runner rewrites its file every 2 s and removes it when it stops; an older one is a runner that was killed. */
const FRESH_MS = 10_000;

export interface Flow {
  /** The queues, or null with `queuesError` when neither the management API nor AMQP answered. */
  queues: StatusReport | null;
  queuesError: string | null;
  triggers: TriggersReport;
  at: string;
}

/** The status files in `directory` written lately; unreadable or foreign ones are left out. */
function freshRunners(directory: string, now: number): FoundRunnerStatus[] {
  let names: string[] = [];
  try {
    names = readdirSync(directory);
  } catch {
    // No runner ever ran here (a deployed function).
  }
  return names
    .filter((name) => /^\d+\.json$/.test(name))
    .flatMap((name) => {
      try {
        const runner = JSON.parse(readFileSync(join(directory, name), 'utf8')) as FoundRunnerStatus;
        return Array.isArray(runner.EventSourceMappings) && now - Date.parse(runner.updatedAt) < FRESH_MS ? [runner] : [];
      } catch {
        return []; // removed while listing
      }
    })
    .sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.pid - b.pid);
}

export async function collectFlow(config: Config): Promise<Flow> {
  const directory = resolve(STATUS_DIR);
  const triggers = reportTriggers(directory, freshRunners(directory, Date.now()));
  try {
    return { queues: await collectStatus(config), queuesError: null, triggers, at: new Date().toISOString() };
  } catch (error) {
    return { queues: null, queuesError: (error as Error).message, triggers, at: new Date().toISOString() };
  }
}
