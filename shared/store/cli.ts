/**
 * `npm run migrate`: opens the store, which brings its schema up to date, says where, and exits.
 * Uses DATABASE_URL when set, else the SQLite file at SQLITE_PATH. On failure: one line on stderr, exit 1.
 */
import { describeError } from './errors';
import { openStore } from './index';

try {
  const store = await openStore();
  const applied = store.appliedMigrations;
  const what = applied.length > 0 ? `applied ${applied.join(', ')}` : 'schema already up to date';
  console.log(`Store ready: ${store.describe()} (${what})`);
  await store.close();
} catch (error) {
  console.error(`Store not ready: ${describeError(error)}`);
  process.exitCode = 1;
}
