import { StrataError } from '../errors/index.js';
import { outcomeOf, type Outcome } from '../async/index.js';
import { counter, type Logger } from '../telemetry/index.js';

/** A day: an outage of a store rarely lasts longer, and a cache that stops serving after minutes helps little. */
export const DEFAULT_STALE_ON_ERROR_MS = 24 * 3600_000;
/**
 * A HEAD or LIST on a healthy S3 store answers in milliseconds (tens under load); 2 s means
 * it is down or hung, and a reader of a cached file should not wait longer than that.
 */
export const DEFAULT_REVALIDATE_DEADLINE_MS = 2_000;
/** Store errors that say nothing about the object: the store is down, slow or failing. */
const OUTAGE_CODES: ReadonlySet<string> = new Set(['STORE_UNREACHABLE', 'STORE_IO']);
/**
 * Once the store failed or hung, known metadata is served at once (no deadline wait) for this
 * long, while a revalidation runs behind it; a store answer ends it early. Without it every
 * `stat` through an outage would wait out the deadline again once the TTL passed.
 */
const DEGRADED_MS = 10_000;
/** One log line per path per minute while stale answers are served. */
const STALE_LOG_INTERVAL_MS = 60_000;

const staleAnswers = counter('strata_namespace_stale_answers_total', 'Metadata answers served past their TTL because the store failed or did not answer in time', ['reason']);

/** A cached answer and when it stops being fresh. */
export interface Cached<T> {
  readonly value: T;
  readonly expiresAt: number;
}

export interface StaleAnswersConfig {
  readonly storeId: string;
  /** How long past its expiry a known answer may be served while the store fails (0: never). */
  readonly staleOnErrorMs: number;
  /** How long a revalidation may take before the known answer is served instead. */
  readonly deadlineMs: number;
  readonly logger: Logger | undefined;
  readonly now: () => number;
}

/**
 * `--stale-on-error` for one store's metadata: answers what the store says, or what was
 * known before when the store is down, failing or hung, logged and counted.
 */
export class StaleAnswers {
  readonly #storeId: string;
  readonly #staleOnErrorMs: number;
  readonly #deadlineMs: number;
  readonly #logger: Logger | undefined;
  readonly #now: () => number;
  readonly #staleLogged = new Map<string, number>();
  /** Until when (this.#now()) the store counts as down: see DEGRADED_MS. */
  #degradedUntil = 0;

  constructor(config: StaleAnswersConfig) {
    this.#storeId = config.storeId;
    this.#staleOnErrorMs = config.staleOnErrorMs;
    this.#deadlineMs = config.deadlineMs;
    this.#logger = config.logger;
    this.#now = config.now;
  }

  /**
   * The store's answer, or what was known before when the store fails with an outage
   * error or takes longer than the revalidation deadline, as long as the known answer
   * expired less than `staleOnErrorMs` ago. Without a known answer the caller waits for
   * the store (whose calls are bounded themselves) and sees its error. A late answer still
   * lands in the cache when it comes; a late failure is dropped (it was handled here).
   */
  async orStale<T>(load: Promise<T>, known: Cached<T> | undefined, path: string): Promise<T> {
    const outcome = outcomeOf(load);
    void outcome.then((o) => this.#noteStoreHealth(o));
    if (!known || this.#staleOnErrorMs <= 0 || this.#now() - known.expiresAt > this.#staleOnErrorMs) return load;
    let timer: NodeJS.Timeout | undefined;
    const waitMs = this.#now() < this.#degradedUntil ? 0 : this.#deadlineMs;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), waitMs);
      timer.unref();
    });
    const first = await Promise.race([outcome, deadline]);
    clearTimeout(timer);
    if (first !== 'deadline') {
      if (first.ok) return first.value;
      if (!isOutage(first.error)) throw first.error;
    }
    if (first === 'deadline') this.#degradedUntil = Math.max(this.#degradedUntil, this.#now() + DEGRADED_MS);
    const reason = first === 'deadline' ? 'timeout' : 'store-error';
    staleAnswers.inc({ reason });
    this.#logStale(path, reason, first === 'deadline' ? undefined : first.error);
    return known.value;
  }

  /** An answer ends a degraded period; an outage error or a hang (the store's own deadline) starts one. */
  #noteStoreHealth(outcome: Outcome<unknown>): void {
    if (outcome.ok) this.#degradedUntil = 0;
    else if (isOutage(outcome.error)) this.#degradedUntil = this.#now() + DEGRADED_MS;
  }

  #logStale(path: string, reason: string, error: unknown): void {
    const now = this.#now();
    const last = this.#staleLogged.get(path);
    if (last !== undefined && now - last < STALE_LOG_INTERVAL_MS) return;
    if (this.#staleLogged.size > 10_000) this.#staleLogged.clear(); // a bound on memory, not a policy
    this.#staleLogged.set(path, now);
    this.#logger?.warn({ store: this.#storeId, path, reason, err: error instanceof Error ? error.message : undefined }, 'store did not answer: serving what the cache knows');
  }
}

function isOutage(err: unknown): boolean {
  return err instanceof StrataError && OUTAGE_CODES.has(err.code);
}
