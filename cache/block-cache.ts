import { setMaxListeners } from 'node:events';
import { open } from 'node:fs/promises';
import { StoreError } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import { counter } from '../telemetry/index.js';
import { blockCount, blockId, blockKeyOf, blockLength } from './block-key.js';
import type { BlockCacheConfig } from './block-cache-config.js';
import type { FetchIntent, FetchRange } from './fetch-request.js';
import { DramTier } from './dram-tier.js';
import { MemoryBudget } from './memory-budget.js';
import { NvmeTier } from './nvme-tier.js';
import type { BlockFiles, ObjectReader, ReadSession, ReadSessionOptions } from './object-reader.js';
import type { ObjectRef } from '../store/index.js';
import { PmemTier } from './pmem-tier.js';
import { SequentialDetector } from './sequential-detector.js';
import { locateBlockFiles } from './block-files.js';
import { TierGuard } from './tier-guard.js';
import { WriteThrough } from './write-through.js';
import type { Tier, TierName, TierStats } from './tier.js';
import { CacheError } from './cache-error.js';

/** The persistent tiers a cache runs over, already open (tests pass their own). */
export interface PersistentTiers {
  readonly pmem?: Tier;
  readonly nvme?: Tier;
}

/** Counters of what the cache asked of the store. */
export interface FetchStats {
  readonly blocksFetched: number;
  readonly bytesFetched: number;
  /** Reads that found their block already being fetched or loaded and waited for it. */
  readonly coalescedWaits: number;
  readonly readaheadBlocks: number;
  /** Readahead blocks not fetched because the memory budget was short. */
  readonly readaheadSkipped: number;
}

/** Where the memory budget stands. `peakBytes` is the most the DRAM tier and the I/O pool held together. */
export interface MemoryStats {
  readonly budgetBytes: number;
  readonly dramBytes: number;
  readonly ioPoolBytes: number;
  readonly ioPoolUsedBytes: number;
  readonly usedBytes: number;
  readonly peakBytes: number;
}

/** What `BlockCache.warmBlock` did with one block. */
export interface WarmedBlock {
  /** The block's length in bytes. */
  readonly bytes: number;
  /** Whether the block is now in the target tier (false: that tier refused it, e.g. full of pinned blocks). */
  readonly placed: boolean;
}

/**
 * Reads within this distance of the previous read's end count as sequential: 8 FUSE
 * requests of 1 MiB, the native FUSE path's size, whose reader threads and the kernel's
 * asynchronous read-ahead can deliver them out of order (with 128 KiB, 1 MiB reordered
 * reads reset the block read-ahead: bench/native-fuse, NVMe after a restart).
 */
const SEQUENTIAL_TOLERANCE = 8 * 1024 * 1024;

/** A job warming one block (`warmBlock`): background work. */
const WARM: FetchIntent = Object.freeze({ priority: 'background', origin: 'warm' });

const fetchedBlocksMetric = counter('strata_cache_store_blocks_total', 'Blocks the block cache fetched from the store');
const fetchedBytesMetric = counter('strata_cache_store_bytes_total', 'Bytes the block cache fetched from the store');

class CacheSession implements ReadSession {
  readonly ref: ObjectRef;
  readonly detector: SequentialDetector;
  /** What this session's fetches are for; its readahead keeps the priority. */
  readonly intent: FetchIntent;
  /** Without a DRAM tier, the block this session read last (its bytes reserved in the I/O pool). */
  held: { index: number; bytes: Buffer } | undefined;
  /** The last block and window readahead looked at: reads within one block (32 of 128 KiB in 4 MiB) look once. */
  readaheadSeen = { lastBlock: -1, window: 0 };

  constructor(ref: ObjectRef, detector: SequentialDetector, intent: FetchIntent) {
    this.ref = ref;
    this.detector = detector;
    this.intent = intent;
  }
}

/**
 * The tiered block cache. Reads are cut into fixed-size blocks, looked up in DRAM, then
 * pmem, then nvme, then fetched from the store with a ranged GET.
 *
 * - A block found in a lower tier is promoted to DRAM and to the tiers above it.
 * - A block fetched from the store goes to DRAM and is written through, in the
 *   background, to every persistent tier (inclusive caching), so the persistent tiers
 *   survive a daemon crash with everything read so far, not only what DRAM evicted.
 *   Write-through lags behind the reader: blocks DRAM holds wait in a queue and are written
 *   WRITE_THROUGH_IN_FLIGHT at a time (write-through.ts), not while a reader's fetches are in flight (nor
 *   WRITE_THROUGH_QUIET_MS after), their checksum computed once for every tier; a
 *   read never waits for it, and the block counts in DRAM's budget only (not the I/O pool).
 *   A block DRAM evicts that no persistent tier holds (its write failed, was refused or
 *   has not happened yet) is demoted to the first persistent tier with room.
 * - Concurrent misses of one block share one load (one GET).
 * - A read spanning blocks loads them in parallel, at most `maxParallelFetches` at a time.
 * - A session that reads sequentially gets readahead of the following blocks.
 * - Memory: the DRAM tier holds at most `dramBytes`; every other block buffer (fetch,
 *   tier read, write-through in progress, readahead, a DRAM-less session's current
 *   block) is reserved from the `ioPoolBytes` pool first. Readahead only takes pool
 *   space that leaves a quarter of the pool free for demand reads, and is skipped
 *   otherwise. Demand reads wait for room. Buffers a read returns belong to the caller.
 * - A tier that fails is a miss (tiers count and log it); a store error fails the read.
 */
export class BlockCache implements ObjectReader {
  readonly #config: BlockCacheConfig;
  readonly #logger: Logger;
  readonly #fetchRange: FetchRange;
  readonly #dram: DramTier | undefined;
  /** Persistent tiers, fastest first. */
  readonly #lower: Tier[];
  readonly #pool: MemoryBudget;
  readonly #loads = new Map<string, Promise<Buffer | undefined>>();
  /** Writes to the persistent tiers behind the reader: write-through and demotion (write-through.ts). */
  readonly #writes: WriteThrough;
  /** Blocks on their way to a persistent tier, by id: still served from here. */
  readonly #writing: Map<string, Buffer>;
  readonly #tiers: TierGuard;
  readonly #abort = new AbortController();
  #peak = 0;
  #fetch = { blocksFetched: 0, bytesFetched: 0, coalescedWaits: 0, readaheadBlocks: 0, readaheadSkipped: 0 };
  #closed = false;
  /**
   * Readahead window, capped at a quarter of the DRAM tier's blocks: prefetched blocks land in
   * DRAM, and a window wider than DRAM would evict the block being read before it is used
   * (measured: a 16 MiB DRAM tier with 8-block readahead served 11 MiB/s from pmem instead of
   * hundreds). Without DRAM, readahead blocks are held in the I/O pool and the cap does not apply.
   */
  readonly #readaheadBlocks: number;

  constructor(config: BlockCacheConfig, logger: Logger, fetchRange: FetchRange, tiers: PersistentTiers = {}) {
    this.#config = config;
    this.#readaheadBlocks = config.dramBytes > 0 ? Math.min(config.readaheadMaxBlocks, Math.floor(config.dramBytes / config.blockSize / 4)) : config.readaheadMaxBlocks;
    this.#logger = logger;
    this.#tiers = new TierGuard(logger);
    this.#fetchRange = fetchRange;
    this.#pool = new MemoryBudget(config.ioPoolBytes, Math.max(config.blockSize, Math.floor(config.ioPoolBytes / 4)));
    // Every in-flight fetch and every reader waiting for memory listens on this signal.
    setMaxListeners(0, this.#abort.signal);
    this.#lower = [tiers.pmem, tiers.nvme].filter((tier): tier is Tier => tier !== undefined);
    if (config.dramBytes > 0) this.#dram = new DramTier({ capacityBytes: config.dramBytes }, logger);
    this.#writes = new WriteThrough({
      dram: this.#dram,
      lower: this.#lower,
      pool: this.#pool,
      tiers: this.#tiers,
      closed: () => this.#closed,
      loading: (id) => this.#loads.has(id),
      notePeak: () => this.#notePeak(),
    });
    this.#writing = this.#writes.writing;
    this.#dram?.onEvict((id, bytes) => this.#writes.demote(id, bytes));
  }

  /** Opens the persistent tiers the config names and builds the cache over them. */
  static async open(config: BlockCacheConfig, logger: Logger, fetchRange: FetchRange): Promise<BlockCache> {
    const pmem = config.pmem === undefined ? undefined : await PmemTier.open({ ...config.pmem, blockSize: config.blockSize, ...(config.isPinned ? { isPinned: config.isPinned } : {}) }, logger);
    let nvme: NvmeTier | undefined;
    try {
      nvme = config.nvme === undefined ? undefined : await NvmeTier.open({ ...config.nvme, ...(config.isPinned ? { isPinned: config.isPinned } : {}) }, logger);
    } catch (err) {
      await pmem?.close();
      throw err;
    }
    return new BlockCache(config, logger, fetchRange, { pmem, nvme });
  }

  get config(): BlockCacheConfig {
    return this.#config;
  }

  openSession(ref: ObjectRef, options: ReadSessionOptions = {}): ReadSession {
    return new CacheSession(ref, new SequentialDetector(this.#config.blockSize, this.#readaheadBlocks, SEQUENTIAL_TOLERANCE), { priority: options.priority ?? 'foreground', origin: options.origin ?? 'read' });
  }

  closeSession(session: ReadSession): void {
    const cacheSession = session as CacheSession;
    this.#dropHeld(cacheSession);
  }

  async read(session: ReadSession, offset: number, length: number): Promise<Buffer> {
    const cacheSession = session as CacheSession;
    const { ref } = cacheSession;
    const size = this.#config.blockSize;
    const end = Math.min(offset + length, ref.size);
    if (offset >= end) return Buffer.alloc(0);
    const first = Math.floor(offset / size);
    const last = Math.floor((end - 1) / size);
    this.#readahead(cacheSession, offset, end, last);
    if (first === last) {
      const block = await this.#sessionBlock(cacheSession, first);
      return block.subarray(offset - first * size, end - first * size);
    }
    const blocks = await this.#loadAll(ref, first, last, cacheSession.intent);
    const parts = blocks.map((block, i) => {
      const blockStart = (first + i) * size;
      return block.subarray(Math.max(offset, blockStart) - blockStart, Math.min(end, blockStart + block.length) - blockStart);
    });
    return Buffer.concat(parts, end - offset);
  }

  /** Blocks of the session's object in a file tier (the first that has each), for native reads. */
  locate(session: ReadSession): BlockFiles | undefined {
    if (this.#closed) return undefined;
    return locateBlockFiles((session as CacheSession).ref, this.#config.blockSize, this.#lower);
  }

  /**
   * Caches block `index` of `ref` for a prefetch job, without handing its bytes to anyone.
   *
   * - `tier` absent or `'dram'`: exactly what a read of the block does (DRAM, written
   *   through in the background to every persistent tier).
   * - `tier` `'pmem'` or `'nvme'`: the block ends up in that tier before this resolves. If
   *   that tier has it already, nothing happens. If another tier (or DRAM) has it, it is
   *   copied from there. Otherwise it is fetched and written to every persistent tier, as
   *   a fetched block always is, but not put into DRAM, so warming a data set onto NVMe
   *   does not push the DRAM working set out.
   *
   * Concurrent reads of the same block share the fetch. Throws CACHE_TIER_INVALID if
   * `tier` is not configured, and what a read throws when the store fails.
   */
  async warmBlock(ref: ObjectRef, index: number, tier?: TierName): Promise<WarmedBlock> {
    const length = blockLength(ref.size, this.#config.blockSize, index);
    if (tier === undefined || tier === 'dram') {
      if (tier === 'dram' && this.#dram === undefined) throw new CacheError('CACHE_TIER_INVALID', 'there is no dram tier to warm blocks into');
      await this.#loadBlock(ref, index, WARM);
      return { bytes: length, placed: true };
    }
    const target = this.#lower.find((t) => t.name === tier);
    if (target === undefined) throw new CacheError('CACHE_TIER_INVALID', `there is no ${tier} tier to warm blocks into`);
    if (this.#closed) throw new StoreError('STORE_IO', 'the block cache is closed');
    const id = blockId(blockKeyOf(ref, index));
    if (this.#tiers.has(target, id)) return { bytes: length, placed: true };
    await this.#pool.reserve(length, this.#abort.signal);
    this.#notePeak();
    try {
      const known = this.#dram?.peekNow(id) ?? this.#writing.get(id) ?? (await this.#loads.get(id)) ?? (await this.#fromOtherTiers(id, length, target));
      if (known !== undefined && known.length === length) return { bytes: length, placed: await this.#tiers.put(target, id, known) };
      const fetch = this.#fetchBlock(ref, index, length, WARM);
      // Reads of this block while it is fetched wait for these bytes instead of fetching again.
      this.#loads.set(id, fetch);
      const bytes = await fetch.finally(() => this.#loads.delete(id));
      this.#writing.set(id, bytes);
      try {
        const placed = await Promise.all(this.#lower.map((t) => this.#tiers.put(t, id, bytes)));
        return { bytes: length, placed: placed[this.#lower.indexOf(target)]! };
      } finally {
        if (this.#writing.get(id) === bytes) this.#writing.delete(id);
      }
    } finally {
      this.#pool.release(length);
    }
  }

  /**
   * Takes the bytes of a freshly uploaded object version from a local file (the write path's
   * staged copy), so the next read of a checkpoint needs no GET: every block goes to DRAM and
   * through to the persistent tiers, as a fetched block would. Blocks that do not fit the
   * memory budget right now are skipped (a later read fetches them).
   */
  async adopt(ref: ObjectRef, file: string): Promise<number> {
    const handle = await open(file, 'r');
    let adopted = 0;
    try {
      for (let index = 0; index < blockCount(ref.size, this.#config.blockSize); index += 1) {
        const length = blockLength(ref.size, this.#config.blockSize, index);
        if (!this.#pool.tryReserve(length)) break;
        const bytes = Buffer.allocUnsafe(length);
        const { bytesRead } = await handle.read(bytes, 0, length, index * this.#config.blockSize);
        if (bytesRead !== length) {
          this.#pool.release(length);
          break;
        }
        const id = blockId(blockKeyOf(ref, index));
        this.#promote(id, bytes);
        if (this.#lower.length > 0) this.#writes.write(id, bytes, this.#lower);
        else this.#pool.release(length);
        adopted += 1;
      }
    } finally {
      await handle.close();
    }
    return adopted;
  }

  /**
   * Drops every block of one object version from every tier (a sync found it changed or
   * gone). Blocks of other versions of the same key are untouched. Answers blocks dropped.
   */
  async evictObject(ref: ObjectRef): Promise<number> {
    let dropped = 0;
    const tiers = [...(this.#dram ? [this.#dram] : []), ...this.#lower];
    for (let index = 0; index < blockCount(ref.size, this.#config.blockSize); index += 1) {
      const id = blockId(blockKeyOf(ref, index));
      this.#writing.delete(id);
      for (const tier of tiers) {
        if (!this.#tiers.has(tier, id)) continue;
        dropped += 1;
        await tier.delete(id).catch((err: unknown) => this.#tiers.failed(tier, 'delete', err));
      }
    }
    return dropped;
  }

  /** Per tier, fastest first: capacity, use, hits, misses, evictions, checksum mismatches, I/O errors. */
  stats(): TierStats[] {
    return [...(this.#dram ? [this.#dram] : []), ...this.#lower].map((tier) => tier.stats());
  }

  fetchStats(): FetchStats {
    return { ...this.#fetch };
  }

  memory(): MemoryStats {
    const dramUsed = this.#dram?.usedBytes ?? 0;
    return {
      budgetBytes: this.#config.memoryBudgetBytes,
      dramBytes: this.#config.dramBytes,
      ioPoolBytes: this.#config.ioPoolBytes,
      ioPoolUsedBytes: this.#pool.usedBytes,
      usedBytes: dramUsed + this.#pool.usedBytes,
      peakBytes: this.#peak,
    };
  }

  /**
   * Memory pressure from outside the cache's accounting (the daemon's memory watchdog):
   * `dramBytes` caps the DRAM tier below its capacity (least recently used blocks are evicted
   * now, and demoted as any eviction) and readahead is refused; undefined lifts both.
   */
  limitMemory(dramBytes: number | undefined): void {
    this.#dram?.limit(dramBytes);
    this.#pool.underPressure = dramBytes !== undefined;
  }

  /**
   * Resolves once the write-throughs and demotions in progress now have finished (later ones
   * are not waited for): a prefetch job is done when its blocks are in the persistent tiers.
   */
  async writesSettled(): Promise<void> {
    await this.#writes.settled();
  }

  /** Waits for write-through in progress, then closes the tiers. Reads after close fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    await Promise.allSettled([...this.#loads.values()]);
    await this.#writes.drain();
    await this.#dram?.close();
    for (const tier of this.#lower) await tier.close();
  }

  async #sessionBlock(session: CacheSession, index: number): Promise<Buffer> {
    if (session.held?.index === index) return session.held.bytes;
    const bytes = await this.#loadBlock(session.ref, index, session.intent);
    if (this.#dram === undefined) {
      this.#dropHeld(session);
      // Readahead-class: a held block never takes the share kept free for demand reads,
      // so sessions left open cannot starve other readers.
      if (this.#pool.tryReserveReadahead(bytes.length)) {
        session.held = { index, bytes };
        this.#notePeak();
      }
    }
    return bytes;
  }

  #dropHeld(session: CacheSession): void {
    if (session.held === undefined) return;
    this.#pool.release(session.held.bytes.length);
    session.held = undefined;
  }

  async #loadAll(ref: ObjectRef, first: number, last: number, intent: FetchIntent): Promise<Buffer[]> {
    const blocks: Buffer[] = new Array<Buffer>(last - first + 1);
    let next = first;
    const worker = async (): Promise<void> => {
      while (next <= last) {
        const index = next++;
        blocks[index - first] = await this.#loadBlock(ref, index, intent);
      }
    };
    const workers = Math.min(this.#config.maxParallelFetches, last - first + 1);
    await Promise.all(Array.from({ length: workers }, worker));
    return blocks;
  }

  /** A block for a demand read: from DRAM, a coalesced load, a lower tier or the store. */
  async #loadBlock(ref: ObjectRef, index: number, intent: FetchIntent): Promise<Buffer> {
    if (this.#closed) throw new StoreError('STORE_IO', 'the block cache is closed');
    const id = blockId(blockKeyOf(ref, index));
    const length = blockLength(ref.size, this.#config.blockSize, index);
    const hit = this.#dram?.getNow(id);
    if (hit !== undefined) {
      if (hit.length === length) return hit;
      // Every hit is length-checked as lower tiers' are: a block of another length is not this block.
      await this.#dram!.delete(id);
    }
    let load = this.#loads.get(id);
    if (load === undefined) {
      load = this.#startLoad(ref, index, id, length, intent);
    } else {
      this.#fetch.coalescedWaits += 1;
    }
    const bytes = await load;
    // A readahead load that was skipped for lack of memory answers undefined: load again on demand.
    return bytes ?? (await this.#loadBlock(ref, index, intent));
  }

  #startLoad(ref: ObjectRef, index: number, id: string, length: number, intent: FetchIntent): Promise<Buffer | undefined> {
    const load = this.#load(ref, index, id, length, intent).finally(() => this.#loads.delete(id));
    this.#loads.set(id, load);
    return load;
  }

  /** A readahead load (`intent.origin` `'readahead'`) takes only spare pool memory, and answers undefined without it. */
  async #load(ref: ObjectRef, index: number, id: string, length: number, intent: FetchIntent): Promise<Buffer | undefined> {
    const readahead = intent.origin === 'readahead';
    if (readahead) {
      if (!this.#pool.tryReserveReadahead(length)) {
        this.#fetch.readaheadSkipped += 1;
        return undefined;
      }
    } else {
      await this.#pool.reserve(length, this.#abort.signal);
    }
    this.#notePeak();
    let releaseNow = true;
    try {
      // Still on its way to a persistent tier (DRAM may already have evicted it): serve those bytes.
      const writing = this.#writing.get(id);
      if (writing !== undefined && writing.length === length) {
        this.#promote(id, writing);
        return writing;
      }
      for (let level = 0; level < this.#lower.length; level += 1) {
        const tier = this.#lower[level];
        const bytes = await this.#tiers.get(tier, id);
        if (bytes === undefined || bytes.length !== length) continue;
        this.#promote(id, bytes);
        const above = this.#lower.slice(0, level);
        if (above.length > 0) {
          releaseNow = false;
          this.#writes.write(id, bytes, above);
        }
        return bytes;
      }
      const bytes = await this.#fetchBlock(ref, index, length, intent);
      if (readahead) this.#fetch.readaheadBlocks += 1;
      this.#promote(id, bytes);
      if (this.#lower.length > 0) {
        releaseNow = false;
        this.#writes.write(id, bytes, this.#lower);
      }
      return bytes;
    } finally {
      if (releaseNow) this.#pool.release(length);
    }
  }

  /** Block `index` of `ref` from the store, exactly `length` bytes, counted. */
  async #fetchBlock(ref: ObjectRef, index: number, length: number, intent: FetchIntent): Promise<Buffer> {
    const forReader = intent.priority === 'foreground';
    if (forReader) this.#writes.readerFetchStarted();
    let bytes: Buffer;
    try {
      bytes = await this.#fetchRange({ ref, range: { start: index * this.#config.blockSize, length }, signal: this.#abort.signal, priority: intent.priority, origin: intent.origin });
    } finally {
      if (forReader) this.#writes.readerFetchEnded();
    }
    if (bytes.length !== length) {
      throw new StoreError('STORE_IO', `store answered ${bytes.length} bytes for block ${index} of ${ref.key}, expected ${length}`);
    }
    this.#fetch.blocksFetched += 1;
    this.#fetch.bytesFetched += length;
    fetchedBlocksMetric.inc();
    fetchedBytesMetric.inc(length);
    return bytes;
  }

  /** The block from a persistent tier other than `except`, or undefined. */
  async #fromOtherTiers(id: string, length: number, except: Tier): Promise<Buffer | undefined> {
    for (const tier of this.#lower) {
      if (tier === except || !this.#tiers.has(tier, id)) continue;
      const bytes = await this.#tiers.get(tier, id);
      if (bytes !== undefined && bytes.length === length) return bytes;
    }
    return undefined;
  }

  #promote(id: string, bytes: Buffer): void {
    if (this.#dram === undefined) return;
    this.#dram.putNow(id, bytes);
    this.#notePeak();
  }

  #readahead(session: CacheSession, offset: number, end: number, lastBlock: number): void {
    const window = session.detector.observe(offset, end);
    if (window === 0 || this.#closed || (this.#dram === undefined && this.#lower.length === 0)) return;
    if (session.readaheadSeen.lastBlock === lastBlock && session.readaheadSeen.window === window) return;
    session.readaheadSeen = { lastBlock, window };
    const { ref } = session;
    const count = blockCount(ref.size, this.#config.blockSize);
    for (let index = lastBlock + 1; index <= Math.min(lastBlock + window, count - 1); index += 1) {
      const id = blockId(blockKeyOf(ref, index));
      if (this.#loads.has(id)) continue;
      if (this.#dram !== undefined ? this.#dram.has(id) : this.#lower.some((tier) => this.#tiers.has(tier, id))) continue;
      const load = this.#startLoad(ref, index, id, blockLength(ref.size, this.#config.blockSize, index), { priority: session.intent.priority, origin: 'readahead' });
      load.catch((err: unknown) => this.#logger.debug({ err, key: ref.key, index }, 'readahead fetch failed'));
    }
  }

  #notePeak(): void {
    const used = (this.#dram?.usedBytes ?? 0) + this.#pool.usedBytes;
    if (used > this.#peak) this.#peak = used;
  }
}
