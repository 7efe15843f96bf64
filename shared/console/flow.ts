/**
 * What the console's Flow view shows: the queues and the triggers exactly as `npm run status` collects them
 * (scripts/lib/status.ts: management API when it answers, else AMQP; the runners' status files in the
 * service's default status directory), so there is one copy of that logic. Deployed, there are no local runners: the triggers are AWS's event source mappings.
 */
import { collectStatus, type StatusReport, type TriggersReport, triggersIn } from '../../scripts/lib/status';
import type { Config } from '../config';

export interface Flow {
  /** The queues, or null with `queuesError` when neither the management API nor AMQP answered. */
  queues: StatusReport | null;
  queuesError: string | null;
  triggers: TriggersReport;
  at: string;
}

export async function collectFlow(config: Config): Promise<Flow> {
  // The runners of `npm start` keep their status files in the service's directory, serverless-offline's cwd.
  const triggers = triggersIn();
  try {
    return { queues: await collectStatus(config), queuesError: null, triggers, at: new Date().toISOString() };
  } catch (error) {
    return { queues: null, queuesError: (error as Error).message, triggers, at: new Date().toISOString() };
  }
}
