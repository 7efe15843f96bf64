/**
 * Inbox: exactly-once effects for at-least-once delivery. A consuming function claims a message id inside
 * the same transaction as its own writes; a redelivered or duplicated message finds the claim and skips,
 * and a rolled-back transaction releases the claim with everything else.
 */
import type { Kysely } from 'kysely';
import { type Database, toIso } from './schema';

export class Inbox {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * True for the first claim of `messageId` by `consumer`, false if it was claimed before. On PostgreSQL a
   * concurrent claimer waits until the first transaction ends, then gets false (commit) or true (rollback).
   */
  async claim(consumer: string, messageId: string): Promise<boolean> {
    const result = await this.db
      .insertInto('inbox')
      .values({ consumer, message_id: messageId, processed_at: toIso() })
      .onConflict((oc) => oc.columns(['consumer', 'message_id']).doNothing())
      .executeTakeFirst();
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }
}
