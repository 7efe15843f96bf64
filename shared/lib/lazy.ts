/**
 * A memo of `open`: the first call starts it, later calls share the same promise, and a failure is
 * forgotten so the next call tries again (a store or broker that was down at first use is not cached as
 * broken). What a Lambda container opens once and reuses.
 */
export function lazy<T>(open: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= open().catch((error: unknown) => {
      pending = undefined;
      throw error;
    });
    return pending;
  };
}
