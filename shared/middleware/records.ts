/**
 * Records: the batch-level middleware that decodes the `aws:rmq` event into QueueRecords, and
 * `forEachRecord`, the base handler that runs a per-record pipeline for each of them in order, so one
 * record's failure does not fail the others. Only an error the per-record pipeline could not make safe
 * (a dead letter that was not confirmed) escapes and fails the batch, so that the broker redelivers it.
 *
 *   middy<RabbitMQEvent>().use(rabbitmqRecords()).handler(forEachRecord(perRecordPipeline))
 */
import type middy from '@middy/core';
import type { Context } from 'aws-lambda';
import type { Logger } from 'pino';
import { attemptOf } from './headers.js';
import { defaultLogger } from './logging.js';
import { decodeRabbitMQEvent, type RabbitMQEvent } from './rmq-event/index.js';
import { bindSpanToLogger, runInContext } from './tracing/index.js';
import { endRecordSpan, startRecordSpan } from './tracing/invocation.js';
import type { BatchReport, QueueRecord, RecordContext, RecordOutcome } from './types.js';

/** What the base handler receives once `rabbitmqRecords` has run. */
export interface DecodedBatch {
  source: RabbitMQEvent;
  records: QueueRecord[];
}

/** Reads the attempt header; anything missing or odd counts as a first delivery. */
export { attemptOf } from './headers.js';

/** Decodes the `aws:rmq` event (throws InvalidRabbitMQEventError for one that is not). */
export function toQueueRecords(event: unknown): QueueRecord[] {
  return decodeRabbitMQEvent(event).map((record, index) => ({
    index,
    queue: record.queue,
    vhost: record.vhost,
    redelivered: record.redelivered,
    attempt: attemptOf(record.properties.headers),
    messageId: record.properties.messageId,
    correlationId: record.properties.correlationId,
    properties: record.properties,
    headers: record.properties.headers ?? {},
    body: record.body,
    payload: undefined,
  }));
}

/** Middleware: replaces the raw `aws:rmq` event with the decoded batch. */
export function rabbitmqRecords(): middy.MiddlewareObj<RabbitMQEvent, unknown> {
  return {
    before: (request) => {
      const source = request.event;
      (request as { event: unknown }).event = { source, records: toQueueRecords(source) } satisfies DecodedBatch;
    },
  };
}

/** A per-record pipeline: a middy instance of the record middlewares around a record handler. */
export type RecordPipeline = (
  record: QueueRecord<never>,
  context: RecordContext<never>,
  options: { signal: AbortSignal },
) => Promise<unknown>;

/**
 * Base handler: runs `pipeline` for each record in delivery order and reports the outcomes. Typed on the
 * raw event because that is what middy's types carry; `rabbitmqRecords` has replaced it by the time it runs.
 */
export function forEachRecord(pipeline: RecordPipeline) {
  return async (event: RabbitMQEvent, context: Context & { logger?: Logger }): Promise<BatchReport> => {
    const batch = event as unknown as DecodedBatch;
    const report: BatchReport = { records: batch.records.length, processed: 0, duplicates: 0, retried: 0, deadLettered: 0 };
    const counters: Record<RecordOutcome['outcome'], keyof BatchReport> = {
      processed: 'processed',
      duplicate: 'duplicates',
      retried: 'retried',
      'dead-lettered': 'deadLettered',
    };
    for (const record of batch.records) {
      // The record's span continues the trace its message carries; the record runs with it active.
      const traced = startRecordSpan(record, context);
      const logger = (context.logger ?? defaultLogger()).child({
        messageId: record.messageId,
        queue: record.queue,
        attempt: record.attempt,
        correlationId: record.correlationId,
      });
      // The record's own logger: the span is bound to it, not to a further child (a pino child of a child costs
      // several times a child's setup, for every record).
      bindSpanToLogger(logger, traced.span);
      const started = performance.now();
      // The record's own context: the invocation's fields, its logger, and a link to the invocation's context
      // (what batch-level middleware keys its state by); the middleware adds tx and afterCommit.
      const recordContext = { ...context, logger, invocation: context } as unknown as RecordContext<never>;
      let result: RecordOutcome;
      try {
        result = (await runInContext(traced.context, () =>
          pipeline(record as QueueRecord<never>, recordContext, { signal: new AbortController().signal }),
        )) as RecordOutcome;
      } catch (error) {
        endRecordSpan(traced.span, undefined, error);
        throw error;
      }
      endRecordSpan(traced.span, result as { outcome: string; error?: string });
      report[counters[result.outcome]]++;
      const { outcome, ...details } = result;
      logger[outcome === 'processed' || outcome === 'duplicate' ? 'info' : 'warn'](
        { outcome, ...details, durationMs: Math.round((performance.now() - started) * 10) / 10 },
        'record handled',
      );
    }
    return report;
  };
}
