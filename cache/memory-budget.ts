import { Semaphore } from '../async/index.js';
import { CacheError } from './cache-error.js';

/**
 * A byte pool that buffers must be reserved from before they are allocated: the block
 * cache's in-flight fetches, tier reads and readahead. Demand reservations wait (FIFO)
 * for room; readahead reservations are refused unless room stays free for demand reads,
 * so when memory is short readahead is the first thing dropped.
 *
 * The pool counts reservations, not allocations: a holder must release exactly what it
 * reserved, once. `peakBytes` is the most ever reserved at one time. The waiting is the
 * one semaphore's (async/semaphore.ts): `reserve` is its `acquire`, readahead its
 * `tryAcquire` with the demand reserve as headroom.
 *
 * Under pressure (the daemon's memory watchdog found the process over its limit) readahead is
 * refused outright: the process needs its memory back, and readahead is the optional use.
 */
export class MemoryBudget {
  readonly #bytes: Semaphore;
  readonly #demandReserve: number;
  #pressure = false;

  /**
   * @param totalBytes     the pool's size
   * @param demandReserve  bytes readahead must leave free for demand reads
   */
  constructor(totalBytes: number, demandReserve: number) {
    this.#bytes = new Semaphore(totalBytes);
    this.#demandReserve = demandReserve;
  }

  get totalBytes(): number {
    return this.#bytes.capacity;
  }

  get usedBytes(): number {
    return this.#bytes.used;
  }

  get peakBytes(): number {
    return this.#bytes.peak;
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
    if (bytes > this.#bytes.capacity) {
      throw new CacheError('CACHE_BUDGET_EXCEEDED', `a ${bytes}-byte buffer does not fit a ${this.#bytes.capacity}-byte memory pool`);
    }
    await this.#bytes.acquire(bytes, signal);
  }

  /** Reserves `bytes` for readahead if not under pressure, that leaves the demand reserve free and nobody waits; else `false`. */
  tryReserveReadahead(bytes: number): boolean {
    return !this.#pressure && this.#bytes.tryAcquire(bytes, this.#demandReserve);
  }

  /** Reserves `bytes` now if they fit and nobody waits; else `false`. */
  tryReserve(bytes: number): boolean {
    return this.#bytes.tryAcquire(bytes);
  }

  /** Gives back `bytes` reserved earlier and admits the waiting reservations that fit now, in order. */
  release(bytes: number): void {
    this.#bytes.release(bytes);
  }
}
