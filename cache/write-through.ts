import { performance } from 'node:perf_hooks';
import { counter } from '../telemetry/index.js';
import { blockChecksum } from './checksum.js';
import type { DramTier } from './dram-tier.js';
import type { MemoryBudget } from './memory-budget.js';
import type { Tier } from './tier.js';
import type { TierGuard } from './tier-guard.js';

/**
 * Blocks being written to the persistent tiers at once, when the DRAM tier holds them. Two keep
 * a disk busy (one block's write is a 4 MiB pwrite and a rename) without competing with the
 * reader for more CPU. bench/cold-read.ts: a cold read writing through to NVMe ran at 0.39x the
 * rate of the same read without NVMe when every block was written as it arrived, and at 0.56x
 * with this queue (the disk writes themselves cost 2.7 s of system CPU per GiB there).
 */
const WRITE_THROUGH_IN_FLIGHT = 2;
/**
 * Write-through waits while a reader's store fetches are in flight and for this long after the
 * last one ends: the disk write costs CPU (the kernel's copy into the page cache, then
 * writeback) that a cold reader on a 2-core node needs for its own bytes (bench/cold-read.ts:
 * DRAM with NVMe written through read at 0.42x the SDK against 0.55x for DRAM alone while the
 * two ran side by side). The queued blocks stay in DRAM meanwhile, counted in its budget; one
 * DRAM evicts first is written by demotion. 50 ms is a few 4 MiB GETs: a sequential reader's
 * readahead keeps fetches back to back, so the queue drains once the read ends or stalls.
 */
const WRITE_THROUGH_QUIET_MS = 50;
/**
 * Blocks waiting for write-through (their ids; the bytes stay in DRAM). Past this the oldest
 * wait is dropped: when DRAM evicts such a block, demotion writes it instead. 4,096 ids of
 * 4 MiB blocks is 16 GiB of reads the disk may lag behind.
 */
const WRITE_THROUGH_QUEUE_MAX = 4096;

const writeThroughDropped = counter('strata_cache_write_through_dropped_total', 'Blocks not written through to the persistent tiers because the write-through queue was full (written at eviction instead)');

/** What the write-through queue needs of its block cache. */
export interface WriteThroughScope {
  readonly dram: DramTier | undefined;
  /** Persistent tiers, fastest first. */
  readonly lower: readonly Tier[];
  readonly pool: MemoryBudget;
  readonly tiers: TierGuard;
  closed(): boolean;
  /** Whether a load of `id` is in progress (a demotion then leaves it to that load). */
  loading(id: string): boolean;
  notePeak(): void;
}

/**
 * The block cache's writes to its persistent tiers, behind the reader: write-through of
 * fetched and promoted blocks (queued while DRAM holds them, written WRITE_THROUGH_IN_FLIGHT at
 * a time once readers' fetches are quiet, their checksum computed once for every tier) and
 * demotion of blocks DRAM evicts that no persistent tier holds. Blocks on their way to a tier
 * are still served from `writing`. Every write is background work that `settled` and `drain`
 * wait for.
 */
export class WriteThrough {
  readonly #s: WriteThroughScope;
  /** Blocks being written through to persistent tiers, by id: their bytes are still served (and still count in the pool). */
  readonly writing = new Map<string, Buffer>();
  readonly #background = new Set<Promise<void>>();
  /** Blocks in DRAM waiting for write-through, oldest first, with the tiers each goes to. */
  readonly #queue = new Map<string, readonly Tier[]>();
  #inFlight = 0;
  /** Store fetches a reader waits for (foreground priority) in flight, and when the last one ended: write-through waits for quiet. */
  #readerFetches = 0;
  #readerFetchEndedAt = -Infinity;
  /** The pending wait for quiet: its timer, and how to end it early (at close). */
  #quietWait: { readonly timer: NodeJS.Timeout; readonly end: () => void } | undefined;

  constructor(scope: WriteThroughScope) {
    this.#s = scope;
  }

  /** A store fetch a reader waits for started. */
  readerFetchStarted(): void {
    this.#readerFetches += 1;
  }

  /** A store fetch a reader waits for ended (either way). */
  readerFetchEnded(): void {
    this.#readerFetches -= 1;
    this.#readerFetchEndedAt = performance.now();
  }

  /**
   * Writes `bytes` to `tiers` in the background and releases the pool bytes the caller reserved
   * for them: at once when DRAM holds the block (the write waits in the queue, and DRAM's budget
   * counts the bytes), else once written.
   */
  write(id: string, bytes: Buffer, tiers: readonly Tier[]): void {
    const { pool } = this.#s;
    if (this.#s.dram?.peekNow(id) === bytes) {
      pool.release(bytes.length);
      this.#queue.delete(id);
      this.#queue.set(id, tiers);
      if (this.#queue.size > WRITE_THROUGH_QUEUE_MAX) {
        this.#queue.delete(this.#queue.keys().next().value!);
        writeThroughDropped.inc();
      }
      this.#pump();
      return;
    }
    this.writing.set(id, bytes);
    const write = Promise.allSettled(tiers.map((tier) => this.#s.tiers.put(tier, id, bytes))).then(() => {
      if (this.writing.get(id) === bytes) this.writing.delete(id);
      pool.release(bytes.length);
      this.#background.delete(write);
    });
    this.#background.add(write);
  }

  /** DRAM evicted `id`: keep it in the first persistent tier with room unless one already holds it (or is being written it). */
  demote(id: string, bytes: Buffer): void {
    const { lower, pool, tiers } = this.#s;
    this.#queue.delete(id);
    if (this.#s.closed() || lower.length === 0) return;
    if (this.#s.loading(id) || this.writing.has(id) || lower.some((tier) => tiers.has(tier, id))) return;
    if (!pool.tryReserve(bytes.length)) return;
    this.#s.notePeak();
    const write = (async () => {
      const checksum = blockChecksum(bytes);
      for (const tier of lower) if (await tiers.put(tier, id, bytes, checksum)) break;
    })().then(() => {
      pool.release(bytes.length);
      this.#background.delete(write);
    });
    this.#background.add(write);
  }

  /**
   * Resolves once the write-throughs and demotions in progress now have finished (later ones
   * are not waited for).
   */
  async settled(): Promise<void> {
    const queued = [...this.#queue.keys()];
    await Promise.allSettled([...this.#background]);
    while (this.#background.size > 0 && queued.some((id) => this.#queue.has(id) || this.writing.has(id))) await Promise.race([...this.#background]);
  }

  /**
   * Waits until no background write is left (the cache is closed: the queue drains at once).
   * A wait for quiet ends now: its timer is unref'd, and a shutdown with nothing else left to
   * run would otherwise end the process while `close()` still awaited it.
   */
  async drain(): Promise<void> {
    const quiet = this.#quietWait;
    if (quiet !== undefined) {
      clearTimeout(quiet.timer);
      quiet.end();
    }
    while (this.#background.size > 0) await Promise.allSettled([...this.#background]);
  }

  /** Starts queued write-throughs up to WRITE_THROUGH_IN_FLIGHT; blocks DRAM no longer holds were demoted instead. */
  #pump(): void {
    if (this.#queue.size > 0 && !this.#s.closed() && this.#readerFetching()) {
      this.#pumpWhenQuiet();
      return;
    }
    while (this.#inFlight < WRITE_THROUGH_IN_FLIGHT && this.#queue.size > 0) {
      const [id, tiers] = this.#queue.entries().next().value!;
      this.#queue.delete(id);
      const bytes = this.#s.dram?.peekNow(id);
      if (bytes === undefined) continue;
      this.#inFlight += 1;
      // Served from here should DRAM evict it mid-write (at most WRITE_THROUGH_IN_FLIGHT blocks outside any budget).
      this.writing.set(id, bytes);
      const checksum = blockChecksum(bytes);
      const write = Promise.allSettled(tiers.map((tier) => this.#s.tiers.put(tier, id, bytes, checksum))).then(() => {
        if (this.writing.get(id) === bytes) this.writing.delete(id);
        this.#inFlight -= 1;
        this.#background.delete(write);
        this.#pump();
      });
      this.#background.add(write);
    }
  }

  /** Whether a reader's store fetch is in flight or ended less than WRITE_THROUGH_QUIET_MS ago. */
  #readerFetching(): boolean {
    return this.#readerFetches > 0 || performance.now() - this.#readerFetchEndedAt < WRITE_THROUGH_QUIET_MS;
  }

  /**
   * Runs `#pump` again WRITE_THROUGH_QUIET_MS from now (one wait at a time). The wait is
   * background work, so `settled` and `drain` wait for the writes behind it.
   */
  #pumpWhenQuiet(): void {
    if (this.#quietWait !== undefined) return;
    let end!: () => void;
    const wait: Promise<void> = new Promise<void>((resolve) => (end = resolve)).then(() => {
      this.#background.delete(wait);
      this.#quietWait = undefined;
      this.#pump();
    });
    // Unref'd: a cache's lag is no reason to keep the process alive; close() drains the queue.
    this.#quietWait = { timer: setTimeout(end, WRITE_THROUGH_QUIET_MS).unref(), end };
    this.#background.add(wait);
  }
}
