/** INBOX_RETENTION_DAYS and OUTBOX_RETENTION_DAYS (shared/store/retention.ts): defaults, 0, and values refused with the setting named. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../shared/config';

describe('retention settings', () => {
  it('keeps inbox claims and published outbox rows 7 days unless told otherwise; 0 keeps them for ever', () => {
    expect(loadConfig({}).retention).toEqual({ inboxDays: 7, outboxDays: 7 });
    expect(loadConfig({ INBOX_RETENTION_DAYS: '30', OUTBOX_RETENTION_DAYS: '0' }).retention).toEqual({ inboxDays: 30, outboxDays: 0 });
  });

  it.each([
    ['INBOX_RETENTION_DAYS', '-1'],
    ['INBOX_RETENTION_DAYS', '1.5'],
    ['OUTBOX_RETENTION_DAYS', 'a week'],
  ])('refuses %s=%s, naming it', (setting, value) => {
    expect(() => loadConfig({ [setting]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [setting]: value })).toThrow(setting);
  });
});
