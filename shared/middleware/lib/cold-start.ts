/**
 * Whether this is the first invocation of this execution environment (one per process, as a Lambda
 * container has): true once, then false. Log lines carry it, so cold starts can be counted.
 */
let cold = true;

export function takeColdStart(): boolean {
  const was = cold;
  cold = false;
  return was;
}
