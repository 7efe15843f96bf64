/** middy-rabbitmq's in-memory InboxStore: the claim semantics the idempotency middleware relies on. */
import { memoryInboxStore } from 'middy-rabbitmq';
import { describe, expect, it } from 'vitest';

describe('memoryInboxStore', () => {
  it('claims an id once: a committed claim is a duplicate for the next transaction, not for another consumer', async () => {
    const store = memoryInboxStore();
    const first = await store.begin();
    expect(await store.claim(first.tx, 'a', 'm-1')).toBe('claimed');
    expect(await store.claim(first.tx, 'a', 'm-1')).toBe('duplicate');
    await first.commit();
    const second = await store.begin();
    expect(await store.claim(second.tx, 'a', 'm-1')).toBe('duplicate');
    expect(await store.claim(second.tx, 'b', 'm-1')).toBe('claimed');
  });

  it('answers busy while another open transaction holds the claim, and frees it when that one rolls back', async () => {
    const store = memoryInboxStore();
    const holder = await store.begin();
    const other = await store.begin();
    expect(await store.claim(holder.tx, 'a', 'm-1')).toBe('claimed');
    expect(await store.claim(other.tx, 'a', 'm-1')).toBe('busy');
    await holder.rollback();
    expect(await store.claim(other.tx, 'a', 'm-1')).toBe('claimed');
  });

  it('forgets the claims made after a savepoint it rolls back to, and keeps those before it', async () => {
    const store = memoryInboxStore();
    const unit = await store.begin();
    expect(await store.claim(unit.tx, 'a', 'm-1')).toBe('claimed');
    await unit.savepoint('r2');
    expect(await store.claim(unit.tx, 'a', 'm-2')).toBe('claimed');
    await unit.rollbackToSavepoint('r2');
    await unit.commit();
    const next = await store.begin();
    expect(await store.claim(next.tx, 'a', 'm-1')).toBe('duplicate');
    expect(await store.claim(next.tx, 'a', 'm-2')).toBe('claimed');
  });
});
