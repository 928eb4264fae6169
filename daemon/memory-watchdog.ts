import { counter, gauge } from '../telemetry/index.js';
import type { Logger } from '../telemetry/index.js';
import type { ProcessMemory } from './process-memory.js';

/** What the watchdog acts on; the daemon passes the process, the block cache and the write path, tests pass fakes. */
export interface MemoryWatchdogConfig {
  /** The process's resident size may not stay above this: `--memory` plus the fixed overhead. */
  readonly limitBytes: number;
  /** The DRAM tier's configured capacity: what it gets back once nothing else needs the room. */
  readonly dramBytes: number;
  /** The DRAM tier is never squeezed below this (a few blocks, so sequential reads still get their block from memory). */
  readonly minDramBytes: number;
  /** The process's memory now (process.memoryUsage(): resident size, V8's heap, buffers). */
  readonly sample: () => ProcessMemory;
  /** Bytes the DRAM tier holds now. */
  readonly dramUsed: () => number;
  /**
   * The write path's upload buffers, outside the block cache and covered by `--memory`: the DRAM
   * tier gives them its room, so that the cache plus these stay within `--memory`.
   */
  readonly uploadBuffers?: () => number;
  /** A full garbage collection and the allocator's trim; pauses the caller for tens of ms. */
  readonly reclaim: () => void;
  /**
   * Caps the DRAM tier at `bytes` (evicting now; undefined lifts the cap). `pressure`: the
   * process is over its limit, so readahead is refused too (a cap that only makes room for
   * other buffers keeps readahead, which the cache's own pool bounds).
   */
  readonly limitDram: (bytes: number | undefined, pressure: boolean) => void;
  readonly logger: Logger;
  /** Milliseconds; injected by tests. */
  readonly now?: () => number;
}

/** `GET /v1/cache`'s `memory.process`: the last sample, against the limit, and what the watchdog did. */
export interface MemoryReport extends ProcessMemory {
  readonly limitBytes: number;
  /** What the watchdog lets the DRAM tier hold now (its capacity unless something else needs the room). */
  readonly dramCapBytes: number;
  /** The write path's upload buffers (counted in `--memory`), at the last sample. */
  readonly uploadBuffersBytes: number;
  /** Full collections the watchdog forced, and the event-loop time they took. */
  readonly reclaims: number;
  readonly reclaimMs: number;
}

/**
 * The resident cap aims this far below the limit: between two samples (250 ms, longer when the
 * event loop is starved) and before V8 collects, a busy daemon's garbage grows by a few blocks
 * at a time, 20-35 MiB in bench/memory-load's bursts (a warmup job promoting blocks, a writer's
 * file adopted at close). 10% of the limit, at least 16 MiB (four 4 MiB blocks).
 */
const AIM_SHARE = 0.1;
const AIM_MIN_BYTES = 16 * 1024 * 1024;
/**
 * DRAM gets room back only this far below the aim: the process's size moves by a few blocks
 * every second under load, and a cap lifted as soon as it fits would be set again on the next
 * tick. 5% of the limit, at least 8 MiB (two blocks).
 */
const HYSTERESIS_SHARE = 0.05;
const HYSTERESIS_MIN_BYTES = 8 * 1024 * 1024;
/**
 * A full collection pauses the event loop (20-80 ms with hundreds of MiB of buffers, more on a
 * busy machine, see process-memory.ts), and garbage takes a second or two of load to pile up
 * again: one every 2 s at most keeps the pauses under 4% of the loop's time. The resident cap
 * moves down at most as often, so that the blocks it evicted are collected before it measures
 * again.
 */
const RECLAIM_EVERY_MS = 2_000;

const residentGauge = gauge('strata_memory_resident_bytes', "The daemon's resident size as the memory watchdog last sampled it");
const limitGauge = gauge('strata_memory_limit_bytes', 'The resident size the memory watchdog holds the daemon under: --memory plus the fixed overhead');
const dramCapGauge = gauge('strata_memory_dram_cap_bytes', 'What the memory watchdog lets the DRAM tier hold now (its capacity unless upload buffers or the process size need the room)');
const uploadsGauge = gauge('strata_memory_upload_buffers_bytes', 'Upload buffers the write path holds, counted in --memory and taken from the DRAM tier');
const overCounter = counter('strata_memory_over_limit_total', 'Watchdog samples that found the resident size over its limit (each one reclaims, and shrinks the DRAM tier if still over)');
const reclaimCounter = counter('strata_memory_reclaims_total', 'Full garbage collections and allocator trims the memory watchdog ran');
const reclaimSeconds = counter('strata_memory_reclaim_seconds_total', 'Event-loop time the memory watchdog spent in full garbage collections and allocator trims');

/**
 * Holds the daemon's resident size under `--memory` plus a fixed overhead. Two caps on the DRAM
 * tier, the lower of which applies:
 *
 * - the budget cap: `--memory` covers the cache (DRAM tier plus I/O pool) and the upload
 *   buffers, so the DRAM tier holds at most its capacity less what those buffers hold now
 *   (never below `minDramBytes`), set at every sample, lifted when the buffers are freed;
 * - the resident cap, for what no accounting sees (V8's heap, garbage not yet collected,
 *   requests in flight, native threads, allocator fragmentation). It aims at 10% under the
 *   limit: above that aim, the DRAM tier is capped below what it holds by the excess
 *   (never below `minDramBytes`), and readahead is refused while the cap holds. Evicted blocks
 *   are garbage until a collection, so the cap moves down at most every RECLAIM_EVERY_MS. Over
 *   the limit itself, garbage is first reclaimed by force (a full collection and the
 *   allocator's trim, at most every RECLAIM_EVERY_MS) and the cap moves right after. Below the
 *   aim by the hysteresis again, the room now free goes back to the DRAM tier, and the cap is
 *   lifted once it reaches the capacity.
 *
 * `check` does one sample (tests call it); `start` samples on a timer.
 */
export class MemoryWatchdog {
  readonly #config: MemoryWatchdogConfig;
  readonly #now: () => number;
  readonly #hysteresis: number;
  /** Where the resident cap aims: the limit less AIM_SHARE of it. */
  readonly #aim: number;
  /** The resident cap, or undefined while the process is within its limit. */
  #residentCap: number | undefined;
  /** The cap in force (the lower of the two), or undefined when the DRAM tier may use its whole capacity. */
  #dramCap: number | undefined;
  #pressure = false;
  #lastReclaim = -Infinity;
  /** When the resident cap last moved down. */
  #lastMove = -Infinity;
  #reclaims = 0;
  #reclaimMs = 0;
  #timer: NodeJS.Timeout | undefined;
  #overSince: number | undefined;
  #last: ProcessMemory = { rssBytes: 0, heapTotalBytes: 0, heapUsedBytes: 0, externalBytes: 0, arrayBuffersBytes: 0 };
  #lastUploads = 0;

  constructor(config: MemoryWatchdogConfig) {
    this.#config = config;
    this.#now = config.now ?? Date.now;
    this.#hysteresis = Math.max(HYSTERESIS_MIN_BYTES, Math.floor(config.limitBytes * HYSTERESIS_SHARE));
    this.#aim = config.limitBytes - Math.max(AIM_MIN_BYTES, Math.floor(config.limitBytes * AIM_SHARE));
    limitGauge.set(config.limitBytes);
    dramCapGauge.set(config.dramBytes);
  }

  /** The DRAM tier's cap now (its capacity when uncapped). */
  get dramCapBytes(): number {
    return this.#dramCap ?? this.#config.dramBytes;
  }

  /** The last sample and the watchdog's state: what `GET /v1/cache` shows, without sampling again per request. */
  report(): MemoryReport {
    return { ...this.#last, limitBytes: this.#config.limitBytes, dramCapBytes: this.dramCapBytes, uploadBuffersBytes: this.#lastUploads, reclaims: this.#reclaims, reclaimMs: this.#reclaimMs };
  }

  start(intervalMs: number): void {
    if (this.#timer) return;
    this.check();
    this.#timer = setInterval(() => this.check(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One sample and what it calls for. */
  check(): void {
    const { dramBytes, minDramBytes } = this.#config;
    this.#lastUploads = this.#config.uploadBuffers?.() ?? 0;
    uploadsGauge.set(this.#lastUploads);
    const budgetCap = this.#lastUploads > 0 ? Math.max(minDramBytes, dramBytes - this.#lastUploads) : dramBytes;
    this.#sample();
    this.#residentCheck();
    const cap = Math.min(budgetCap, this.#residentCap ?? dramBytes);
    this.#apply(cap >= dramBytes ? undefined : cap, this.#residentCap !== undefined);
  }

  #sample(): number {
    this.#last = this.#config.sample();
    residentGauge.set(this.#last.rssBytes);
    return this.#last.rssBytes;
  }

  /**
   * Sets, moves or lifts the resident cap from the sample just taken. The cap aims at the
   * limit less AIM_SHARE, so that the process stays under the limit between samples; only over
   * the limit itself is garbage reclaimed by force.
   */
  #residentCheck(): void {
    const { limitBytes, dramBytes, minDramBytes } = this.#config;
    const target = this.#aim;
    let rss = this.#last.rssBytes;
    if (rss > limitBytes) {
      overCounter.inc();
      if (this.#now() - this.#lastReclaim >= RECLAIM_EVERY_MS) {
        this.#lastReclaim = this.#now();
        this.#config.reclaim();
        const took = this.#now() - this.#lastReclaim;
        this.#reclaims += 1;
        this.#reclaimMs += took;
        reclaimCounter.inc();
        reclaimSeconds.inc(took / 1000);
        rss = this.#sample();
        // Collected just now: the excess left is real, the cap may move at once.
        this.#lastMove = -Infinity;
      }
    }
    if (rss > target) {
      // What the last move evicted is garbage until a collection (the process's own, which a
      // busy daemon runs several times a second, or a reclaim): wait for one before moving again.
      if (this.#now() - this.#lastMove < RECLAIM_EVERY_MS) return;
      this.#lastMove = this.#now();
      const cap = Math.max(minDramBytes, Math.min(this.dramCapBytes, this.#config.dramUsed()) - (rss - target));
      if (this.#overSince === undefined) {
        this.#overSince = this.#now();
        this.#config.logger.warn({ rssBytes: rss, limitBytes, dramCapBytes: cap }, 'resident memory near its limit; DRAM tier shrunk and readahead paused');
      }
      this.#residentCap = cap;
      return;
    }
    const room = target - this.#hysteresis - rss;
    if (this.#residentCap === undefined || room <= 0) return;
    const cap = this.#residentCap + room;
    if (cap >= dramBytes) {
      this.#config.logger.info({ rssBytes: rss, limitBytes, overMs: this.#now() - (this.#overSince ?? this.#now()) }, 'resident memory back under its limit; DRAM tier and readahead restored');
      this.#overSince = undefined;
      this.#residentCap = undefined;
    } else {
      this.#residentCap = cap;
    }
  }

  #apply(cap: number | undefined, pressure: boolean): void {
    if (cap === this.#dramCap && pressure === this.#pressure) return;
    this.#dramCap = cap;
    this.#pressure = pressure;
    dramCapGauge.set(this.dramCapBytes);
    this.#config.limitDram(cap, pressure);
  }
}
