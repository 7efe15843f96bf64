/**
 * The function the runner benchmark invokes: it does nothing but tell the bench, through a probe on
 * globalThis, that an invocation started and with which event. The runner loads it as the standalone worker
 * loads any handler (esbuild bundle, imported in-process), so the bundled copy and the bench's own modules
 * are different module instances; globalThis is what they share.
 *
 * With no probe installed it is a true no-op.
 */
import type { Handler } from 'aws-lambda';
import type { RabbitMQEvent } from 'middy-rabbitmq';

/** Called at handler start with `performance.now()` taken before anything else. */
export type BenchProbe = (event: RabbitMQEvent, startedAt: number) => void;

export const PROBE_KEY = '__rabbitFunctionsBenchProbe';

type ProbeHolder = { [PROBE_KEY]?: BenchProbe };

/** Installs (or, with undefined, removes) the probe the handler reports to. */
export function setBenchProbe(probe: BenchProbe | undefined): void {
  (globalThis as ProbeHolder)[PROBE_KEY] = probe;
}

export const handler: Handler<RabbitMQEvent, void> = async (event) => {
  const startedAt = performance.now();
  (globalThis as ProbeHolder)[PROBE_KEY]?.(event, startedAt);
};
