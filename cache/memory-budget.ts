import { CacheError } from './cache-error.js';

/**
 * A byte pool that buffers must be reserved from before they are allocated: the block
 * cache's in-flight fetches, tier reads and readahead. Demand reservations wait (FIFO)
 * for room; readahead reservations are refused unless room stays free for demand reads,
 * so when memory is short readahead is the first thing dropped.
 *
 * The pool counts reservations, not allocations: a holder must release exactly what it
 * reserved, once. `peakBytes` is the most ever reserved at one time.
 *
 * Under pressure (the daemon's memory watchdog found the process over its limit) readahead is
 * refused outright: the process needs its memory back, and readahead is the optional use.
 */
export class MemoryBudget {
  readonly #total: number;
  readonly #demandReserve: number;
  #used = 0;
  #peak = 0;
  #pressure = false;
  readonly #waiters: Array<{ bytes: number; resolve: () => void; reject: (err: unknown) => void }> = [];

  /**
   * @param totalBytes     the pool's size
   * @param demandReserve  bytes readahead must leave free for demand reads
   */
  constructor(totalBytes: number, demandReserve: number) {
    this.#total = totalBytes;
    this.#demandReserve = demandReserve;
  }

  get totalBytes(): number {
    return this.#total;
  }

  get usedBytes(): number {
    return this.#used;
  }

  get peakBytes(): number {
    return this.#peak;
  }

  /** Whether readahead is refused because the process is over its memory limit. */
  get underPressure(): boolean {
    return this.#pressure;
  }

  set underPressure(on: boolean) {
    this.#pressure = on;
  }

  /** Waits until `bytes` fit, then reserves them. Rejects with CACHE_BUDGET_EXCEEDED if they never can. */
  async reserve(bytes: number, signal?: AbortSignal): Promise<void> {
    if (bytes > this.#total) {
      throw new CacheError('CACHE_BUDGET_EXCEEDED', `a ${bytes}-byte buffer does not fit a ${this.#total}-byte memory pool`);
    }
    if (this.#waiters.length === 0 && this.#used + bytes <= this.#total) {
      this.#take(bytes);
      return;
    }
    signal?.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.#waiters.indexOf(waiter);
        if (at !== -1) this.#waiters.splice(at, 1);
        reject(signal?.reason);
      };
      const waiter = {
        bytes,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
      };
      this.#waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Reserves `bytes` for readahead if not under pressure, that leaves the demand reserve free and nobody waits; else `false`. */
  tryReserveReadahead(bytes: number): boolean {
    if (this.#pressure || this.#waiters.length > 0 || this.#used + bytes + this.#demandReserve > this.#total) return false;
    this.#take(bytes);
    return true;
  }

  /** Reserves `bytes` now if they fit and nobody waits; else `false`. */
  tryReserve(bytes: number): boolean {
    if (this.#waiters.length > 0 || this.#used + bytes > this.#total) return false;
    this.#take(bytes);
    return true;
  }

  release(bytes: number): void {
    this.#used -= bytes;
    while (this.#waiters.length > 0) {
      const next = this.#waiters[0];
      if (this.#used + next.bytes > this.#total) break;
      this.#waiters.shift();
      this.#take(next.bytes);
      next.resolve();
    }
  }

  #take(bytes: number): void {
    this.#used += bytes;
    if (this.#used > this.#peak) this.#peak = this.#used;
  }
}
