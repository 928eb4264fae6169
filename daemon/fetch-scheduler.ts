import { performance } from 'node:perf_hooks';
import type { FetchRange } from '../cache/index.js';

/**
 * Background fetches at once while no foreground read is waiting on the store: enough to
 * keep a latency-bound store busy with small files (RGW answers a 100 KiB GET in 2-3 ms when
 * idle, and queues what it cannot serve at once).
 */
const BACKGROUND_WHEN_IDLE = 32;
/**
 * Background fetches at once while a reader waits on the store: they go first. Measured
 * during a 10,000-file warmup, a cold 100 KiB read through the mount took p50 13.7 ms with
 * 4 (idle: 3.6) and 8.3 ms with 2; a lookup (stat) 10.9 and 7.3 ms (idle: 3.8).
 */
const BACKGROUND_WHEN_BUSY = 2;
/**
 * Foreground work keeps background work throttled this long after it ends: a reader
 * going through files makes its next lookup (HEAD) and GET within a few milliseconds,
 * and should not find 32 background requests queued at the store in between.
 */
const FOREGROUND_LINGER_MS = 200;

/**
 * Gives foreground reads priority over background work (prefetch, eager import, sync,
 * distribution). The block cache marks each store fetch it makes for background work (its
 * `FetchRequest.priority`); those wait for a slot, and there are few slots while foreground work is
 * in flight: a block fetch for a reader, or the HEAD and LIST of a lookup (the namespace
 * runs those through `foreground`). Foreground work is never held back.
 *
 * The mark travels in the request rather than in an AsyncLocalStorage context: on Node 20
 * a live AsyncLocalStorage runs promise hooks on every promise in the process, and an SDK
 * GET makes dozens of them (measured: 0.15-0.25 ms of CPU more per 100 KiB file in a
 * prefetch, about 15%).
 */
export class FetchScheduler {
  readonly #waiting: Array<() => void> = [];
  #foreground = 0;
  #background = 0;
  #lastForegroundAt = -Infinity;
  #lingerTimer: NodeJS.Timeout | undefined;

  /** `fetch`, scheduled: foreground calls go at once, background calls take a slot. */
  wrap(fetch: FetchRange): FetchRange {
    return async (request) => {
      if (request.priority !== 'background') return this.foreground(() => fetch(request));
      while (this.#background >= this.#limit()) await new Promise<void>((resolve) => this.#waiting.push(resolve));
      this.#background++;
      try {
        return await fetch(request);
      } finally {
        this.#background--;
        this.#admit();
      }
    };
  }

  /**
   * Runs store work a reader is waiting for (a block fetch, or the HEAD and LIST of a
   * lookup) at once, and throttles background work while it runs and for a linger after.
   */
  readonly foreground = async <T>(work: () => Promise<T>): Promise<T> => {
    this.#foreground++;
    try {
      return await work();
    } finally {
      this.#foreground--;
      this.#lastForegroundAt = performance.now();
      // Re-admit background work once the linger has passed, even if nothing else happens.
      clearTimeout(this.#lingerTimer);
      this.#lingerTimer = setTimeout(() => this.#admit(), FOREGROUND_LINGER_MS + 1).unref();
      this.#admit();
    }
  };

  #limit(): number {
    const busy = this.#foreground > 0 || performance.now() - this.#lastForegroundAt < FOREGROUND_LINGER_MS;
    return busy ? BACKGROUND_WHEN_BUSY : BACKGROUND_WHEN_IDLE;
  }

  #admit(): void {
    let free = this.#limit() - this.#background;
    while (free-- > 0 && this.#waiting.length > 0) this.#waiting.shift()!();
  }
}
