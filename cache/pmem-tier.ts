import { createHash } from 'node:crypto';
import { closeSync, fstatSync, ftruncateSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from '../telemetry/index.js';
import { blockMemory } from '../store/index.js';
import { CacheError } from './cache-error.js';
import { blockChecksum } from './checksum.js';
import { loadMmapBinding, type MmapBinding } from '../native/index.js';
import {
  HEADER_BYTES,
  POOL_MAGIC,
  RECORD_BYTES,
  clearSlotRecord,
  poolGeometry,
  readPoolHeader,
  readSlotRecord,
  recordOffset,
  writePoolHeader,
  writeSlotRecord,
  type PoolGeometry,
} from './pmem-pool-layout.js';
import type { BlockFile, BlockPlace } from './object-reader.js';
import type { Tier, TierStats } from './tier.js';
import { TierCounters } from './tier-counters.js';

/** Steps of a put, in order; a fault hook can stop a put at any of them (tests simulate crashes). */
export type PmemWriteStep = 'slot-cleared' | 'data-copied' | 'data-flushed' | 'record-written';

export interface PmemTierConfig {
  /** The pool file: on a DAX mount of persistent memory, or on /dev/shm (survives a daemon crash, not a reboot). */
  readonly path: string;
  /** Bytes of block data the pool holds (rounded down to whole blocks); the file adds a small table. */
  readonly capacityBytes: number;
  /** Bytes per slot: the block cache's block size. A pool made with another size is re-initialised. */
  readonly blockSize: number;
  /** Pinned blocks are never evicted (pins of `strata warmup --pin` and checkpoints). */
  readonly isPinned?: (id: string) => boolean;
  /** Test hook: called after each write step; throwing from it abandons the put as a crash would. */
  readonly faultHook?: (step: PmemWriteStep) => void;
}

/** Each data mapping covers at most 1 GiB: a Node Buffer is limited to 4 GiB, and smaller maps are cheap to create. */
const SEGMENT_BYTES = 1 << 30;

/**
 * The persistent-memory tier: one pool file mapped MAP_SHARED, with fixed-size slots
 * (layout in pmem-pool-layout.ts). A put is crash-consistent: (1) the slot's old record
 * is cleared and flushed, (2) the bytes are copied in and flushed, (3) the record with
 * length, CRC and a new sequence number is written and flushed. A crash before (3)
 * leaves a free slot; a torn record fails its own CRC and the slot is free at open.
 * Bytes are copied out on `get` and checked against the CRC, so neither a slot reused
 * later nor a corrupt slot can reach a reader. `locate` lends a slot to a native reader,
 * which reads it from the pool file with pread (docs/SEMANTICS.md): a lent slot is not
 * reused, even when its block is evicted or deleted, until every loan is given back
 * (`unlocate`); the reader checks the CRC it was given. (Reading the mapping itself from the
 * FUSE threads was measured slower than pread on a virtual machine: the first touch of each
 * page of a fresh mapping costs a fault.) Puts are synchronous memory copies
 * plus msync, which is what makes this tier fast on /dev/shm or DAX; on an ordinary
 * disk file system msync writes back and the nvme tier is the better choice.
 * One process at a time may open a pool.
 */
export class PmemTier implements Tier {
  readonly name = 'pmem' as const;
  readonly #mmap: MmapBinding;
  readonly #geometry: PoolGeometry;
  readonly #counters: TierCounters;
  readonly #faultHook: ((step: PmemWriteStep) => void) | undefined;
  readonly #isPinned: ((id: string) => boolean) | undefined;
  /**
   * Ids of the blocks read or written since start, by hash: slot records keep only the
   * hash, and pins are asked by id. A pinned block not touched since a restart is not
   * protected until it is read (the daemon re-reads pinned paths at start).
   */
  readonly #idsByHash = new Map<string, string>();
  #meta: Buffer | undefined;
  #segments: Buffer[];
  readonly #slotsPerSegment: number;
  /** id hash → slot, in LRU order (first = least recently used). */
  readonly #slots = new Map<string, number>();
  /** Per slot: length and CRC of the block it holds (mirrors the valid records). */
  readonly #lengths: Uint32Array;
  readonly #checksums: Uint32Array;
  readonly #free: number[] = [];
  readonly #path: string;
  /** Loans of slots to native readers (`locate`), by slot. */
  readonly #loans = new Map<number, number>();
  /** Slots whose block is gone while lent: they become free when the last loan ends. */
  readonly #lentGone = new Set<number>();
  #sequence = 0n;
  #used = 0;

  private constructor(
    mmap: MmapBinding,
    geometry: PoolGeometry,
    meta: Buffer,
    segments: Buffer[],
    slotsPerSegment: number,
    config: PmemTierConfig,
    logger: Logger,
  ) {
    this.#mmap = mmap;
    this.#geometry = geometry;
    this.#meta = meta;
    this.#segments = segments;
    this.#slotsPerSegment = slotsPerSegment;
    this.#faultHook = config.faultHook;
    this.#isPinned = config.isPinned;
    this.#path = resolve(config.path);
    this.#counters = new TierCounters('pmem', logger);
    this.#lengths = new Uint32Array(geometry.slotCount);
    this.#checksums = new Uint32Array(geometry.slotCount);
    this.#loadRecords();
    this.#counters.sizes(this.#used, this.capacityBytes);
  }

  /** Opens the pool at `config.path`, creating or re-initialising it if its header does not match. */
  static async open(config: PmemTierConfig, logger: Logger): Promise<PmemTier> {
    const mmap = loadMmapBinding();
    const slotCount = Math.floor(config.capacityBytes / config.blockSize);
    if (slotCount < 1) {
      throw new CacheError('CACHE_TIER_INVALID', `pmem capacity ${config.capacityBytes} is smaller than one block (${config.blockSize} bytes)`);
    }
    const geometry = poolGeometry(config.blockSize, slotCount);
    let fd: number;
    try {
      fd = openSync(config.path, 'a+');
    } catch (err) {
      throw new CacheError('CACHE_TIER_INVALID', `pmem pool ${config.path} cannot be opened: ${(err as Error).message}`, { cause: err });
    }
    try {
      refuseForeignFile(fd, config.path);
      let fresh = false;
      if (fstatSync(fd).size !== geometry.fileBytes) {
        ftruncateSync(fd, 0);
        ftruncateSync(fd, geometry.fileBytes);
        fresh = true;
      }
      // Reserve the blocks up front: a store through a mapping into a full tmpfs is SIGBUS.
      mmap.allocate(fd, geometry.fileBytes);
      const meta = mmap.map(fd, 0, geometry.dataStart);
      const header = readPoolHeader(meta);
      if (fresh || header?.blockSize !== geometry.blockSize || header.slotCount !== geometry.slotCount) {
        if (!fresh) logger.warn({ path: config.path }, 'pmem pool header does not match the configuration; re-initialising the pool');
        meta.fill(0, HEADER_BYTES, geometry.dataStart);
        mmap.sync(meta, HEADER_BYTES, geometry.tableBytes);
        writePoolHeader(meta, geometry);
        mmap.sync(meta, 0, HEADER_BYTES);
      }
      const slotsPerSegment = Math.max(1, Math.floor(SEGMENT_BYTES / geometry.blockSize));
      const segments: Buffer[] = [];
      for (let first = 0; first < slotCount; first += slotsPerSegment) {
        const slots = Math.min(slotsPerSegment, slotCount - first);
        segments.push(mmap.map(fd, geometry.dataStart + first * geometry.blockSize, slots * geometry.blockSize));
      }
      return new PmemTier(mmap, geometry, meta, segments, slotsPerSegment, config, logger);
    } catch (err) {
      if (err instanceof CacheError) throw err;
      throw new CacheError('CACHE_TIER_INVALID', `pmem pool ${config.path} cannot be mapped: ${(err as Error).message}`, { cause: err });
    } finally {
      // The mappings keep the file referenced; the descriptor is no longer needed.
      closeSync(fd);
    }
  }

  get capacityBytes(): number {
    return this.#geometry.slotCount * this.#geometry.blockSize;
  }

  get usedBytes(): number {
    return this.#used;
  }

  has(id: string): boolean {
    return this.#slots.has(hashId(id));
  }

  async get(id: string): Promise<Buffer | undefined> {
    const hash = hashId(id);
    const slot = this.#slots.get(hash);
    if (slot === undefined || this.#meta === undefined) {
      this.#counters.miss();
      return undefined;
    }
    let copy: Buffer;
    try {
      const { segment, offset } = this.#locate(slot);
      const length = this.#lengths[slot];
      copy = blockMemory(length);
      segment.copy(copy, 0, offset, offset + length);
    } catch (err) {
      this.#counters.ioError('read', err);
      this.#counters.miss();
      return undefined;
    }
    if (blockChecksum(copy) !== this.#checksums[slot]) {
      this.#counters.checksumMismatch(id);
      this.#counters.miss();
      this.#release(hash, slot);
      return undefined;
    }
    this.#slots.delete(hash);
    this.#slots.set(hash, slot);
    if (this.#isPinned) this.#idsByHash.set(hash, id);
    this.#counters.hit();
    return copy;
  }

  /** The block's place in the pool file with its CRC (the reader checks it), lent until `unlocate`: the slot is not reused meanwhile. */
  locate(id: string, length: number): BlockFile | undefined {
    const hash = hashId(id);
    const slot = this.#slots.get(hash);
    if (slot === undefined || this.#meta === undefined || this.#lengths[slot] !== length) return undefined;
    this.#slots.delete(hash);
    this.#slots.set(hash, slot);
    this.#loans.set(slot, (this.#loans.get(slot) ?? 0) + 1);
    return { path: this.#path, offset: this.#geometry.dataStart + slot * this.#geometry.blockSize, checksum: this.#checksums[slot]! };
  }

  unlocate(place: BlockPlace): void {
    if (!('path' in place) || place.path !== this.#path) return;
    const slot = (place.offset - this.#geometry.dataStart) / this.#geometry.blockSize;
    const loans = this.#loans.get(slot);
    if (loans === undefined) return;
    if (loans > 1) {
      this.#loans.set(slot, loans - 1);
      return;
    }
    this.#loans.delete(slot);
    if (this.#lentGone.delete(slot)) this.#free.push(slot);
  }

  countHits(blocks: number): void {
    if (blocks > 0) this.#counters.hit(blocks);
  }

  async put(id: string, bytes: Buffer, knownChecksum?: number): Promise<boolean> {
    const meta = this.#meta;
    if (meta === undefined || bytes.length > this.#geometry.blockSize) return false;
    const hash = hashId(id);
    if (this.#isPinned) this.#idsByHash.set(hash, id);
    const present = this.#slots.get(hash);
    if (present !== undefined) {
      this.#slots.delete(hash);
      this.#slots.set(hash, present);
      return true;
    }
    const slot = this.#free.pop() ?? this.#evictOldest();
    if (slot === undefined) return false;
    const recordAt = recordOffset(slot);
    try {
      clearSlotRecord(meta, recordAt);
      this.#mmap.sync(meta, recordAt, RECORD_BYTES);
      this.#faultHook?.('slot-cleared');
      const { segment, offset } = this.#locate(slot);
      bytes.copy(segment, offset);
      this.#faultHook?.('data-copied');
      this.#mmap.sync(segment, offset, bytes.length);
      this.#faultHook?.('data-flushed');
      const checksum = knownChecksum ?? blockChecksum(bytes);
      this.#sequence += 1n;
      writeSlotRecord(meta, recordAt, { length: bytes.length, checksum, sequence: this.#sequence, idHash: hash });
      this.#faultHook?.('record-written');
      this.#mmap.sync(meta, recordAt, RECORD_BYTES);
      this.#lengths[slot] = bytes.length;
      this.#checksums[slot] = checksum;
    } catch (err) {
      // The record may or may not have reached the media; at the next open it is either
      // valid with bytes that match its CRC, or invalid and the slot free.
      this.#counters.ioError('write', err);
      this.#free.push(slot);
      return false;
    }
    this.#slots.set(hash, slot);
    this.#used += bytes.length;
    this.#counters.sizes(this.#used, this.capacityBytes);
    return true;
  }

  async delete(id: string): Promise<void> {
    const hash = hashId(id);
    const slot = this.#slots.get(hash);
    if (slot !== undefined) this.#release(hash, slot);
  }

  stats(): TierStats {
    return this.#counters.snapshot({ capacityBytes: this.capacityBytes, usedBytes: this.#used, blocks: this.#slots.size });
  }

  async close(): Promise<void> {
    // Every committed record is already flushed. Dropping the Buffers lets the garbage
    // collector unmap the pool; no explicit munmap, so no stale view can ever fault.
    this.#meta = undefined;
    this.#segments = [];
    this.#slots.clear();
  }

  #loadRecords(): void {
    const meta = this.#meta as Buffer;
    const valid: Array<{ slot: number; sequence: bigint; hash: string }> = [];
    const bySequence = new Map<string, { slot: number; sequence: bigint }>();
    for (let slot = 0; slot < this.#geometry.slotCount; slot += 1) {
      const record = readSlotRecord(meta, recordOffset(slot), this.#geometry.blockSize);
      if (record === undefined) continue;
      const twin = bySequence.get(record.idHash);
      if (twin !== undefined && twin.sequence > record.sequence) continue;
      bySequence.set(record.idHash, { slot, sequence: record.sequence });
      valid.push({ slot, sequence: record.sequence, hash: record.idHash });
      this.#lengths[slot] = record.length;
      this.#checksums[slot] = record.checksum;
      if (record.sequence > this.#sequence) this.#sequence = record.sequence;
    }
    valid.sort((a, b) => (a.sequence < b.sequence ? -1 : a.sequence > b.sequence ? 1 : 0));
    const taken = new Set<number>();
    for (const { slot, hash } of valid) {
      if (bySequence.get(hash)?.slot !== slot) continue; // an older duplicate of a block
      this.#slots.set(hash, slot);
      this.#used += this.#lengths[slot];
      taken.add(slot);
    }
    for (let slot = this.#geometry.slotCount - 1; slot >= 0; slot -= 1) if (!taken.has(slot)) this.#free.push(slot);
  }

  #evictOldest(): number | undefined {
    let victim: [string, number] | undefined;
    for (const entry of this.#slots) {
      if (this.#loans.has(entry[1])) continue;
      const id = this.#idsByHash.get(entry[0]);
      if (id === undefined || this.#isPinned === undefined || !this.#isPinned(id)) {
        victim = entry;
        break;
      }
    }
    if (victim === undefined) return undefined;
    const [hash, slot] = victim;
    this.#release(hash, slot);
    this.#free.pop();
    this.#counters.eviction();
    return slot;
  }

  /** Frees a slot: clears its record (flushed) and returns it to the free list, or to `#lentGone` while lent. */
  #release(hash: string, slot: number): void {
    this.#slots.delete(hash);
    this.#idsByHash.delete(hash);
    this.#used -= this.#lengths[slot];
    const meta = this.#meta;
    if (meta !== undefined) {
      try {
        clearSlotRecord(meta, recordOffset(slot));
        this.#mmap.sync(meta, recordOffset(slot), RECORD_BYTES);
      } catch (err) {
        this.#counters.ioError('clear', err);
      }
    }
    if (this.#loans.has(slot)) this.#lentGone.add(slot);
    else this.#free.push(slot);
    this.#counters.sizes(this.#used, this.capacityBytes);
  }

  #locate(slot: number): { segment: Buffer; offset: number } {
    const segment = this.#segments[Math.floor(slot / this.#slotsPerSegment)];
    if (segment === undefined) throw new CacheError('CACHE_TIER_IO', 'pmem pool is closed');
    return { segment, offset: (slot % this.#slotsPerSegment) * this.#geometry.blockSize };
  }
}

function hashId(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

/**
 * A pool is created in a new or empty file, or re-initialised over an older Strata pool; any
 * other file at the path (a typo'd `--pmem /etc/passwd:1GiB`, a database) is somebody's data
 * and is refused, never truncated.
 */
function refuseForeignFile(fd: number, path: string): void {
  const info = fstatSync(fd);
  if (!info.isFile() || info.size === 0) return;
  const head = Buffer.alloc(POOL_MAGIC.length);
  readSync(fd, head, 0, head.length, 0);
  if (!head.equals(POOL_MAGIC)) {
    throw new CacheError('CACHE_TIER_INVALID', `pmem pool ${path} is an existing file that is not a Strata pool; it is left untouched: give a new path (or remove the file yourself)`);
  }
}
