/**
 * A trigger as AWS reports an event source mapping (GetEventSourceMapping / ListEventSourceMappings): its
 * state, why it is in it, the result of its last processing, and its configuration under AWS's field names.
 *
 * States. AWS documents seven: Creating, Enabling, Enabled, Disabling, Disabled, Updating, Deleting. The local
 * trigger goes through five of them: Creating (defined, not started), Enabling (started, its first consumer not
 * yet in place), Enabled (consuming; it stays Enabled while it reconnects after a lost connection, as an AWS
 * mapping stays Enabled through a broker outage and says so in LastProcessingResult), Disabling (stopping:
 * SIGINT/SIGTERM, the batch in flight finishing) and Disabled (stopped, or `enabled: false`). Updating and
 * Deleting never happen: a local mapping is not changed or deleted while it runs.
 *
 * `Failed` is not one of AWS's states. When AWS meets an unrecoverable error on an Amazon MQ mapping "your
 * Amazon MQ consumer stops processing records" and StateTransitionReason names the cause
 * (https://docs.aws.amazon.com/lambda/latest/dg/services-mq-errors.html), without documenting which state it
 * shows. Issue #13 asks for `Failed` there, so that a trigger that stopped for good can never be read as one
 * that runs: it consumes nothing more until the runner is restarted, and its unstarted messages are back in
 * the queue.
 */
import { createHash } from 'node:crypto';
import type { TriggerDefinition } from './definitions.js';

export type MappingState = 'Creating' | 'Enabling' | 'Enabled' | 'Disabling' | 'Disabled' | 'Updating' | 'Deleting' | 'Failed';

/**
 * AWS's codes (services-mq-errors): USER_INITIATED for a state a user asked for (created, enabled, disabled,
 * stopped); the others for a consumer Lambda stopped.
 * - FUNCTION_CONFIG_NOT_VALID: the function cannot run as configured (its handler does not load three
 *   invocations in a row, or serverless-offline has no such function);
 * - EVENT_SOURCE_AUTHN_ERROR: RabbitMQ refused the login (403 ACCESS_REFUSED at the handshake);
 * - EVENT_SOURCE_AUTHZ_ERROR: RabbitMQ refused what the user may do: consume from the queue (403 on
 *   basic.consume), or open the virtual host (530 NOT_ALLOWED at connection.open);
 * - ESM_CONFIG_NOT_VALID: the mapping's configuration is not valid. Locally every configuration AWS would refuse
 *   (batch size, window, filter patterns) is refused before the runner starts, so no running trigger gets it.
 */
export type StateTransitionReason =
  | 'USER_INITIATED'
  | 'FUNCTION_CONFIG_NOT_VALID'
  | 'EVENT_SOURCE_AUTHN_ERROR'
  | 'EVENT_SOURCE_AUTHZ_ERROR'
  | 'ESM_CONFIG_NOT_VALID';

/** AWS's LastProcessingResult before anything was processed. */
export const NO_RECORDS_PROCESSED = 'No records processed';

/** Running totals of one trigger since it started. */
export interface TriggerCounts {
  /** Records in: every delivery the trigger took from the queue, redeliveries included. */
  received: number;
  invocations: number;
  failedInvocations: number;
  acked: number;
  requeued: number;
  /** Dead-lettered by the trigger itself (unrepresentable or too large), never shown to the function. */
  deadLettered: number;
  /** Matched none of the filter criteria: acked, never invoked (as Lambda discards them). */
  filtered: number;
  /** Rejected without requeue (no dead-letter exchange to publish to, or the publish was unroutable). */
  rejected: number;
}

/** What the local trigger adds to AWS's fields (camelCase, so it is never mistaken for one of them). */
export interface LocalMappingStatus {
  functionKey: string;
  functionName: string;
  /** What the consumer is doing: idle, consuming, recovering (reconnecting), stopping, stopped, failed. */
  consumer: string;
  /** The error behind a Lambda-initiated transition, in words. */
  stateTransitionDetail?: string;
  /** When LastProcessingResult was last set (ISO 8601); absent while it is "No records processed". */
  lastProcessingResultAt?: string;
  /** The wait before the next failed batch goes back to the queue (0 after a success). */
  requeueDelayMs: number;
  concurrency: number;
  counts: TriggerCounts;
}

/** One mapping, with AWS's field names (EventSourceMappingConfiguration) and ours under `Local`. */
export interface EventSourceMappingStatus {
  UUID: string;
  FunctionArn: string;
  EventSourceArn: string;
  Queues: string[];
  SourceAccessConfigurations: Array<{ Type: 'VIRTUAL_HOST'; URI: string }>;
  BatchSize: number;
  MaximumBatchingWindowInSeconds: number;
  FilterCriteria?: { Filters: Array<{ Pattern: string }> };
  State: MappingState;
  StateTransitionReason: StateTransitionReason;
  /** When the state last changed (ISO 8601). */
  LastModified: string;
  /** `OK`, `No records processed`, or `PROBLEM: <what>`. */
  LastProcessingResult: string;
  Local: LocalMappingStatus;
}

/** A name-based UUID (version 5 layout) for the mapping: the same in every process that runs it, across restarts. */
export function mappingUuid(definition: TriggerDefinition): string {
  const hex = createHash('sha1')
    .update(`rabbitmq-trigger:${definition.functionName}\0${definition.queue}\0${definition.virtualHost}`)
    .digest('hex');
  const variant = ((parseInt(hex.charAt(16), 16) & 0x3) | 0x8).toString(16);
  return hex.slice(0, 32).replace(/^(.{8})(.{4}).(.{3}).(.{3})(.{12})$/, `$1-$2-5$3-${variant}$4-$5`);
}

/** The function's ARN, in the event source's region and account (`arn:aws:mq:<region>:<account>:...`). */
export function functionArn(functionName: string, eventSourceArn: string): string {
  const [, , , region, account] = eventSourceArn.split(':');
  return `arn:aws:lambda:${region || 'local-1'}:${account || '000000000000'}:function:${functionName}`;
}

/** The configuration fields of a mapping, as AWS lists them. */
export function mappingConfiguration(
  definition: TriggerDefinition,
  eventSourceArn: string,
): Pick<
  EventSourceMappingStatus,
  | 'UUID'
  | 'FunctionArn'
  | 'EventSourceArn'
  | 'Queues'
  | 'SourceAccessConfigurations'
  | 'BatchSize'
  | 'MaximumBatchingWindowInSeconds'
  | 'FilterCriteria'
> {
  return {
    UUID: mappingUuid(definition),
    FunctionArn: functionArn(definition.functionName, eventSourceArn),
    EventSourceArn: eventSourceArn,
    Queues: [definition.queue],
    SourceAccessConfigurations: [{ Type: 'VIRTUAL_HOST', URI: definition.virtualHost }],
    BatchSize: definition.batchSize,
    MaximumBatchingWindowInSeconds: definition.maximumBatchingWindow,
    ...(definition.filterPatterns?.length
      ? { FilterCriteria: { Filters: definition.filterPatterns.map((pattern) => ({ Pattern: JSON.stringify(pattern) })) } }
      : {}),
  };
}

/** A mapping the runner does not start (`enabled: false`): Disabled, as the user asked. */
export function disabledMapping(definition: TriggerDefinition, eventSourceArn: string, since: Date): EventSourceMappingStatus {
  return {
    ...mappingConfiguration(definition, eventSourceArn),
    State: 'Disabled',
    StateTransitionReason: 'USER_INITIATED',
    LastModified: since.toISOString(),
    LastProcessingResult: NO_RECORDS_PROCESSED,
    Local: {
      functionKey: definition.functionKey,
      functionName: definition.functionName,
      consumer: 'disabled',
      requeueDelayMs: 0,
      concurrency: 0,
      counts: { received: 0, invocations: 0, failedInvocations: 0, acked: 0, requeued: 0, deadLettered: 0, filtered: 0, rejected: 0 },
    },
  };
}

/** An unrecoverable broker refusal, and which code AWS gives it. */
export interface BrokerRefusal {
  reason: 'EVENT_SOURCE_AUTHN_ERROR' | 'EVENT_SOURCE_AUTHZ_ERROR';
  detail: string;
}

/**
 * Whether a failed connection attempt is RabbitMQ refusing us for good, rather than a broker that is away:
 * - the handshake ended with 403 ACCESS_REFUSED: wrong user or password (EVENT_SOURCE_AUTHN_ERROR);
 * - connection.open answered with connection.close: RabbitMQ's 530 NOT_ALLOWED, the user may not open the
 *   virtual host or it does not exist (amqplib keeps only "Expected ConnectionOpenOk; got <ConnectionClose>",
 *   not which): EVENT_SOURCE_AUTHZ_ERROR.
 * Anything else (refused connection, timeout, a hook that failed) is passing: the runner keeps trying.
 */
export function classifyConnectError(error: unknown, url: string): BrokerRefusal | undefined {
  const message = error instanceof Error ? error.message : String(error);
  let user = 'guest';
  let vhost = '/';
  try {
    const parsed = new URL(url);
    user = decodeURIComponent(parsed.username) || 'guest';
    vhost = decodeURIComponent(parsed.pathname.replace(/^\//, '')) || '/';
  } catch {
    // a redacted or odd URL: keep the defaults for the message
  }
  if (/Handshake terminated by server: 403\b|ACCESS.REFUSED - Login was refused/.test(message)) {
    return { reason: 'EVENT_SOURCE_AUTHN_ERROR', detail: `RabbitMQ refused the login of user '${user}': ${message}` };
  }
  if (/Expected ConnectionOpenOk; got <ConnectionClose|530 \(NOT-ALLOWED\)|NOT_ALLOWED - (access to )?vhost/.test(message)) {
    return {
      reason: 'EVENT_SOURCE_AUTHZ_ERROR',
      detail: `RabbitMQ refused user '${user}' the virtual host '${vhost}' (no permission on it, or it does not exist): ${message}`,
    };
  }
  return undefined;
}

/** Whether a failed basic.consume is RabbitMQ refusing the user the queue (403 ACCESS_REFUSED). */
export function isAccessRefused(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === 403 || (typeof message === 'string' && /access_refused|ACCESS_REFUSED/i.test(message));
}
