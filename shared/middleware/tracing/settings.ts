/**
 * Whether spans are exported, from the standard OpenTelemetry variables. Off unless asked for: an OTLP
 * endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp`
 * turns it on; `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` keeps it off whatever else is set.
 * The exporter reads the rest itself (endpoint, headers, timeout, compression), the SDK its sampler
 * (`OTEL_TRACES_SAMPLER`) and batch settings (`OTEL_BSP_*`), the resource `OTEL_SERVICE_NAME` and
 * `OTEL_RESOURCE_ATTRIBUTES`. A value this system cannot honour stops with TracingConfigError naming it.
 */

/** A tracing variable has a value this system cannot honour; `setting` names it. */
export class TracingConfigError extends Error {
  override readonly name = 'TracingConfigError';
  constructor(
    readonly setting: string,
    readonly detail: string,
  ) {
    super(`Invalid configuration: ${setting} ${detail}`);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const value = (env: Env, name: string): string | undefined => {
  const text = env[name]?.trim();
  return text ? text : undefined;
};

/** True when spans are to be exported over OTLP/HTTP; throws TracingConfigError for a value it cannot honour. */
export function exportWanted(env: Env = process.env): boolean {
  if (value(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return false;
  const exporters = value(env, 'OTEL_TRACES_EXPORTER')
    ?.split(',')
    .map((name) => name.trim().toLowerCase())
    .filter(Boolean);
  const unsupported = exporters?.find((name) => name !== 'otlp' && name !== 'none');
  if (unsupported) throw new TracingConfigError('OTEL_TRACES_EXPORTER', `must be otlp or none, not ${JSON.stringify(unsupported)}`);
  if (exporters?.includes('none')) return false;
  const endpoints = ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'].filter((name) => value(env, name));
  const wanted = Boolean(exporters?.includes('otlp')) || endpoints.length > 0;
  if (!wanted) return false;
  for (const name of endpoints) {
    const url = URL.canParse(value(env, name) ?? '') ? new URL(value(env, name) ?? '') : undefined;
    if (url?.protocol !== 'http:' && url?.protocol !== 'https:') throw new TracingConfigError(name, 'must be an http:// or https:// URL');
  }
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const protocol = value(env, name);
    if (protocol !== undefined && protocol !== 'http/json')
      throw new TracingConfigError(name, `must be http/json (spans are sent as OTLP over HTTP, in JSON), not ${JSON.stringify(protocol)}`);
  }
  return true;
}
