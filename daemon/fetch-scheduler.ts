import { performance } from 'node:perf_hooks';
import { Semaphore } from '../async/index.js';
import type { FetchRange } from '../cache/index.js';

/** How many background fetches go at once, and how long foreground work keeps them throttled. */
export interface FetchSchedulerTuning {
  /** Background fetches at once while no foreground work is in flight or lingering. */
  readonly idleBackground: number;
  /** Background fetches at once while foreground work is in flight, and for `lingerMs` after. */
  readonly busyBackground: number;
  readonly lingerMs: number;
}

export const DEFAULT_FETCH_SCHEDULER_TUNING: FetchSchedulerTuning = Object.freeze({
  /**
   * Enough to keep a latency-bound store busy with small files (RGW answers a 100 KiB GET in
   * 2-3 ms when idle, and queues what it cannot serve at once).
   */
  idleBackground: 32,
  /**
   * Background work goes second while a reader waits on the store. Measured during a
   * 10,000-file warmup, a cold 100 KiB read through the mount took p50 13.7 ms with 4 (idle:
   * 3.6) and 8.3 ms with 2; a lookup (stat) 10.9 and 7.3 ms (idle: 3.8).
   */
  busyBackground: 2,
  /**
   * A reader going through files makes its next lookup (HEAD) and GET within a few
   * milliseconds, and should not find 32 background requests queued at the store in between.
   */
  lingerMs: 200,
});

/** Time as the scheduler sees it (tests drive a manual one). */
export interface SchedulerClock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Calls `wake` once, `ms` from now, unless the answer (a cancel) is called first. Never keeps the process alive. */
  timer(ms: number, wake: () => void): () => void;
}

const realClock: SchedulerClock = {
  now: () => performance.now(),
  timer: (ms, wake) => {
    const handle = setTimeout(wake, ms).unref();
    return () => clearTimeout(handle);
  },
};

export interface FetchSchedulerOptions {
  readonly clock?: SchedulerClock | undefined;
  readonly tuning?: FetchSchedulerTuning | undefined;
}

/**
 * Gives foreground reads priority over background work (prefetch, eager import, sync,
 * distribution). The block cache marks each store fetch it makes for background work (its
 * `FetchRequest.priority`); those wait for a slot, and there are few slots while foreground work is
 * in flight: a block fetch for a reader, or the HEAD and LIST of a lookup (the namespace
 * runs those through `foreground`). Foreground work is never held back.
 *
 * The slots are the one semaphore (async/semaphore.ts) with a capacity that is asked at every
 * decision: `busyBackground` while foreground work runs or lingers, else `idleBackground`.
 * Background fetches are admitted in arrival order.
 *
 * The mark travels in the request rather than in an AsyncLocalStorage context: on Node 20
 * a live AsyncLocalStorage runs promise hooks on every promise in the process, and an SDK
 * GET makes dozens of them (measured: 0.15-0.25 ms of CPU more per 100 KiB file in a
 * prefetch, about 15%).
 */
export class FetchScheduler {
  readonly #clock: SchedulerClock;
  readonly #tuning: FetchSchedulerTuning;
  readonly #slots: Semaphore;
  #foreground = 0;
  #lastForegroundAt = -Infinity;
  #cancelLinger: (() => void) | undefined;

  constructor(options: FetchSchedulerOptions = {}) {
    this.#clock = options.clock ?? realClock;
    this.#tuning = options.tuning ?? DEFAULT_FETCH_SCHEDULER_TUNING;
    this.#slots = new Semaphore(() => this.#limit());
  }

  /** `fetch`, scheduled: foreground calls go at once, background calls take a slot. */
  wrap(fetch: FetchRange): FetchRange {
    return async (request) => {
      if (request.priority !== 'background') return this.foreground(() => fetch(request));
      return this.#slots.run(1, () => fetch(request));
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
      this.#lastForegroundAt = this.#clock.now();
      // Re-admit background work once the linger has passed, even if nothing else happens
      // (1 ms past it: a timer may fire a fraction of a millisecond early on the monotonic clock).
      this.#cancelLinger?.();
      this.#cancelLinger = this.#clock.timer(this.#tuning.lingerMs + 1, () => this.#slots.notify());
      this.#slots.notify();
    }
  };

  #limit(): number {
    const busy = this.#foreground > 0 || this.#clock.now() - this.#lastForegroundAt < this.#tuning.lingerMs;
    return busy ? this.#tuning.busyBackground : this.#tuning.idleBackground;
  }
}
