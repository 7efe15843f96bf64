/**
 * Collects items into batches the way Lambda's event source mapping does: a batch is handed on when it
 * holds `batchSize` items, when `windowMs` has passed since its first item, or when the next item would
 * push it over `maxBytes`, whichever comes first. Pure logic, no AMQP: the trigger feeds it messages and
 * receives batches.
 */
export interface BatcherOptions<T> {
  batchSize: number;
  /** Wait after a batch's first item; 0 hands on whatever arrived in the same turn of the event loop. */
  windowMs: number;
  /** Most a batch may weigh (e.g. the invocation payload limit); an item that would exceed it starts the next. */
  maxBytes?: number;
  /** What one item weighs towards `maxBytes` (default 0). */
  sizeOf?: (item: T) => number;
  onBatch: (items: T[]) => void;
}

export class Batcher<T> {
  private items: T[] = [];
  private bytes = 0;
  /** When the current batch's window ends (performance.now() ms); undefined while the batch is empty. */
  private windowEnd: number | undefined;
  /**
   * The window's timer. With a window it is left armed when a batch fills before its window ends (the usual case
   * under load), so a batch costs no timer of its own: when it fires it hands on the batch whose window has ended,
   * or re-arms for the current one's end. Referenced only while a batch waits, as a timer per batch was.
   */
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private immediate: NodeJS.Immediate | undefined;

  constructor(private readonly options: BatcherOptions<T>) {
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1) throw new RangeError('batchSize must be a positive integer');
    if (!(options.windowMs >= 0)) throw new RangeError('windowMs must be zero or more');
  }

  get size(): number {
    return this.items.length;
  }

  add(item: T): void {
    const size = this.options.sizeOf?.(item) ?? 0;
    if (this.items.length > 0 && this.bytes + size > (this.options.maxBytes ?? Number.POSITIVE_INFINITY)) this.flush();
    this.items.push(item);
    this.bytes += size;
    if (this.items.length >= this.options.batchSize) this.flush();
    else if (this.items.length === 1) this.arm();
  }

  /** Hands on the current batch now, if it has anything. */
  flush(): void {
    this.disarm();
    if (this.items.length === 0) return;
    const batch = this.items;
    this.items = [];
    this.bytes = 0;
    this.options.onBatch(batch);
  }

  /** Takes the items collected so far without handing them on (used on shutdown to give them back). */
  drain(): T[] {
    this.disarm();
    const batch = this.items;
    this.items = [];
    this.bytes = 0;
    return batch;
  }

  /** The window's end: made once, not per batch. */
  private readonly fireImmediate = (): void => {
    this.immediate = undefined;
    this.flush();
  };

  /** The window timer fired: hand on the batch if its window has ended, else wait for the rest of it. */
  private readonly fire = (): void => {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    if (this.windowEnd === undefined) return;
    if (this.windowEnd <= performance.now()) this.flush();
    else this.armTimer(this.windowEnd);
  };

  private arm(): void {
    if (this.options.windowMs === 0) {
      this.immediate = setImmediate(this.fireImmediate);
      return;
    }
    this.windowEnd = performance.now() + this.options.windowMs;
    // A timer left from an earlier batch ends no later than this window: it re-arms for the rest when it fires.
    if (this.timer && this.timerAt <= this.windowEnd) this.timer.ref();
    else this.armTimer(this.windowEnd);
  }

  private armTimer(at: number): void {
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.fire, Math.max(1, at - performance.now()));
  }

  private disarm(): void {
    this.windowEnd = undefined;
    this.timer?.unref();
    if (this.immediate === undefined) return;
    clearImmediate(this.immediate);
    this.immediate = undefined;
  }
}
