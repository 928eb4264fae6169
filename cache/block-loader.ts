import { StoreError } from '../store/index.js';
import type { ObjectRef } from '../store/index.js';
import { counter } from '../telemetry/index.js';
import { blockId, blockKeyOf, blockLength } from './block-key.js';
import type { CacheScope } from './cache-scope.js';
import type { FetchIntent, FetchRange } from './fetch-request.js';

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

const fetchedBlocksMetric = counter('strata_cache_store_blocks_total', 'Blocks the block cache fetched from the store');
const fetchedBytesMetric = counter('strata_cache_store_bytes_total', 'Bytes the block cache fetched from the store');

/**
 * Loads blocks on a DRAM miss: from a block still on its way to a persistent tier, from the
 * first persistent tier that holds it (promoting it to DRAM and to the tiers above), or from the
 * store with a ranged GET (then written through to every persistent tier). Concurrent loads of
 * one block share one load. Every load reserves its buffer from the I/O pool first: a demand
 * load waits for room, a readahead load takes spare room only and answers undefined without it.
 */
export class BlockLoader {
  readonly #s: CacheScope;
  readonly #fetchRange: FetchRange;
  readonly #loads = new Map<string, Promise<Buffer | undefined>>();
  readonly #stats = { blocksFetched: 0, bytesFetched: 0, coalescedWaits: 0, readaheadBlocks: 0, readaheadSkipped: 0 };

  constructor(scope: CacheScope, fetchRange: FetchRange) {
    this.#s = scope;
    this.#fetchRange = fetchRange;
  }

  stats(): FetchStats {
    return { ...this.#stats };
  }

  /** Whether a load of block `id` is in progress. */
  loading(id: string): boolean {
    return this.#loads.has(id);
  }

  /** The load of block `id` in progress, if any (undefined from it: a skipped readahead). */
  inProgress(id: string): Promise<Buffer | undefined> | undefined {
    return this.#loads.get(id);
  }

  /** Resolves once every load in progress now has ended, either way. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#loads.values()]);
  }

  /** A block for a demand read: from DRAM, a coalesced load, a lower tier or the store. */
  async block(ref: ObjectRef, index: number, intent: FetchIntent): Promise<Buffer> {
    if (this.#s.closed()) throw new StoreError('STORE_IO', 'the block cache is closed');
    const id = blockId(blockKeyOf(ref, index));
    const length = blockLength(ref.size, this.#s.config.blockSize, index);
    const dram = this.#s.dram;
    const hit = dram?.getNow(id);
    if (hit !== undefined) {
      if (hit.length === length) return hit;
      // Every hit is length-checked as lower tiers' are: a block of another length is not this block.
      await dram!.delete(id);
    }
    let load = this.#loads.get(id);
    if (load === undefined) {
      load = this.start(ref, index, id, length, intent);
    } else {
      this.#stats.coalescedWaits += 1;
    }
    const bytes = await load;
    // A readahead load that was skipped for lack of memory answers undefined: load again on demand.
    return bytes ?? (await this.block(ref, index, intent));
  }

  /** Blocks `first`..`last` of `ref` in order, loaded at most `maxParallelFetches` at a time. */
  async blocks(ref: ObjectRef, first: number, last: number, intent: FetchIntent): Promise<Buffer[]> {
    const blocks: Buffer[] = new Array<Buffer>(last - first + 1);
    let next = first;
    const worker = async (): Promise<void> => {
      while (next <= last) {
        const index = next++;
        blocks[index - first] = await this.block(ref, index, intent);
      }
    };
    const workers = Math.min(this.#s.config.maxParallelFetches, last - first + 1);
    await Promise.all(Array.from({ length: workers }, worker));
    return blocks;
  }

  /** Starts loading block `index` (id `id`, `length` bytes), shared with any read of it meanwhile. */
  start(ref: ObjectRef, index: number, id: string, length: number, intent: FetchIntent): Promise<Buffer | undefined> {
    return this.track(id, this.#load(ref, index, id, length, intent));
  }

  /** Lets reads of block `id` wait for `load` instead of loading it again, until it ends. */
  track<T extends Buffer | undefined>(id: string, load: Promise<T>): Promise<T> {
    const tracked = load.finally(() => this.#loads.delete(id));
    this.#loads.set(id, tracked);
    return tracked;
  }

  /** Block `index` of `ref` from the store, exactly `length` bytes, counted. */
  async fetch(ref: ObjectRef, index: number, length: number, intent: FetchIntent): Promise<Buffer> {
    const forReader = intent.priority === 'foreground';
    if (forReader) this.#s.writes.readerFetchStarted();
    let bytes: Buffer;
    try {
      bytes = await this.#fetchRange({ ref, range: { start: index * this.#s.config.blockSize, length }, signal: this.#s.signal, priority: intent.priority, origin: intent.origin });
    } finally {
      if (forReader) this.#s.writes.readerFetchEnded();
    }
    if (bytes.length !== length) {
      throw new StoreError('STORE_IO', `store answered ${bytes.length} bytes for block ${index} of ${ref.key}, expected ${length}`);
    }
    this.#stats.blocksFetched += 1;
    this.#stats.bytesFetched += length;
    fetchedBlocksMetric.inc();
    fetchedBytesMetric.inc(length);
    return bytes;
  }

  /** A readahead load (`intent.origin` `'readahead'`) takes only spare pool memory, and answers undefined without it. */
  async #load(ref: ObjectRef, index: number, id: string, length: number, intent: FetchIntent): Promise<Buffer | undefined> {
    const s = this.#s;
    const readahead = intent.origin === 'readahead';
    if (readahead) {
      if (!s.pool.tryReserveReadahead(length)) {
        this.#stats.readaheadSkipped += 1;
        return undefined;
      }
    } else {
      await s.pool.reserve(length, s.signal);
    }
    s.notePeak();
    let releaseNow = true;
    try {
      // Still on its way to a persistent tier (DRAM may already have evicted it): serve those bytes.
      const writing = s.writes.writing.get(id);
      if (writing !== undefined && writing.length === length) {
        s.promote(id, writing);
        return writing;
      }
      for (let level = 0; level < s.lower.length; level += 1) {
        const tier = s.lower[level]!;
        const bytes = await s.tiers.get(tier, id);
        if (bytes === undefined || bytes.length !== length) continue;
        s.promote(id, bytes);
        const above = s.lower.slice(0, level);
        if (above.length > 0) {
          releaseNow = false;
          s.writes.write(id, bytes, above);
        }
        return bytes;
      }
      const bytes = await this.fetch(ref, index, length, intent);
      if (readahead) this.#stats.readaheadBlocks += 1;
      s.promote(id, bytes);
      if (s.lower.length > 0) {
        releaseNow = false;
        s.writes.write(id, bytes, s.lower);
      }
      return bytes;
    } finally {
      if (releaseNow) s.pool.release(length);
    }
  }
}
