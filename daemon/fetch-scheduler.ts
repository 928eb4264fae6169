import { AsyncLocalStorage } from 'node:async_hooks';
import type { FetchRange } from '../cache/index.js';

/**
 * Background fetches at once while no foreground read is waiting on the store: enough to
 * keep a latency-bound store busy with small files (RGW answers a 100 KiB GET in 3-15 ms).
 */
const BACKGROUND_WHEN_IDLE = 32;
/** Background fetches at once while foreground reads are fetching: they go first. */
const BACKGROUND_WHEN_BUSY = 4;

/**
 * Gives foreground reads priority over background work (prefetch, eager import, sync).
 * Background work runs inside `background(...)`; every store fetch started from there
 * waits for a slot, and there are few slots while a foreground fetch is in flight. The
 * class travels with the async context, so no call in between needs to know about it.
 */
export class FetchScheduler {
  readonly #context = new AsyncLocalStorage<true>();
  readonly #waiting: Array<() => void> = [];
  #foreground = 0;
  #background = 0;

  /** Runs `work` as background work. */
  background<T>(work: () => Promise<T>): Promise<T> {
    return this.#context.run(true, work);
  }

  /** `fetch`, scheduled: foreground calls go at once, background calls take a slot. */
  wrap(fetch: FetchRange): FetchRange {
    return async (ref, start, length, signal) => {
      if (this.#context.getStore() !== true) {
        this.#foreground++;
        try {
          return await fetch(ref, start, length, signal);
        } finally {
          this.#foreground--;
          this.#admit();
        }
      }
      while (this.#background >= this.#limit()) await new Promise<void>((resolve) => this.#waiting.push(resolve));
      this.#background++;
      try {
        return await fetch(ref, start, length, signal);
      } finally {
        this.#background--;
        this.#admit();
      }
    };
  }

  #limit(): number {
    return this.#foreground > 0 ? BACKGROUND_WHEN_BUSY : BACKGROUND_WHEN_IDLE;
  }

  #admit(): void {
    let free = this.#limit() - this.#background;
    while (free-- > 0 && this.#waiting.length > 0) this.#waiting.shift()!();
  }
}
