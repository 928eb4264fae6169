import type { Logger } from '../telemetry/index.js';
import { counter, gauge } from '../telemetry/index.js';
import type { TierName, TierStats } from './tier.js';

const hitsMetric = counter('strata_cache_hits_total', 'Block lookups answered by a tier', ['tier']);
const missesMetric = counter('strata_cache_misses_total', 'Block lookups a tier could not answer', ['tier']);
const evictionsMetric = counter('strata_cache_evictions_total', 'Blocks a tier evicted to make room', ['tier']);
const mismatchMetric = counter(
  'strata_cache_checksum_mismatches_total',
  'Blocks dropped because their bytes failed the checksum',
  ['tier'],
);
const ioErrorMetric = counter('strata_cache_io_errors_total', 'Tier reads or writes that failed', ['tier']);
const usedMetric = gauge('strata_cache_used_bytes', 'Bytes of blocks held by a tier', ['tier']);
const capacityMetric = gauge('strata_cache_capacity_bytes', 'Byte capacity of a tier', ['tier']);

/**
 * The counters of one tier instance, mirrored into the process metrics (label `tier`).
 * Also the one place a tier reports I/O failures: each kind of failure (operation and
 * error code) is logged once per tier instance, so a dying disk does not flood the log
 * with a line per block; the counter keeps the full tally.
 */
export class TierCounters {
  readonly #name: TierName;
  readonly #logger: Logger;
  readonly #logged = new Set<string>();
  hits = 0;
  misses = 0;
  evictions = 0;
  checksumMismatches = 0;
  ioErrors = 0;

  constructor(name: TierName, logger: Logger) {
    this.#name = name;
    this.#logger = logger;
  }

  hit(count = 1): void {
    this.hits += count;
    hitsMetric.inc({ tier: this.#name }, count);
  }

  miss(): void {
    this.misses += 1;
    missesMetric.inc({ tier: this.#name });
  }

  eviction(): void {
    this.evictions += 1;
    evictionsMetric.inc({ tier: this.#name });
  }

  checksumMismatch(id: string): void {
    this.checksumMismatches += 1;
    mismatchMetric.inc({ tier: this.#name });
    this.#logOnce('checksum', { id }, 'block failed its checksum; dropped (further mismatches are only counted)');
  }

  ioError(op: string, err: unknown): void {
    this.ioErrors += 1;
    ioErrorMetric.inc({ tier: this.#name });
    const code = (err as { code?: unknown } | null)?.code;
    this.#logOnce(`${op}:${String(code)}`, { op, err }, 'tier I/O failed; treated as a miss (further failures of this kind are only counted)');
  }

  sizes(usedBytes: number, capacityBytes: number): void {
    usedMetric.set({ tier: this.#name }, usedBytes);
    capacityMetric.set({ tier: this.#name }, capacityBytes);
  }

  snapshot(sizes: { capacityBytes: number; usedBytes: number; blocks: number }): TierStats {
    return {
      name: this.#name,
      ...sizes,
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
      checksumMismatches: this.checksumMismatches,
      ioErrors: this.ioErrors,
    };
  }

  #logOnce(kind: string, fields: Record<string, unknown>, message: string): void {
    if (this.#logged.has(kind)) return;
    this.#logged.add(kind);
    this.#logger.warn({ tier: this.#name, ...fields }, message);
  }
}
