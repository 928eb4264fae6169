import { WritePathError } from './write-path-error.js';
import type { Sleep } from './write-path-config.js';

/**
 * Accounting of staged bytes against the staging limit. `reserve` waits (up to `waitMs`)
 * for uploads to `free` space, then fails with CHECKPOINT_STAGING_FULL (ENOSPC): a write
 * is refused, never dropped.
 */
export class StagingSpace {
  readonly #limit: number;
  readonly #waitMs: number;
  readonly #sleep: Sleep;
  #used = 0;
  readonly #waiters = new Set<() => void>();

  constructor(limit: number, waitMs: number, sleep: Sleep) {
    this.#limit = limit;
    this.#waitMs = waitMs;
    this.#sleep = sleep;
  }

  get usedBytes(): number {
    return this.#used;
  }

  get limitBytes(): number {
    return this.#limit;
  }

  async reserve(bytes: number): Promise<void> {
    if (bytes <= 0) return;
    if (this.#used + bytes <= this.#limit) {
      this.#used += bytes;
      return;
    }
    if (bytes > this.#limit) this.#full(bytes);
    const timer = new AbortController();
    let timedOut = false;
    const expired = this.#sleep(this.#waitMs, timer.signal).then(
      () => (timedOut = true),
      () => undefined,
    );
    try {
      while (this.#used + bytes > this.#limit) {
        let wake!: () => void;
        const freed = new Promise<void>((resolve) => (wake = resolve));
        this.#waiters.add(wake);
        await Promise.race([freed, expired]);
        this.#waiters.delete(wake);
        if (timedOut && this.#used + bytes > this.#limit) this.#full(bytes);
      }
      this.#used += bytes;
    } finally {
      timer.abort();
    }
  }

  /** Returns bytes to the pool and wakes waiting writes. */
  free(bytes: number): void {
    if (bytes <= 0) return;
    this.#used = Math.max(0, this.#used - bytes);
    for (const wake of [...this.#waiters]) wake();
  }

  /** Counts bytes that are already on disk (staged files found at start), even past the limit. */
  claim(bytes: number): void {
    this.#used += bytes;
  }

  #full(bytes: number): never {
    throw new WritePathError(
      'CHECKPOINT_STAGING_FULL',
      `staging is full: ${this.#used} of ${this.#limit} bytes in use, ${bytes} more needed, and uploads did not free enough within ${this.#waitMs} ms`,
    );
  }
}
