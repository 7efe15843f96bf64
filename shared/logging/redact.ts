/**
 * Redaction of a log line's object by field name, at any depth up to MAX_DEPTH: pino's own `redact` option
 * (@pinojs/redact) costs about 30 us per line and 25 us per child logger with our fields as wildcard paths
 * (`*.email`, `*.*.email`), a tenth of a queue record's CPU time in bench:pipeline; this walk costs 2-3 us.
 * Objects are copied only where something is redacted, so the caller's objects are never changed.
 */

/** How deep a line's object is searched (the line itself is depth 0); deeper values are written as they are. */
export const MAX_DEPTH = 8;

const isObject = (value: unknown): value is object => value !== null && typeof value === 'object';

/** A copy of `value` with every own property, same prototype (an Error keeps its message, stack and cause). */
function copyOf(value: object): Record<string, unknown> {
  if (Array.isArray(value)) return [...value] as unknown as Record<string, unknown>;
  const descriptors = Object.getOwnPropertyDescriptors(value);
  for (const [key, descriptor] of Object.entries(descriptors)) {
    // An accessor is read on the original: an Error's `stack` is one on Node.js 22, and on the copy it gives ''.
    if (descriptor.get || descriptor.set) {
      descriptors[key] = { value: (value as Record<string, unknown>)[key], writable: true, enumerable: descriptor.enumerable ?? false };
    }
    descriptors[key]!.configurable = true; // a frozen object's copy can be changed
  }
  return Object.create(Object.getPrototypeOf(value), descriptors);
}

/**
 * `value` with every property named in `fields` replaced by `censor`, in it and in the objects and arrays it
 * holds; the same `value` when there is nothing to redact.
 */
export function redactFields<T>(value: T, fields: ReadonlySet<string>, censor: string, depth = 0): T {
  if (!isObject(value) || depth > MAX_DEPTH || Buffer.isBuffer(value)) return value;
  let copy: Record<string, unknown> | undefined;
  const source = value as Record<string, unknown>;
  for (const key of Object.keys(source)) {
    const inner = source[key];
    const redacted = fields.has(key) && inner !== undefined ? censor : redactFields(inner, fields, censor, depth + 1);
    if (redacted === inner) continue;
    copy ??= copyOf(source);
    Object.defineProperty(copy, key, { value: redacted, enumerable: true, writable: true, configurable: true });
  }
  return (copy ?? value) as T;
}
