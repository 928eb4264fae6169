import { LRUCache } from 'lru-cache';
import type { Logger } from '../telemetry/index.js';
import { blockChecksum } from './checksum.js';
import type { BlockMemory, BlockPlace } from './object-reader.js';
import type { EvictionListener, Tier, TierStats } from './tier.js';
import { TierCounters } from './tier-counters.js';

export interface DramTierConfig {
  /** Most bytes of block data held; enforced on every put (lru-cache `maxSize`). */
  readonly capacityBytes: number;
  /**
   * Verify the CRC on every `get`. Off by default: DRAM blocks never leave the process,
   * so only a bug could change them, and the file system reads 128 KiB at a time, so
   * checking a 4 MiB block per read would cost 32 times the copy it guards. Tests turn
   * it on to run the shared conformance suite's corruption checks.
   */
  readonly verifyReads?: boolean;
}

interface DramEntry {
  readonly bytes: Buffer;
  readonly checksum: number;
}

/** A buffer lent to native readers: how many loans, and whether the tier dropped it meanwhile. */
interface Loan {
  count: number;
  gone: boolean;
}

/**
 * Buffers lent to native readers stay alive after the tier drops them, outside its capacity,
 * until the readers give them back. Lending stops while such buffers add up to this share of
 * the capacity, so DRAM use stays within 1.25 times `--dram`.
 */
const LENT_GONE_SHARE = 0.25;

/**
 * The in-process tier: an LRU map of block buffers with a byte budget. `get` answers
 * the stored Buffer itself (no copy); callers treat it as read-only. Evictions (to make
 * room, not `delete`) are reported to `onEvict` so the cache can demote the block.
 * `locate` lends a buffer to the native FUSE threads, which copy from it directly.
 */
export class DramTier implements Tier {
  readonly name = 'dram' as const;
  readonly #lru: LRUCache<string, DramEntry>;
  readonly #counters: TierCounters;
  readonly #verify: boolean;
  readonly #capacity: number;
  /** Bytes held at most now: the capacity, or less while the daemon's memory watchdog caps the tier. */
  #limit: number;
  #onEvict: EvictionListener | undefined;
  readonly #loans = new Map<Buffer, Loan>();
  /** Bytes of lent buffers the tier has dropped, alive until their loans end. */
  #lentGoneBytes = 0;

  constructor(config: DramTierConfig, logger: Logger) {
    this.#capacity = config.capacityBytes;
    this.#limit = config.capacityBytes;
    this.#verify = config.verifyReads ?? false;
    this.#counters = new TierCounters('dram', logger);
    this.#lru = new LRUCache<string, DramEntry>({
      maxSize: config.capacityBytes,
      sizeCalculation: (entry) => Math.max(1, entry.bytes.length),
      dispose: (entry, id, reason) => {
        const loan = this.#loans.get(entry.bytes);
        if (loan !== undefined && !loan.gone) {
          loan.gone = true;
          this.#lentGoneBytes += entry.bytes.length;
        }
        if (reason !== 'evict') return;
        this.#counters.eviction();
        this.#onEvict?.(id, entry.bytes);
      },
    });
    this.#counters.sizes(0, this.#capacity);
  }

  /** Registers the one listener told about evicted blocks (the BlockCache's demotion). */
  onEvict(listener: EvictionListener): void {
    this.#onEvict = listener;
  }

  get capacityBytes(): number {
    return this.#capacity;
  }

  get usedBytes(): number {
    return this.#lru.calculatedSize;
  }

  /**
   * Holds at most `bytes` (at most the capacity) from now on, evicting least recently used
   * blocks (reported to `onEvict` as any eviction) until it does; undefined restores the capacity.
   */
  limit(bytes: number | undefined): void {
    this.#limit = Math.min(this.#capacity, bytes ?? this.#capacity);
    this.#shrinkToLimit();
  }

  #shrinkToLimit(): void {
    while (this.#lru.calculatedSize > this.#limit && this.#lru.size > 0) this.#lru.pop();
    this.#counters.sizes(this.usedBytes, this.#capacity);
  }

  async get(id: string): Promise<Buffer | undefined> {
    return this.getNow(id);
  }

  /** Synchronous `get` for the cache's hot path (same contract). */
  getNow(id: string): Buffer | undefined {
    const entry = this.#lru.get(id);
    if (entry === undefined) {
      this.#counters.miss();
      return undefined;
    }
    if (this.#verify && blockChecksum(entry.bytes) !== entry.checksum) {
      this.#lru.delete(id);
      this.#counters.checksumMismatch(id);
      this.#counters.miss();
      return undefined;
    }
    this.#counters.hit();
    return entry.bytes;
  }

  /** The block's bytes without touching recency or counters (a copy to another tier is not a use). */
  peekNow(id: string): Buffer | undefined {
    return this.#lru.peek(id)?.bytes;
  }

  /**
   * Lends the block's buffer to a native reader (a use for recency; hits are counted by
   * `countHits` once known): it is never modified, and the answer keeps it alive. Undefined
   * when absent, of another length, or while lent buffers the tier dropped add up to
   * LENT_GONE_SHARE of the capacity.
   */
  locate(id: string, length: number): BlockMemory | undefined {
    if (this.#lentGoneBytes >= this.#capacity * LENT_GONE_SHARE) return undefined;
    const entry = this.#lru.get(id);
    if (entry === undefined || entry.bytes.length !== length) return undefined;
    const loan = this.#loans.get(entry.bytes);
    if (loan) loan.count++;
    else this.#loans.set(entry.bytes, { count: 1, gone: false });
    return { memory: entry.bytes };
  }

  unlocate(place: BlockPlace): void {
    if (!('memory' in place)) return;
    const loan = this.#loans.get(place.memory);
    if (loan === undefined || --loan.count > 0) return;
    this.#loans.delete(place.memory);
    if (loan.gone) this.#lentGoneBytes -= place.memory.length;
  }

  countHits(blocks: number): void {
    if (blocks > 0) this.#counters.hit(blocks);
  }

  async put(id: string, bytes: Buffer, checksum?: number): Promise<boolean> {
    return this.putNow(id, bytes, checksum);
  }

  /** Synchronous `put` (same contract). */
  putNow(id: string, bytes: Buffer, checksum?: number): boolean {
    if (bytes.length > this.#limit) return false;
    this.#lru.set(id, { bytes, checksum: this.#verify ? (checksum ?? blockChecksum(bytes)) : 0 });
    if (this.#lru.calculatedSize > this.#limit) this.#shrinkToLimit();
    else this.#counters.sizes(this.usedBytes, this.#capacity);
    return true;
  }

  async delete(id: string): Promise<void> {
    this.#lru.delete(id);
    this.#counters.sizes(this.usedBytes, this.#capacity);
  }

  has(id: string): boolean {
    return this.#lru.has(id);
  }

  stats(): TierStats {
    return this.#counters.snapshot({ capacityBytes: this.#capacity, usedBytes: this.usedBytes, blocks: this.#lru.size });
  }

  async close(): Promise<void> {
    // Nothing to persist. Entries are dropped without demotion: the persistent tiers
    // were written through when the blocks arrived.
    this.#onEvict = undefined;
    this.#lru.clear();
  }
}
