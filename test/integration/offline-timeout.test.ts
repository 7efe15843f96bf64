/**
 * serverless offline runs the functions with `noTimeout` (serverless.yml): a function past its timeout is left to
 * finish instead of having its worker thread terminated. Terminating a worker while it is inside a better-sqlite3
 * call that fails (SQLITE_BUSY while another connection writes) aborts the whole process: better-sqlite3 12, the
 * last line for Node 20, builds its error object in the terminating isolate ("FATAL ERROR: v8::ToLocalChecked
 * Empty MaybeLocal"). That took `npm start` down in CI's broker-outage test, where cold starts on a loaded machine
 * outlived orderIntake's timeout while its store waited for SQLite's lock.
 *
 * Here, in a copy of the service with one more function: `spin` (timeout 1 s, no middy, so nothing answers before
 * serverless-offline's own timer) tries to take the SQLite file's write lock again and again for 3 s in one
 * synchronous loop while the test holds that lock. Without `noTimeout` its worker is terminated at 1 s (the request
 * gets serverless-offline's LambdaTimeoutError) and, whenever the termination lands inside a failing call rather
 * than between two, the whole process aborts (a loop like this one in a plain worker thread aborts on every
 * termination). With it, the function runs to its end and answers.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyService, type Offline, startOffline } from '../support/offline';
import { createVhost, type TestVhost } from '../support/vhost';

const SPIN_FUNCTION = `spin:
  handler: handlers/spin.handler
  timeout: 1
  events:
    - httpApi: { method: GET, path: /spin }
`;

const SPIN_HANDLER = `import Database from 'better-sqlite3';

export const handler = async () => {
  const db = new Database(process.env.SQLITE_PATH!, { timeout: 0 });
  let busy = 0;
  for (const until = Date.now() + 3_000; Date.now() < until; ) {
    try {
      db.exec('begin immediate');
      db.exec('commit');
    } catch {
      busy++;
    }
  }
  db.close();
  return { statusCode: 200, body: JSON.stringify({ busy }) };
};
`;

describe('a function past its timeout under serverless offline', () => {
  let parent: string;
  let sqlitePath: string;
  let vhost: TestVhost;
  let offline: Offline;

  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), 'offline-timeout-'));
    const dir = await copyService(parent);
    await writeFile(join(dir, 'functions/spin.yml'), SPIN_FUNCTION);
    await writeFile(join(dir, 'handlers/spin.ts'), SPIN_HANDLER);
    const yml = join(dir, 'serverless.yml');
    const text = await readFile(yml, 'utf8');
    const intake = /^ {2}- \$\{file\(functions\/order-intake\.yml\)\}\n/m;
    expect(text).toMatch(intake);
    await writeFile(
      yml,
      text.replace(intake, (entry) => `${entry}  - \${file(functions/spin.yml)}\n`),
    );
    sqlitePath = join(parent, 'app.sqlite');
    vhost = await createVhost('offline-timeout');
    offline = await startOffline({ AMQP_URL: vhost.url, SQLITE_PATH: sqlitePath }, { cwd: dir });
  }, 240_000);

  afterAll(async () => {
    await offline?.stop();
    await vhost?.remove();
    await rm(parent, { recursive: true, force: true });
  });

  it('is left to finish, inside a failing better-sqlite3 call, and serverless offline keeps serving', async () => {
    const holder = new Database(sqlitePath, { timeout: 0 });
    holder.exec('begin immediate'); // another program holds the write lock
    try {
      const response = await fetch(`${offline.api}/spin`);
      const body = (await response.json()) as { busy?: number };
      expect(response.status).toBe(200);
      expect(body.busy).toBeGreaterThan(0); // it spun on SQLITE_BUSY past its 1 s timeout
    } finally {
      holder.exec('commit');
      holder.close();
    }
    expect(offline.process.exitCode).toBeNull();
    expect((await fetch(`${offline.api}/health`)).status).toBe(200);
  }, 60_000);
});
