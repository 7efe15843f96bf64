/**
 * Every committed fixture through `npm run invoke` (scripts/invoke.ts), as a user runs it, and one through
 * `serverless invoke local`; bad input gets a clear message, not a stack trace.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { openTestAmqp, purgeQueues } from '../support/amqp';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'invoke-'));
const env = {
  ...process.env,
  SQLITE_PATH: join(dir, 'app.sqlite'),
  LOG_LEVEL: 'error',
  RETRY_DELAYS_MS: '100,200',
  ADMIN_TOKEN: 'replace-with-your-admin-token', // what the DLQ fixtures carry
};
/** fixtures/<folder> belongs to the function with this key in functions/*.yml. */
const FUNCTIONS: Record<string, string> = {
  'order-intake': 'orderIntake',
  'inventory-reservation': 'inventoryReservation',
  notification: 'notification',
  'order-status': 'orderStatus',
  'dlq-reprocessor': 'dlqReprocessor',
  'dlq-redrive-job': 'dlqRedriveJob',
};
const fixtures = Object.entries(FUNCTIONS).flatMap(([folder, fn]) =>
  readdirSync(join(ROOT, 'fixtures', folder))
    .filter((file) => file.endsWith('.json'))
    .map((file) => ({ fn, fixture: `fixtures/${folder}/${file}` })),
);

const invoke = (...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', 'scripts/invoke.ts', ...args], { cwd: ROOT, env, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );

describe('invoking handlers with fixtures', () => {
  afterAll(async () => {
    const amqp = await openTestAmqp();
    await new Promise((done) => setTimeout(done, 400)); // retried fixture messages come back after their delay
    // dlq-redrive-jobs: the redrive fixture's job, which no trigger runs here.
    await purgeQueues(amqp.connection, ['order-events', 'order-events-dlq', 'inventory-events', 'order-status-events', 'dlq-redrive-jobs']);
    await amqp.close();
  });

  it('covers every function', () => {
    expect(new Set(fixtures.map((f) => f.fn))).toEqual(new Set(Object.values(FUNCTIONS)));
  });

  it.each(fixtures)(
    'npm run invoke -- $fn $fixture prints the handler result',
    async ({ fn, fixture }) => {
      const { code, stdout, stderr } = await invoke(fn, fixture);
      expect(stderr).not.toMatch(/invoke: /);
      expect(code).toBe(0);
      const result = JSON.parse(stdout) as Record<string, unknown>;
      // Queue functions report their batch; HTTP functions answer an API Gateway response, never a 5xx.
      if ('statusCode' in result) expect(Number(result.statusCode)).toBeLessThan(500);
      else expect(result).toMatchObject({ records: expect.any(Number) });
    },
    60_000,
  );

  it('names an unknown function and a malformed fixture instead of printing a stack trace', async () => {
    const unknown = await invoke('nope', 'fixtures/order-intake/health.json');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown function 'nope'\. Functions: .*orderIntake/);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"eventSource": "aws:rmq",');
    const malformed = await invoke('notification', broken);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/is not valid JSON/);
    expect(malformed.stderr).not.toMatch(/\n\s+at /);
  }, 60_000);

  it('runs the same fixture with serverless invoke local', async () => {
    const { stdout } = await run(
      process.execPath,
      ['node_modules/osls/bin/serverless.js', 'invoke', 'local', '-f', 'notification', '-p', 'fixtures/notification/inventory-failed.json'],
      { cwd: ROOT, env: { ...env, CI: 'true' }, timeout: 120_000 },
    );
    expect(stdout).toMatch(/"records": 1/);
  }, 150_000);
});
