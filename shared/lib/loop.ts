/**
 * A background loop for a long-lived process: `round` runs, resolves to how long to pause before the next, and
 * so on until stopped. A round must not throw (it logs its own failures). The stop clears a pending pause and
 * resolves once a round under way has ended. The outbox relay and the retention pruning run on it.
 */
export function startLoop(round: () => Promise<number>): () => Promise<void> {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> = Promise.resolve();
  const schedule = (delayMs: number) => {
    timer = setTimeout(() => {
      current = round().then((nextMs) => {
        if (!stopped) schedule(nextMs);
      });
    }, delayMs);
  };
  schedule(0);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await current;
  };
}
