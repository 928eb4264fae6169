import { counter, gauge } from '../telemetry/index.js';
import type { Logger } from '../telemetry/index.js';

/** What the watchdog acts on; the daemon passes the process and the block cache, tests pass fakes. */
export interface MemoryWatchdogConfig {
  /** The process's resident size may not stay above this: `--memory` plus the fixed overhead. */
  readonly limitBytes: number;
  /** The DRAM tier's configured capacity: what it gets back once the process is under its limit again. */
  readonly dramBytes: number;
  /** The DRAM tier is never squeezed below this (a few blocks, so sequential reads still get their block from memory). */
  readonly minDramBytes: number;
  /** Resident bytes now (process.memoryUsage.rss(): one read of /proc/self/statm). */
  readonly rss: () => number;
  /** Bytes the DRAM tier holds now. */
  readonly dramUsed: () => number;
  /** A full garbage collection and the allocator's trim; may pause the caller for tens of ms. */
  readonly reclaim: () => void;
  /** Caps the DRAM tier at `bytes` (evicting now) and refuses readahead; undefined lifts the cap. */
  readonly limitDram: (bytes: number | undefined) => void;
  readonly logger: Logger;
  /** Milliseconds; injected by tests. */
  readonly now?: () => number;
}

/**
 * Below the limit by this much before the DRAM tier gets room back: the process's size moves
 * by a few blocks every second under load, and a cap lifted as soon as it fits would be set
 * again on the next tick. 5% of the limit, at least 8 MiB (two 4 MiB blocks).
 */
const HYSTERESIS_SHARE = 0.05;
const HYSTERESIS_MIN_BYTES = 8 * 1024 * 1024;
/**
 * A full collection pauses the event loop (20-80 ms with hundreds of MiB of buffers, see
 * process-memory.ts), and garbage takes a second or two of load to pile up again: one every 2 s
 * at most keeps the pauses under 4% of the loop's time.
 */
const RECLAIM_EVERY_MS = 2_000;

const residentGauge = gauge('strata_memory_resident_bytes', "The daemon's resident size as the memory watchdog last sampled it");
const limitGauge = gauge('strata_memory_limit_bytes', 'The resident size the memory watchdog holds the daemon under: --memory plus the fixed overhead');
const dramCapGauge = gauge('strata_memory_dram_cap_bytes', 'What the memory watchdog lets the DRAM tier hold now (its capacity when the process is under its limit)');
const overCounter = counter('strata_memory_over_limit_total', 'Watchdog samples that found the resident size over its limit (each one reclaims, and shrinks the DRAM tier if still over)');
const reclaimCounter = counter('strata_memory_reclaims_total', 'Full garbage collections and allocator trims the memory watchdog ran');

/**
 * Holds the daemon's resident size under `--memory` plus a fixed overhead. The cache's own
 * accounting (DRAM tier plus the I/O pool) covers the buffers it knows of; the rest of the
 * process (V8's heap, garbage not yet collected, upload parts, requests in flight, sockets,
 * native threads, allocator fragmentation) varies with the load. Each sample:
 *
 * - over the limit: reclaim garbage (at most every RECLAIM_EVERY_MS), sample again, and if
 *   still over, cap the DRAM tier below what it holds by the excess (never below
 *   `minDramBytes`); while capped, readahead is refused. Evicted blocks are garbage until the
 *   next reclaim, so the cap moves only right after one: samples in between wait;
 * - under the limit by the hysteresis: give the DRAM tier back the room now free, up to its
 *   capacity, when the cap is lifted.
 *
 * `check` does one sample (tests call it); `start` samples on a timer.
 */
export class MemoryWatchdog {
  readonly #config: MemoryWatchdogConfig;
  readonly #now: () => number;
  readonly #hysteresis: number;
  /** The DRAM tier's cap, or undefined when it may use its whole capacity. */
  #dramCap: number | undefined;
  #lastReclaim = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  #overSince: number | undefined;

  constructor(config: MemoryWatchdogConfig) {
    this.#config = config;
    this.#now = config.now ?? Date.now;
    this.#hysteresis = Math.max(HYSTERESIS_MIN_BYTES, Math.floor(config.limitBytes * HYSTERESIS_SHARE));
    limitGauge.set(config.limitBytes);
    dramCapGauge.set(config.dramBytes);
  }

  /** The DRAM tier's cap now (its capacity when uncapped). */
  get dramCapBytes(): number {
    return this.#dramCap ?? this.#config.dramBytes;
  }

  start(intervalMs: number): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.check(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One sample and what it calls for. */
  check(): void {
    const { limitBytes, dramBytes, minDramBytes } = this.#config;
    let rss = this.#config.rss();
    residentGauge.set(rss);
    if (rss > limitBytes) {
      overCounter.inc();
      // What the last cap evicted is collected by the next reclaim; until then, wait.
      if (this.#now() - this.#lastReclaim < RECLAIM_EVERY_MS) return;
      this.#lastReclaim = this.#now();
      this.#config.reclaim();
      reclaimCounter.inc();
      rss = this.#config.rss();
      residentGauge.set(rss);
    }
    if (rss > limitBytes) {
      const cap = Math.max(minDramBytes, Math.min(this.dramCapBytes, this.#config.dramUsed()) - (rss - limitBytes));
      if (this.#overSince === undefined) {
        this.#overSince = this.#now();
        this.#config.logger.warn({ rssBytes: rss, limitBytes, dramCapBytes: cap }, 'resident memory over its limit; DRAM tier shrunk and readahead paused');
      }
      this.#setCap(cap);
      return;
    }
    if (this.#dramCap === undefined || rss > limitBytes - this.#hysteresis) return;
    const room = limitBytes - this.#hysteresis - rss;
    const cap = this.#dramCap + room;
    if (cap >= dramBytes) {
      this.#config.logger.info({ rssBytes: rss, limitBytes, overMs: this.#now() - (this.#overSince ?? this.#now()) }, 'resident memory back under its limit; DRAM tier and readahead restored');
      this.#overSince = undefined;
      this.#setCap(undefined);
    } else {
      this.#setCap(cap);
    }
  }

  #setCap(cap: number | undefined): void {
    if (cap === this.#dramCap) return;
    this.#dramCap = cap;
    dramCapGauge.set(this.dramCapBytes);
    this.#config.limitDram(cap);
  }
}
