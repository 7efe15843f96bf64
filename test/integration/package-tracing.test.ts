/**
 * A deployment packaged with the `tracing` stage param (`npm run package -- --param="tracing=true"`) carries the
 * OpenTelemetry SDK and OTLP/HTTP exporter in its bundles, so a deployed function given
 * OTEL_EXPORTER_OTLP_ENDPOINT exports its spans; and every minified bundle keeps its class names, so the logs
 * name an error by its class. One package run: orderIntake's zip unzipped alone (no node_modules) and invoked
 * in a fresh Node.js process with committed fixtures, against an OTLP endpoint served by this test.
 */

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readEntry, zipEntries } from '../../scripts/lib/zip';
import { type Invocation, invokePackaged, type PackageRun, packageService } from '../support/packaged';
import { freePort } from '../support/ports';

/** OTLP/HTTP JSON (ExportTraceServiceRequest), as far as these tests read it. */
interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: OtlpValue }>;
}
interface OtlpRequest {
  resourceSpans: Array<{
    resource: { attributes: Array<{ key: string; value: OtlpValue }> };
    scopeSpans: Array<{ spans: OtlpSpan[] }>;
  }>;
}

const attribute = (attributes: OtlpSpan['attributes'], key: string) => {
  const value = attributes.find((a) => a.key === key)?.value;
  return value?.stringValue ?? (value?.intValue === undefined ? undefined : Number(value.intValue));
};

/** OTLP's span kind SERVER. */
const SERVER = 2;

describe('npm run package with the tracing param', () => {
  const dir = mkdtempSync(join(tmpdir(), 'package-tracing-'));
  const received: Array<{ method: string; url: string; headers: IncomingHttpHeaders; body: string }> = [];
  let collector: Server;
  let run: PackageRun;
  let invocation: Invocation;
  let otlpEndpoint: string;

  beforeAll(async () => {
    collector = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        received.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, body });
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    otlpEndpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
    // A stage of its own: its esbuild work folder (.esbuild/<stage>) is not the one `npm run package` uses. The
    // endpoint reaches the function's environment through the otlpEndpoint param, as in a deployment.
    run = await packageService(dir, ['--stage', 'tracing', '--param=tracing=true', `--param=otlpEndpoint=${otlpEndpoint}`, '--runs', '1']);
    expect(run.exitCode, run.output).toBe(0);
    // Broker and database down (nothing listens there): the invalid order needs neither, and GET /health
    // reports both down, logging each failure with its error.
    const closed = await freePort();
    invocation = await invokePackaged(
      run.packageDir,
      'orderIntake',
      ['fixtures/order-intake/post-order-invalid.json', 'fixtures/order-intake/health.json'],
      {
        AMQP_URL: `amqp://127.0.0.1:${closed}`,
        DATABASE_URL: `postgres://app:secret@127.0.0.1:${closed}/app`,
        LOG_LEVEL: 'info',
      },
    );
    expect(invocation.exitCode, invocation.output).toBe(0);
  }, 360_000);

  afterAll(async () => {
    await new Promise((resolve) => collector?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('bundles the SDK and OTLP exporter into the zips, which stay under 1 MB', () => {
    for (const f of run.report.functions) {
      expect(f.bundled, f.function).toEqual(
        expect.arrayContaining(['@opentelemetry/sdk-trace-base', '@opentelemetry/resources', '@opentelemetry/exporter-trace-otlp-http']),
      );
      // Only what trace export needs: the OTLP transformer's metrics and logs halves are left out.
      expect(f.bundled, f.function).not.toContain('@opentelemetry/sdk-metrics');
      expect(f.bundled, f.function).not.toContain('@opentelemetry/sdk-logs');
      expect(f.entries, f.function).not.toContainEqual(expect.stringMatching(/node_modules/));
      expect(f.zipBytes, f.function).toBeLessThan(1_000_000);
      expect(f.importError, f.function).toBeNull();
    }
  });

  it('exports the request spans of a deployed function to OTEL_EXPORTER_OTLP_ENDPOINT as OTLP/HTTP JSON', () => {
    const template = JSON.parse(readFileSync(join(run.packageDir, 'cloudformation-template-update-stack.json'), 'utf8')) as {
      Resources: Record<string, { Type: string; Properties: { Environment?: { Variables?: Record<string, string> } } }>;
    };
    for (const resource of Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Function')) {
      expect(resource.Properties.Environment?.Variables?.OTEL_EXPORTER_OTLP_ENDPOINT).toBe(otlpEndpoint);
    }
    expect(invocation.results).toMatchObject([{ statusCode: 400 }, { statusCode: 503 }]);
    expect(invocation.output).not.toContain('TRACING_EXPORT_UNAVAILABLE');
    const traces = received.filter((r) => r.url === '/v1/traces');
    expect(traces.length, JSON.stringify(received.map((r) => r.url))).toBeGreaterThan(0);
    for (const r of traces) {
      expect(r.method).toBe('POST');
      expect(r.headers['content-type']).toMatch(/^application\/json/);
    }
    const requests = traces.map((r) => JSON.parse(r.body) as OtlpRequest);
    const resources = requests.flatMap((r) => r.resourceSpans);
    for (const resource of resources) expect(attribute(resource.resource.attributes, 'service.name')).toBe('rabbit-functions');
    const spans = resources.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
    const server = spans.filter((s) => s.kind === SERVER);
    expect(server.map((s) => [s.name, attribute(s.attributes, 'http.response.status_code')])).toEqual(
      expect.arrayContaining([
        ['POST /order', 400],
        ['GET /health', 503],
      ]),
    );
    for (const span of server) expect(attribute(span.attributes, 'faas.name')).toBe('order-intake');
    // The trace a log line names is the one exported.
    const completed = invocation.logs.filter((l) => l.message === 'request completed');
    expect(completed).toHaveLength(2);
    for (const line of completed) {
      expect(server.map((s) => s.traceId)).toContain(line.trace_id);
      expect(server.map((s) => s.spanId)).toContain(line.span_id);
    }
  });

  it("logs errors with their class names from a minified bundle (esbuild's keepNames)", () => {
    const data = readFileSync(join(run.packageDir, 'orderIntake.zip'));
    const bundle = readEntry(data, zipEntries(data).find((e) => e.name === 'handlers/order-intake.mjs')!).toString('utf8');
    // Minified: a few very long lines.
    expect(bundle.length / bundle.split('\n').length).toBeGreaterThan(1_000);
    const errors = invocation.logs
      .filter((l) => l.level === 'warn' && typeof l.err === 'object' && l.err !== null)
      .map((l) => (l.err as { type?: string }).type);
    expect(errors.sort()).toEqual(['BrokerDownError', 'StoreError']);
  });
});
