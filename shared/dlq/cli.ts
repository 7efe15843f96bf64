/**
 * `npm run dlq`: the DLQ reprocessor from the command line. See command.ts for usage and exit codes.
 *
 *   npm run dlq -- list
 *   npm run dlq -- redrive --queue order-events-dlq --limit 10 --rate 2 --error-class transient --dry-run
 */
import { EXIT, runCli } from './command';

const abort = new AbortController();
process.once('SIGINT', () => {
  console.error('dlq: stopping after the current message (Ctrl-C again to quit at once; nothing is lost)');
  abort.abort();
  process.once('SIGINT', () => process.exit(130));
});

runCli(process.argv.slice(2), undefined, { signal: abort.signal }).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`dlq: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = EXIT.failed;
  },
);
