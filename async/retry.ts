import { realSleep, type Sleep } from './sleep.js';

/**
 * Exponential backoff: the step before retry `n` (1 for the first retry) is `baseMs · 2^(n-1)`,
 * capped at `maxMs`, and the wait is drawn within it:
 * - `equal` jitter: half the step fixed, half random, so that many callers failing together
 *   do not retry in lockstep, while no retry comes sooner than half the step;
 * - `full` jitter: anywhere in [0, step), the AWS SDK's standard strategy (fewest collisions,
 *   some retries at once).
 */
export interface Backoff {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly jitter: 'equal' | 'full';
}

/** The wait before retry `attempt` (1 for the first retry) under `backoff`; `random` answers [0, 1). */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number): number {
  // 2 ** 30 already exceeds any sensible cap; clamping the exponent keeps the number finite.
  const step = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(attempt - 1, 30));
  return backoff.jitter === 'equal' ? Math.round(step / 2 + (step / 2) * random()) : random() * step;
}

export interface RetryOptions {
  readonly backoff: Backoff;
  /** Waits between attempts (default: real timers). Tests inject one that returns at once. */
  readonly sleep?: Sleep | undefined;
  /** [0, 1) for the jitter (default Math.random). */
  readonly random?: (() => number) | undefined;
  /** Gives up: no attempt starts and no wait goes on once it aborts; `retry` then resolves `undefined`. */
  readonly signal?: AbortSignal | undefined;
  /**
   * After attempt `attempt` failed with `err`: whether another attempt may follow. `false`
   * makes `retry` reject with `err`. Asked before `signal` is looked at, so a caller that wants
   * an abort to reject with the attempt's error says so here. Default: every failure is retried.
   */
  readonly retryable?: ((err: unknown, attempt: number) => boolean) | undefined;
  /** A failure will be retried (after `signal` and `retryable`): for logs and counters. */
  readonly onRetry?: ((err: unknown, attempt: number) => void) | undefined;
  /** Asked after each failure (before the wait) and after each wait: `true` gives up, as `signal` does. */
  readonly stopped?: (() => boolean) | undefined;
}

/**
 * Runs `attempt(n)` (n = 1, 2, ...) until one resolves, and resolves with its value. After a
 * failure: rejects if `retryable` says no; resolves `undefined` (gives up) if `signal` aborted
 * or `stopped()`; otherwise reports it to `onRetry`, waits `backoffDelay(n)` and tries again.
 * Without `retryable`, `signal` or `stopped` it retries for ever.
 */
export async function retry<T>(attempt: (n: number) => Promise<T>, options: RetryOptions): Promise<T | undefined> {
  const { signal, stopped } = options;
  const sleep = options.sleep ?? realSleep;
  const random = options.random ?? Math.random;
  for (let n = 1; ; n++) {
    if (signal?.aborted) return undefined;
    try {
      return await attempt(n);
    } catch (err) {
      if (options.retryable && !options.retryable(err, n)) throw err;
      if (signal?.aborted) return undefined;
      options.onRetry?.(err, n);
      if (stopped?.()) return undefined;
      try {
        await sleep(backoffDelay(n, options.backoff, random), signal);
      } catch {
        return undefined; // aborted during the wait
      }
      if (stopped?.()) return undefined;
    }
  }
}
