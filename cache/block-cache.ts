import { setMaxListeners } from 'node:events';
import type { ObjectRef } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import { blockCount, blockId, blockKeyOf } from './block-key.js';
import type { BlockCacheConfig } from './block-cache-config.js';
import { BlockLoader, type FetchStats } from './block-loader.js';
import { BlockWarming, type WarmedBlock } from './block-warming.js';
import type { CacheScope } from './cache-scope.js';
import { CacheSession } from './cache-session.js';
import type { FetchRange } from './fetch-request.js';
import { DramTier } from './dram-tier.js';
import { MemoryBudget } from './memory-budget.js';
import { NvmeTier } from './nvme-tier.js';
import type { BlockFiles, ObjectReader, ReadSession, ReadSessionOptions } from './object-reader.js';
import { PmemTier } from './pmem-tier.js';
import { Readahead } from './readahead.js';
import { SequentialDetector } from './sequential-detector.js';
import { locateBlockFiles } from './block-files.js';
import { TierGuard } from './tier-guard.js';
import { WriteThrough } from './write-through.js';
import { WholeAssembler } from './whole-assembler.js';
import type { Tier, TierName, TierStats } from './tier.js';

export type { FetchStats } from './block-loader.js';
export type { WarmedBlock } from './block-warming.js';

/** The persistent tiers a cache runs over, already open (tests pass their own). */
export interface PersistentTiers {
  readonly pmem?: Tier;
  readonly nvme?: Tier;
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

/**
 * Reads within this distance of the previous read's end count as sequential: 8 FUSE
 * requests of 1 MiB, the native FUSE path's size, whose reader threads and the kernel's
 * asynchronous read-ahead can deliver them out of order (with 128 KiB, 1 MiB reordered
 * reads reset the block read-ahead: bench/native-fuse, NVMe after a restart).
 */
const SEQUENTIAL_TOLERANCE = 8 * 1024 * 1024;

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
 * - Concurrent misses of one block share one load (one GET): block-loader.ts.
 * - A read spanning blocks loads them in parallel, at most `maxParallelFetches` at a time.
 * - A session that reads sequentially gets readahead of the following blocks (readahead.ts).
 * - Memory: the DRAM tier holds at most `dramBytes`; every other block buffer (fetch,
 *   tier read, write-through in progress, readahead, a DRAM-less session's current
 *   block) is reserved from the `ioPoolBytes` pool first. Readahead only takes pool
 *   space that leaves a quarter of the pool free for demand reads, and is skipped
 *   otherwise. Demand reads wait for room. Buffers a read returns belong to the caller.
 * - A tier that fails is a miss (tiers count and log it); a store error fails the read.
 */
export class BlockCache implements ObjectReader {
  readonly #config: BlockCacheConfig;
  readonly #dram: DramTier | undefined;
  /** Persistent tiers, fastest first. */
  readonly #lower: Tier[];
  readonly #pool: MemoryBudget;
  readonly #tiers: TierGuard;
  /** Writes to the persistent tiers behind the reader: write-through and demotion (write-through.ts). */
  readonly #writes: WriteThrough;
  readonly #loader: BlockLoader;
  readonly #readahead: Readahead;
  readonly #warming: BlockWarming;
  /** Makes objects whole in the NVMe tier for passthrough (whole-assembler.ts); undefined without whole files. */
  /** One per tier that makes whole files, pmem before NVMe (the faster file is handed out first). */
  readonly #wholes: WholeAssembler[];
  readonly #abort = new AbortController();
  #peak = 0;
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
    this.#tiers = new TierGuard(logger);
    this.#pool = new MemoryBudget(config.ioPoolBytes, Math.max(config.blockSize, Math.floor(config.ioPoolBytes / 4)));
    // Every in-flight fetch and every reader waiting for memory listens on this signal.
    setMaxListeners(0, this.#abort.signal);
    this.#lower = [tiers.pmem, tiers.nvme].filter((tier): tier is Tier => tier !== undefined);
    if (config.dramBytes > 0) this.#dram = new DramTier({ capacityBytes: config.dramBytes }, logger);
    let loader: BlockLoader | undefined;
    this.#writes = new WriteThrough({
      dram: this.#dram,
      lower: this.#lower,
      pool: this.#pool,
      tiers: this.#tiers,
      closed: () => this.#closed,
      loading: (id) => loader?.loading(id) ?? false,
      notePeak: () => this.#notePeak(),
    });
    const scope: CacheScope = {
      config,
      logger,
      dram: this.#dram,
      lower: this.#lower,
      pool: this.#pool,
      tiers: this.#tiers,
      writes: this.#writes,
      signal: this.#abort.signal,
      closed: () => this.#closed,
      promote: (id, bytes) => this.#promote(id, bytes),
      notePeak: () => this.#notePeak(),
    };
    loader = new BlockLoader(scope, fetchRange);
    this.#loader = loader;
    this.#readahead = new Readahead(scope, loader);
    this.#warming = new BlockWarming(scope, loader);
    this.#dram?.onEvict((id, bytes) => this.#writes.demote(id, bytes));
    const fileTiers: Array<[Tier | undefined, boolean | undefined]> = [
      [tiers.pmem, config.pmem?.wholeFiles],
      [tiers.nvme, config.nvme?.wholeFiles],
    ];
    this.#wholes = fileTiers.flatMap(([tier, wanted]) =>
      tier?.assembleWhole !== undefined && tier.wholeFile !== undefined && wanted !== false
        ? [
            new WholeAssembler({
              tier: tier as Tier & Required<Pick<Tier, 'assembleWhole' | 'wholeFile'>>,
              blockSize: config.blockSize,
              pool: this.#pool,
              settled: () => this.#writes.settled(),
              closed: () => this.#closed,
            }),
          ]
        : [],
    );
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
    this.#dropHeld(session as CacheSession);
    // Its blocks may all be in the NVMe tier once written through: make it whole for the next open.
    this.#offerWhole(session.ref);
  }

  async read(session: ReadSession, offset: number, length: number): Promise<Buffer> {
    const cacheSession = session as CacheSession;
    const { ref } = cacheSession;
    const size = this.#config.blockSize;
    const end = Math.min(offset + length, ref.size);
    if (offset >= end) return Buffer.alloc(0);
    const first = Math.floor(offset / size);
    const last = Math.floor((end - 1) / size);
    this.#readahead.afterRead(cacheSession, offset, end, last);
    if (first === last) {
      const block = await this.#sessionBlock(cacheSession, first);
      return block.subarray(offset - first * size, end - first * size);
    }
    const blocks = await this.#loader.blocks(ref, first, last, cacheSession.intent);
    const parts = blocks.map((block, i) => {
      const blockStart = (first + i) * size;
      return block.subarray(Math.max(offset, blockStart) - blockStart, Math.min(end, blockStart + block.length) - blockStart);
    });
    return Buffer.concat(parts, end - offset);
  }

  /** See ObjectReader.readAhead: the first block, with readahead's terms (spare memory only). */
  readAhead(ref: ObjectRef): Promise<unknown> | undefined {
    return this.#readahead.first(ref);
  }

  /** Where the session's blocks are cached (the fastest tier that lends each), for native reads. */
  locate(session: ReadSession): BlockFiles | undefined {
    if (this.#closed) return undefined;
    const { ref } = session as CacheSession;
    this.#offerWhole(ref);
    return locateBlockFiles(ref, this.#config.blockSize, this.#dram ? [this.#dram, ...this.#lower] : this.#lower);
  }

  /** See ObjectReader.wholeFile: the whole-object file of the session's version, pmem's before NVMe's. */
  wholeFile(session: ReadSession): string | undefined {
    if (this.#closed) return undefined;
    for (const wholes of this.#wholes) {
      const path = wholes.wholeFile(session.ref);
      if (path !== undefined) return path;
    }
    return undefined;
  }

  /** `ref` may be whole in a file tier now or soon: each tier that makes whole files queues it. */
  #offerWhole(ref: ObjectRef): void {
    for (const wholes of this.#wholes) wholes.offer(ref);
  }

  /** Resolves once the objects offered for whole files so far are done (made whole or skipped). */
  async wholeFilesSettled(): Promise<void> {
    await Promise.all(this.#wholes.map((wholes) => wholes.settled()));
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
  warmBlock(ref: ObjectRef, index: number, tier?: TierName): Promise<WarmedBlock> {
    const warmed = this.#warming.warm(ref, index, tier);
    // The last block of a warmed object: it may be whole in the NVMe tier now.
    if (index === blockCount(ref.size, this.#config.blockSize) - 1) void warmed.then(() => this.#offerWhole(ref), () => undefined);
    return warmed;
  }

  /**
   * Takes the bytes of a freshly uploaded object version from a local file (the write path's
   * staged copy), so the next read of a checkpoint needs no GET: every block goes to DRAM and
   * through to the persistent tiers, as a fetched block would. Blocks that do not fit the
   * memory budget right now are skipped (a later read fetches them).
   */
  adopt(ref: ObjectRef, file: string): Promise<number> {
    const adopted = this.#warming.adopt(ref, file);
    // Every block may be in the NVMe tier once written through: the next open can pass through.
    void adopted.then(() => this.#offerWhole(ref), () => undefined);
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
      this.#writes.writing.delete(id);
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
    return this.#loader.stats();
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
   * Memory needs from outside the cache's accounting (the daemon's memory watchdog):
   * `dramBytes` caps the DRAM tier below its capacity (least recently used blocks are evicted
   * now, and demoted as any eviction); undefined lifts the cap. Under `pressure` (the process
   * is over its memory limit) readahead is refused too.
   */
  limitMemory(dramBytes: number | undefined, pressure = dramBytes !== undefined): void {
    this.#dram?.limit(dramBytes);
    this.#pool.underPressure = pressure;
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
    await this.#loader.settled();
    await this.#writes.drain();
    await this.#dram?.close();
    // An assembly in progress stops at its next block once its tier is closed (NvmeTier.close waits for it).
    for (const tier of this.#lower) await tier.close();
    await Promise.all(this.#wholes.map((wholes) => wholes.settled()));
  }

  async #sessionBlock(session: CacheSession, index: number): Promise<Buffer> {
    if (session.held?.index === index) return session.held.bytes;
    const bytes = await this.#loader.block(session.ref, index, session.intent);
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

  #promote(id: string, bytes: Buffer): void {
    if (this.#dram === undefined) return;
    this.#dram.putNow(id, bytes);
    this.#notePeak();
  }

  #notePeak(): void {
    const used = (this.#dram?.usedBytes ?? 0) + this.#pool.usedBytes;
    if (used > this.#peak) this.#peak = used;
  }
}
