import { Semaphore } from '../async/index.js';
import type { Logger } from '../telemetry/index.js';
import { WritePathError } from './write-path-error.js';
import type { Sleep } from './write-path-config.js';
import { writePathMetrics } from './write-path-metrics.js';

export interface StagingSpaceOptions {
  readonly limitBytes: number;
  /** How long a waiting write tolerates uploads making no progress at all (no part uploaded, no space freed). */
  readonly stallMs: number;
  readonly sleep: Sleep;
  readonly logger?: Logger | undefined;
}

/**
 * Accounting of staged bytes against the staging limit: the write path's only back-pressure.
 * A write that does not fit waits, for as long as uploads make progress, until committed files
 * free enough space; the wait is logged (once per episode) and counted in metrics. It fails
 * with CHECKPOINT_STAGING_FULL (ENOSPC) only when waiting cannot help: nothing that could free
 * space is on its way to the store (the space is held by files still open), or uploads made no
 * progress at all for `stallMs` (the store is down). A write is refused, never dropped.
 */
export class StagingSpace {
  readonly #limit: number;
  readonly #stallMs: number;
  readonly #sleep: Sleep;
  readonly #logger: Logger | undefined;
  /** Staged bytes against the limit; waits sleep on its `changed()` (a free, or progress). */
  readonly #space: Semaphore;
  /** Writes waiting now; the log line is written when the first starts to wait. */
  #waiting = 0;

  constructor(options: StagingSpaceOptions) {
    this.#limit = options.limitBytes;
    this.#space = new Semaphore(options.limitBytes);
    this.#stallMs = options.stallMs;
    this.#sleep = options.sleep;
    this.#logger = options.logger;
  }

  get usedBytes(): number {
    return this.#space.used;
  }

  get limitBytes(): number {
    return this.#limit;
  }

  /**
   * Reserves `bytes`, waiting for space as long as `canFree()` says some staged file is on its
   * way to the store and uploads keep making progress (`free`, `progress`).
   */
  async reserve(bytes: number, canFree: () => boolean = () => true): Promise<void> {
    if (bytes <= 0) return;
    if (this.#space.tryAcquire(bytes)) return;
    if (bytes > this.#limit) this.#full(bytes, 'the write alone is larger than the staging limit');
    if (!canFree()) this.#full(bytes, 'no closed file is being uploaded: the space is held by files still open');
    const started = performance.now();
    if (this.#waiting++ === 0) {
      this.#logger?.warn({ usedBytes: this.#space.used, limitBytes: this.#limit, neededBytes: bytes }, 'staging is full: writes wait for uploads to free space');
    }
    writePathMetrics.stagingWaits.inc();
    writePathMetrics.stagingWaiting.set(this.#waiting);
    try {
      while (!this.#space.tryAcquire(bytes)) {
        if (!canFree()) this.#full(bytes, 'no closed file is being uploaded: the space is held by files still open');
        // Woken by a free or by progress (the stall timer restarts), or the stall timer ends.
        const timer = new AbortController();
        void this.#sleep(this.#stallMs, timer.signal).then(
          () => timer.abort(),
          () => undefined,
        );
        const progressed = await this.#space.changed(timer.signal);
        timer.abort();
        if (!progressed && !this.#space.fits(bytes)) this.#full(bytes, `uploads made no progress for ${this.#stallMs} ms`);
      }
    } finally {
      this.#waiting -= 1;
      const seconds = (performance.now() - started) / 1000;
      writePathMetrics.stagingWaitSeconds.inc(seconds);
      writePathMetrics.stagingWaiting.set(this.#waiting);
      if (this.#waiting === 0) this.#logger?.info({ waitedMs: Math.round(seconds * 1000), usedBytes: this.#space.used, limitBytes: this.#limit }, 'staging has room again: writes go on');
    }
  }

  /** Returns bytes to the pool and wakes waiting writes. */
  free(bytes: number): void {
    if (bytes <= 0) return;
    this.#space.release(bytes);
  }

  /** An upload made progress (a part reached the store): waiting writes keep waiting, their stall timer restarts. */
  progress(): void {
    this.#space.notify();
  }

  /** Counts bytes that are already on disk (staged files found at start), even past the limit. */
  claim(bytes: number): void {
    this.#space.force(bytes);
  }

  #full(bytes: number, why: string): never {
    throw new WritePathError('CHECKPOINT_STAGING_FULL', `staging is full: ${this.#space.used} of ${this.#limit} bytes in use and ${bytes} more needed; ${why}`);
  }
}
