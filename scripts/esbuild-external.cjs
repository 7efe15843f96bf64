'use strict';
/**
 * serverless.yml `custom.esbuild.external`: what stays out of every function's bundle. `exclude: ['*']` ships no
 * node_modules, so an external package is absent from the deployed zip and can only be loaded where the code
 * copes with its absence. CommonJS because the Serverless Framework loads `${file(...)}` scripts with require().
 *
 * - better-sqlite3 (native) is the local store only; the store loads it on first use. pg-native is optional for pg.
 * - fastify's schema compilers (ajv, fast-json-stringify) are never loaded: the HTTP apps validate with zod and
 *   give fastify compilers that refuse a route schema (shared/http/app.ts).
 * - The OpenTelemetry SDK, resources and OTLP/HTTP exporter are imported (dynamically) only when OTEL_* asks for
 *   export (shared/middleware/tracing/export.ts, in middy-rabbitmq). By default they stay out, so the zips stay lean and a deployed function
 *   asked to export only warns. With the stage param `tracing` true (`--param="tracing=true"`) they are bundled:
 *   the dynamic import then resolves to code inside the bundle, evaluated only when export starts, so a deployed
 *   function exports its spans; the zips grow (the package report budgets that variant apart).
 */
const ALWAYS = ['better-sqlite3', 'pg-native', '@fastify/ajv-compiler', '@fastify/fast-json-stringify-compiler'];

/** The packages middy-rabbitmq's tracing/export.ts imports, bundled only under the `tracing` param. */
const TRACING_EXPORT = ['@opentelemetry/sdk-trace-base', '@opentelemetry/resources', '@opentelemetry/exporter-trace-otlp-http'];

module.exports = async ({ resolveVariable }) => {
  const tracing = String(await resolveVariable('param:tracing'))
    .trim()
    .toLowerCase();
  if (tracing !== 'true' && tracing !== 'false') throw new Error(`param tracing must be true or false, not '${tracing}'`);
  return tracing === 'true' ? ALWAYS : [...ALWAYS, ...TRACING_EXPORT];
};
