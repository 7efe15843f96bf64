/**
 * Idempotency in one unit of work per batch. The batch runs in ONE database transaction; each record runs in a
 * savepoint of it, where its message id is claimed in an inbox together with the record handler's own writes.
 * A record that fails rolls back to its savepoint alone (its claim with it) and goes to retry or the DLQ; the
 * others commit together, with their claims, in one commit: a batch of 100 pays one commit, not 100.
 *
 * So a redelivered or duplicated message has exactly one effect: also after a crash between commit and ack
 * (nothing or everything of the batch committed; the redelivery finds the claims), and when two workers get
 * the same message at once (the second claim waits for the first transaction and then finds the id taken).
 * Stronger than Powertools' idempotency utility, whose record lives outside the business transaction. Effects
 * that leave the database (a webhook) are at-least-once: pass the message id along as an idempotency key.
 *
 * A store that can claim many ids in one statement (claimMany) has the first record claim the ids of all the
 * batch's records still to run; such a claim lies outside the record's savepoint, so it is released when its
 * record fails or never reaches the handler (a rejected body), before the commit.
 *
 * The store is pluggable (InboxStore): any database with transactions, savepoints and a unique
 * (consumer, message id) key will do, the transactional way (claims in the handler's own database);
 * memoryInboxStore() keeps them in process memory, for tests and local runs.
 *
 *   const { batch, record } = idempotency({ store: () => openInbox(), consumer: 'inventory-reservation' });
 *   middy(batchHandler).use(batch)  // opens the transaction on the first record, commits after the batch
 *   middy(recordHandler).use(record) // a savepoint and a claim per record
 */
import type middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { MessageInFlightError, MissingMessageIdError } from './errors.js';
import type { DecodedBatch } from './records.js';
import { runInContext } from './tracing/index.js';
import { invocationContext } from './tracing/invocation.js';
import type { QueueRecord, RecordContext, RecordOutcome } from './types.js';

/** A transaction the middleware controls: one per batch, a savepoint per record. */
export interface UnitOfWork<Tx> {
  readonly tx: Tx;
  savepoint(name: string): Promise<void>;
  rollbackToSavepoint(name: string): Promise<void>;
  releaseSavepoint(name: string): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

/** Where claims are kept: a transaction to run the batch in, and claims unique per (consumer, id). */
export interface InboxStore<Tx> {
  /** Begins the batch's transaction. */
  begin(): Promise<UnitOfWork<Tx>>;
  /**
   * Claims `messageId` for `consumer` inside `tx`: `claimed` the first time, `duplicate` when a committed claim
   * exists, `busy` when another open transaction is claiming it (answer at once rather than wait: a batch
   * that waited on another's claims could deadlock with it). `duplicate` and `busy` must leave nothing written:
   * the record's savepoint is not rolled back for them.
   */
  claim(tx: Tx, consumer: string, messageId: string): Promise<Claim>;
  /**
   * Optional, for a store where each statement is a round trip: claims the ids of the batch's records still to
   * run in one go, with the answer per id that `claim` would give. Such a claim is made before the record's
   * savepoint, so the middleware gives it back with `release` when its record fails or never runs.
   */
  claimMany?(tx: Tx, consumer: string, messageIds: readonly string[]): Promise<ReadonlyMap<string, Claim>>;
  /** Deletes claims `claimMany` made in `tx` (required with claimMany). */
  release?(tx: Tx, consumer: string, messageIds: readonly string[]): Promise<void>;
}

/** What claiming a message id found: now ours, taken before, or being claimed by another open transaction. */
export type Claim = 'claimed' | 'duplicate' | 'busy';

export interface IdempotencyOptions<Tx> {
  /** The store, or a function that opens it on first use (a Lambda container reuses it). */
  store: InboxStore<Tx> | (() => Promise<InboxStore<Tx>>);
  /**
   * Name the claims are kept under: one per consuming function, and stable. Renaming the function must not
   * change it, or every message would be processed again under the new name.
   */
  consumer: string;
  /**
   * Runs in the batch's transaction just before it commits (after the records' beforeCommit tasks), e.g. to
   * write what the succeeded records produced in one statement. A throw fails the whole batch.
   */
  onCommitting?: (invocation: Context, tx: Tx) => Promise<void>;
  /** Runs once the batch's transaction has committed (after the records' afterCommit tasks), e.g. to publish. */
  onCommitted?: (invocation: Context) => Promise<void>;
}

type Task = () => Promise<void> | void;

/** One invocation's unit of work: begun by the first record that needs it. */
interface BatchState<Tx> {
  unit: Promise<UnitOfWork<Tx>> | undefined;
  /** beforeCommit tasks of the records that succeeded, in record order. */
  committing: Task[];
  /** afterCommit tasks of the records that succeeded, in record order. */
  tasks: Task[];
  /** The batch's request: its event is the decoded batch by the time the first record runs (rabbitmqRecords). */
  request: { event: unknown };
  /** Answers of claimMany not yet taken by a record; undefined until the first record asks. */
  ahead: Map<string, Claim> | undefined;
}

/** The savepoint a batch's claims made ahead are undone to when their statement fails. */
const CLAIMS_AHEAD = 'claims_ahead';

const inFlight = (messageId: string) =>
  new MessageInFlightError(`Message ${messageId} is being processed by another invocation; trying again later`);

type RecordInternal = { savepoint?: string; claimedAhead?: string; committing?: Task[]; tasks?: Task[] };

export function idempotency<T = unknown, Tx = unknown>(options: IdempotencyOptions<Tx>) {
  const { consumer } = options;
  let store: Promise<InboxStore<Tx>> | undefined;
  const getStore = () => {
    store ??= typeof options.store === 'function' ? options.store() : Promise.resolve(options.store);
    store.catch(() => (store = undefined));
    return store;
  };
  const batches = new WeakMap<Context, BatchState<Tx>>();

  /** The batch's unit of work, begun now if this is the first record to need it. */
  const unitFor = (invocation: Context): Promise<UnitOfWork<Tx>> => {
    const state = batches.get(invocation);
    if (!state) throw new Error('idempotency: the batch middleware is not in the stack (use both `batch` and `record`)');
    // Begun in the invocation's trace context: the batch's transaction belongs to the batch, not to its first record.
    state.unit ??= runInContext(invocationContext(invocation), () => getStore().then((inbox) => inbox.begin()));
    state.unit.catch(() => (state.unit = undefined)); // a failed begin is tried again by the next record
    return state.unit;
  };

  /**
   * With a store that claims many at once: the answers for the ids of this record and the batch's records after
   * it, claimed by the first record that asks (one statement for the batch); undefined without claimMany.
   * If that statement fails (one id the database refuses fails them all), it is undone alone and every record
   * claims its own id as without claimMany: a bad id costs its own record, not the batch.
   */
  const claimsAhead = async (state: BatchState<Tx>, inbox: InboxStore<Tx>, unit: UnitOfWork<Tx>, from: number) => {
    if (!inbox.claimMany || !inbox.release) return undefined;
    if (!state.ahead) {
      const { records } = state.request.event as Partial<DecodedBatch>;
      const ids = (Array.isArray(records) ? records : [])
        .filter((record) => record.index >= from && typeof record.messageId === 'string' && record.messageId !== '')
        .map((record) => record.messageId as string);
      state.ahead = new Map();
      await unit.savepoint(CLAIMS_AHEAD);
      try {
        state.ahead = new Map(await inbox.claimMany(unit.tx, consumer, ids));
      } catch {
        await unit.rollbackToSavepoint(CLAIMS_AHEAD);
      }
    }
    return state.ahead;
  };

  const batch: middy.MiddlewareObj<unknown, unknown, Error, Context> = {
    before: (request) => {
      batches.set(request.context, { unit: undefined, committing: [], tasks: [], request, ahead: undefined });
    },
    after: async (request) => {
      const state = batches.get(request.context);
      batches.delete(request.context);
      const unit = await state?.unit;
      if (!state || !unit) return;
      // Claims made ahead for records that never got to use them (their body was rejected first): given back.
      const unused = [...(state.ahead ?? [])].filter(([, claim]) => claim === 'claimed').map(([id]) => id);
      if (unused.length > 0) await (await getStore()).release?.(unit.tx, consumer, unused);
      for (const task of state.committing) await task();
      await options.onCommitting?.(request.context, unit.tx);
      await unit.commit();
      const log = (request.context as Context & { logger?: { warn(o: object, m: string): void } }).logger;
      // The batch's effects are committed: what runs after must not fail the batch.
      for (const task of state.tasks) {
        try {
          await task();
        } catch (error) {
          log?.warn({ err: error }, 'after-commit task failed');
        }
      }
      await options.onCommitted?.(request.context).catch((error: unknown) => log?.warn({ err: error }, 'after-commit step failed'));
    },
    onError: async (request) => {
      const state = batches.get(request.context);
      batches.delete(request.context);
      const unit = await state?.unit?.catch(() => undefined);
      await unit?.rollback().catch(() => undefined); // the batch's own error is what counts
    },
  };

  type Request = middy.Request<QueueRecord<T>, unknown, Error, RecordContext<Tx>, RecordInternal>;

  const before = async (request: Request): Promise<RecordOutcome | undefined> => {
    const { messageId, index } = request.event;
    if (!messageId) throw new MissingMessageIdError('Message has no messageId; it cannot be processed exactly once');
    const inbox = await getStore();
    const { invocation } = request.context;
    const unit = await unitFor(invocation);
    const ahead = await claimsAhead(batches.get(invocation)!, inbox, unit, index);
    const answer = ahead?.get(messageId);
    // An answer is taken once: a second record with the same id claims on its own (and finds this one's claim).
    if (answer === 'busy' || answer === 'duplicate') ahead!.delete(messageId);
    if (answer === 'busy') throw inFlight(messageId);
    if (answer === 'duplicate') return { outcome: 'duplicate' }; // early response: the handler does not run
    const savepoint = `record_${index}`;
    await unit.savepoint(savepoint);
    request.internal.savepoint = savepoint;
    if (answer === 'claimed') {
      // Taken only now that the savepoint exists: from here on, a failure of this record gives the claim back.
      ahead!.delete(messageId);
      request.internal.claimedAhead = messageId;
    } else {
      const claim = await inbox.claim(unit.tx, consumer, messageId);
      if (claim === 'busy') throw inFlight(messageId);
      if (claim === 'duplicate') {
        // The claim wrote nothing: there is nothing to roll back, and the savepoint can stay (see `after`).
        request.internal.savepoint = undefined;
        return { outcome: 'duplicate' }; // early response: the handler does not run
      }
    }
    const committing: Task[] = [];
    const tasks: Task[] = [];
    request.internal.committing = committing;
    request.internal.tasks = tasks;
    request.context.tx = unit.tx;
    request.context.beforeCommit = (task) => committing.push(task);
    request.context.afterCommit = (task) => tasks.push(task);
    return undefined;
  };

  // A succeeded record's savepoint is not released: that would be one more round trip per record for nothing.
  // Nothing rolls back to it any more, and the commit ends it with the rest (as the release would have).
  const after = async (request: Request): Promise<void> => {
    const { savepoint, committing = [], tasks = [] } = request.internal;
    if (!savepoint) return;
    request.internal.savepoint = undefined;
    request.internal.claimedAhead = undefined;
    const state = batches.get(request.context.invocation);
    state?.committing.push(...committing);
    state?.tasks.push(...tasks);
    request.response = { outcome: 'processed', result: request.response };
  };

  // Undoes exactly this record's writes and claim. Safe when `before` never got as far as its savepoint.
  // If the rollback itself fails the transaction cannot be trusted: that error fails the whole batch.
  const onError = async (request: Request): Promise<void> => {
    const { savepoint, claimedAhead } = request.internal;
    if (!savepoint) return;
    request.internal.savepoint = undefined;
    request.internal.claimedAhead = undefined;
    const unit = await unitFor(request.context.invocation);
    await unit.rollbackToSavepoint(savepoint);
    await unit.releaseSavepoint(savepoint);
    // A claim made ahead of the savepoint is not undone by it.
    if (claimedAhead !== undefined) await (await getStore()).release?.(unit.tx, consumer, [claimedAhead]);
  };

  const record = { before, after, onError } as middy.MiddlewareObj<QueueRecord<T>, unknown, Error, RecordContext<Tx>>;
  return { batch, record };
}
