/**
 * `promise`, or a rejection with `onTimeout()` once `ms` milliseconds have passed. The promise itself is left
 * to settle on its own (it is not cancelled): callers that must know its late outcome keep a reference.
 */
export function within<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => Error = () => new Error(`no answer within ${ms} ms`),
): Promise<T> {
  promise.catch(() => undefined); // a late rejection is the caller's to observe, not an unhandled one
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
