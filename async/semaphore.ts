/**
 * A counting semaphore over units of anything (upload slots, bytes of memory or staging
 * space), and the one way code here waits for room:
 * - `acquire(n)` waits in arrival order (nobody overtakes a waiter, so a large request is
 *   not starved by small ones) and can be given up through an AbortSignal;
 * - `tryAcquire(n, headroom)` takes units only if they fit now, `headroom` more stay free,
 *   and nobody waits (for work that is better dropped than queued, like readahead);
 * - `changed()` lets a caller that waits on a condition of its own (progress of uploads, a
 *   deadline) sleep until units are released or `notify()` says something moved.
 *
 * The capacity is a number, or a function asked at every decision for a limit that changes
 * (call `notify()` when it grows). Units are counted, not owned: a holder releases exactly
 * what it took, once.
 */
export class Semaphore {
  readonly #capacity: () => number;
  #used = 0;
  #peak = 0;
  readonly #queue: Array<{ units: number; admit: () => void }> = [];
  readonly #watchers = new Set<() => void>();

  constructor(capacity: number | (() => number)) {
    this.#capacity = typeof capacity === 'number' ? () => capacity : capacity;
  }

  get capacity(): number {
    return this.#capacity();
  }

  get used(): number {
    return this.#used;
  }

  /** The most units ever held at one time. */
  get peak(): number {
    return this.#peak;
  }

  /** Callers queued in `acquire`. */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Whether `units` (and `headroom` more) fit now, ignoring the queue. */
  fits(units: number, headroom = 0): boolean {
    return this.#used + units + headroom <= this.#capacity();
  }

  /** Takes `units` if nobody waits and they fit with `headroom` to spare; else `false`. */
  tryAcquire(units: number, headroom = 0): boolean {
    if (this.#queue.length > 0 || !this.fits(units, headroom)) return false;
    this.#take(units);
    return true;
  }

  /**
   * Takes `units`, waiting behind earlier callers until they fit. With `signal`: rejects with
   * its reason if it aborts first (taking nothing). Units that can never fit wait for ever:
   * the caller checks against `capacity` first.
   */
  async acquire(units: number, signal?: AbortSignal): Promise<void> {
    if (this.tryAcquire(units)) return;
    signal?.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.#queue.indexOf(waiter);
        if (at !== -1) this.#queue.splice(at, 1);
        reject(signal?.reason);
        this.#admit(); // the head may have been the one in the way
      };
      const waiter = {
        units,
        admit: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.#queue.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Counts `units` as held even past the capacity (what was in use before the count began). */
  force(units: number): void {
    this.#take(units);
  }

  /** Gives `units` back (never below zero), admits waiters that fit now, and wakes `changed()`. */
  release(units: number): void {
    this.#used = Math.max(0, this.#used - units);
    this.notify();
  }

  /** Runs `body` holding `units`; they are released however it ends. */
  async run<T>(units: number, body: () => Promise<T>): Promise<T> {
    await this.acquire(units);
    try {
      return await body();
    } finally {
      this.release(units);
    }
  }

  /** Resolves `true` at the next `release` or `notify`, `false` if `signal` aborts first. */
  changed(signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const onAbort = (): void => {
        this.#watchers.delete(wake);
        resolve(false);
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      };
      this.#watchers.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Something moved (the capacity grew, work progressed): admits waiters that fit and wakes `changed()`. */
  notify(): void {
    this.#admit();
    const watchers = [...this.#watchers];
    this.#watchers.clear();
    for (const wake of watchers) wake();
  }

  #admit(): void {
    while (this.#queue.length > 0 && this.fits(this.#queue[0]!.units)) {
      const next = this.#queue.shift()!;
      this.#take(next.units);
      next.admit();
    }
  }

  #take(units: number): void {
    this.#used += units;
    if (this.#used > this.#peak) this.#peak = this.#used;
  }
}
