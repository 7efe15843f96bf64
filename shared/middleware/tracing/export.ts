/**
 * The OpenTelemetry SDK with its OTLP/HTTP exporter, imported (dynamically) only when export is configured, so
 * a cold start without it never loads them. A deployment packaged with the `tracing` stage param
 * (`--param="tracing=true"`) bundles them: these imports then resolve to code inside the bundle, evaluated only
 * here. By default they are left out of the zips (`external`, scripts/esbuild-external.cjs), and a deployed
 * function asked to export finds them only where a layer provides them; without them export is off, with a
 * warning, and nothing else changes.
 * A test passes its own exporter (an InMemorySpanExporter), whose spans are handed over as each ends.
 */
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';

export interface Exporting {
  provider: import('@opentelemetry/api').TracerProvider;
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

export async function startExport(options: { serviceName: string; exporter?: SpanExporter | undefined }): Promise<Exporting> {
  const [sdk, resources, otlp] = await Promise.all([
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/resources'),
    options.exporter ? undefined : import('@opentelemetry/exporter-trace-otlp-http'),
  ]);
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the env detector) win over the function's name.
  const resource = resources
    .defaultResource()
    .merge(resources.resourceFromAttributes({ 'service.name': options.serviceName }))
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const processor = options.exporter
    ? new sdk.SimpleSpanProcessor(options.exporter)
    : new sdk.BatchSpanProcessor(new (otlp as typeof import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter());
  const provider = new sdk.BasicTracerProvider({ resource, spanProcessors: [processor] });
  return { provider, flush: () => provider.forceFlush(), shutdown: () => provider.shutdown() };
}
