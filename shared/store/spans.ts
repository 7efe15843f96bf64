/** The span of a database transaction (one per order placed, one per queue batch): its name and attributes. */
import { SpanKind } from 'middy-rabbitmq/tracing';
import type { DialectName } from './migrations';

export const TRANSACTION_SPAN = 'db transaction';

export const transactionSpanOptions = (dialect: DialectName) => ({
  kind: SpanKind.CLIENT,
  attributes: { 'db.system.name': dialect === 'postgres' ? 'postgresql' : 'sqlite' },
});
