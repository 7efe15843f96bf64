import type { KnipConfig } from 'knip';

/**
 * What knip starts from when it looks for unused files, exports and dependencies: every way code in this
 * repository is run. Knip's own plugins add what they read themselves: the package.json scripts (tsx
 * rabbitmq-trigger-worker, patch-package, biome, ...), vitest.config.ts, and serverless.yml (osls plugin: the
 * functions' handlers and the `plugins:` list: serverless-offline-rabbitmq, serverless-esbuild and
 * serverless-offline), so those are not repeated here. The two workspace packages (shared/middleware,
 * shared/runner) are entered through their package.json `exports` and `bin`, which knip maps from dist/ back to
 * their sources: everything their entries export is public API, for users outside this repository.
 */
const config: KnipConfig = {
  workspaces: {
    '.': {
      entry: [
        // The Lambda functions (functions/*.yml `handler:`), also found by the osls plugin.
        'handlers/*.ts',
        // serverless.yml custom.rabbitmqTrigger.hooks: loaded by path by the runner (shared/runner/settings.ts).
        'shared/app/runner-hooks.ts',
        // npm run migrate / topology / dlq.
        'shared/*/cli.ts',
        // npm run start / status / package / event / invoke, and the files serverless.yml reads with
        // ${file(...)} (deploy-vpc.cjs) and custom.esbuild.plugins (esbuild-plugins.cjs).
        'scripts/*.{ts,cjs}',
        // npm run bench:*, and bench/noop-handler.ts, which bench/runner.ts bundles by handler name.
        'bench/*.ts',
        // The trivial service bench/http.ts starts with `serverless offline start` (its serverless.yml names it).
        'bench/offline-service/*.mjs',
        'test/**/*.test.ts',
        // The console's browser script: bundled for the page by shared/console/build-assets.mjs, imported by nothing.
        'shared/console/web/main.ts',
        // Spawned as a child process (node --import tsx) by test/integration/middleware.test.ts.
        'test/support/crash-worker.ts',
        // Spawned (spawnWorker's `script`) by test/integration/dlq-app.test.ts, which SIGKILLs it mid-job.
        'test/support/redrive-job-worker.ts',
        // The service test/integration/offline-plugin.test.ts runs `serverless offline start` in.
        'test/fixtures/**/*.mjs',
      ],
      // Run from PATH, installed with RabbitMQ itself (scripts/start.ts starts a broker), not an npm package. The
      // tests' rabbitmqctl calls are in code knip does not read as commands (test/support/broker-control.ts).
      ignoreBinaries: ['rabbitmq-server'],
    },
    'shared/middleware': {
      // Optional peer dependencies, imported only when asked for: the OpenTelemetry SDK and OTLP exporter when
      // OTEL_EXPORTER_OTLP_ENDPOINT is set, Powertools Metrics by the cloudWatchMetrics middleware, pino-pretty
      // when log-format's prettyDestination is chosen (a terminal, LOG_FORMAT=pretty).
      ignoreDependencies: [
        '@aws-lambda-powertools/metrics',
        '@opentelemetry/exporter-trace-otlp-http',
        '@opentelemetry/resources',
        '@opentelemetry/sdk-trace-base',
        'pino-pretty',
      ],
    },
    'shared/runner': {},
  },
};

export default config;
