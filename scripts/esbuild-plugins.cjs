'use strict';
/**
 * esbuild plugins for serverless-esbuild (serverless.yml `custom.esbuild.plugins`). CommonJS because
 * serverless-esbuild loads this file with require().
 *
 * zod-without-locales: `import { z } from 'zod'` keeps every one of zod's translated error-message packs
 * (`z.locales`, about 260 KB minified, a quarter of each function's bundle) because the namespace object
 * cannot be tree-shaken. English, the default, is registered by zod's schemas module itself and stays; only
 * the `z.locales` namespace is emptied. Code that calls `z.config(z.locales.xx())` must import that locale
 * directly (`import xx from 'zod/v4/locales/xx.js'`).
 */
const zodLocaleIndex = /[\\/]node_modules[\\/]zod[\\/]v4[\\/](classic|core|mini)[\\/]/;

const zodWithoutLocales = {
  name: 'zod-without-locales',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      zodLocaleIndex.test(args.importer) ? { path: 'zod-locales', namespace: 'zod-without-locales' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'zod-without-locales' }, () => ({ contents: 'export {};', loader: 'js' }));
  },
};

/**
 * console-assets: the DLQ reprocessor serves the web console (shared/console). Its module assets.ts builds the
 * browser assets with esbuild when run from source; in a bundle it is replaced by the assets built here, at
 * bundle time, so the function's zip carries them as strings (imported lazily: /console only) and no esbuild.
 */
const consoleAssetsModule = /[\\/]shared[\\/]console[\\/]assets\.ts$/;

const consoleAssets = {
  name: 'console-assets',
  setup(build) {
    build.onLoad({ filter: consoleAssetsModule }, async () => {
      const { pathToFileURL } = require('node:url');
      const { join } = require('node:path');
      const { buildConsoleAssets } = await import(pathToFileURL(join(__dirname, '../shared/console/build-assets.mjs')).href);
      const assets = await buildConsoleAssets();
      return { contents: `export const consoleAssets = async () => (${JSON.stringify(assets)});`, loader: 'js' };
    });
  },
};

/**
 * opentelemetry-esm: under the `tracing` stage param the OpenTelemetry SDK and OTLP exporter are bundled
 * (scripts/esbuild-external.cjs). On platform node esbuild takes a package's `main` (CommonJS) before its
 * `module` (ESM), and CommonJS cannot be tree-shaken: the OTLP transformer's index would bring the metrics and
 * logs SDKs and their serializers along. This resolves the OpenTelemetry packages that have no `exports` map to
 * their ESM build (they declare `sideEffects: false`), so only what trace export uses is bundled. The API
 * (`@opentelemetry/api`, bundled always and registered globally) and packages marked external are left alone.
 */
const { dirname, join } = require('node:path');
const { readFileSync } = require('node:fs');

const openTelemetryEsm = {
  name: 'opentelemetry-esm',
  setup(build) {
    const external = new Set(build.initialOptions.external ?? []);
    build.onResolve({ filter: /^@opentelemetry\/[^/]+$/ }, async (args) => {
      if (args.path === '@opentelemetry/api' || external.has(args.path)) return undefined;
      const manifest = await build.resolve(`${args.path}/package.json`, { kind: args.kind, resolveDir: args.resolveDir });
      if (manifest.errors.length) return undefined;
      const pkg = JSON.parse(readFileSync(manifest.path, 'utf8'));
      if (pkg.exports || typeof pkg.module !== 'string') return undefined;
      return { path: join(dirname(manifest.path), pkg.module) };
    });
  },
};

/**
 * function-chunks: what a function loads only when it needs it (`await import(...)`: the store's kysely and
 * PostgreSQL driver, amqplib, the console, the OpenTelemetry SDK) goes to chunk files of its own instead of
 * the function's bundle, so a cold start neither parses nor compiles it: Node reads a chunk on first use. The
 * chunks of `handlers/order-intake.ts` are `handlers/order-intake.chunks/*.mjs`: serverless-esbuild packs each
 * function with every file of the build except the other functions' `<bundle>.*` files, so a function's zip
 * carries its own chunks and no other function's (test/integration/package-report.test.ts). serverless-esbuild
 * builds one entry point per esbuild build, which is what this applies to.
 */
const functionChunks = {
  name: 'function-chunks',
  setup(build) {
    const options = build.initialOptions;
    const entries = Array.isArray(options.entryPoints) ? options.entryPoints : [];
    if (options.format !== 'esm' || entries.length !== 1 || typeof entries[0] !== 'string') return;
    const name = entries[0].replace(/^.*[\\/]/, '').replace(/\.[^.]+$/, '');
    options.splitting = true;
    options.chunkNames = `${name}.chunks/[name]-[hash]`;
  },
};

module.exports = [zodWithoutLocales, consoleAssets, openTelemetryEsm, functionChunks];
