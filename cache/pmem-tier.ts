import { closeSync, fstatSync, ftruncateSync, openSync, readSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from '../telemetry/index.js';
import { blockMemory } from '../store/index.js';
import { CacheError } from './cache-error.js';
import { blockChecksum } from './checksum.js';
import { blockIdInVersion, hashId, splitBlockId } from './block-key.js';
import { counter } from '../telemetry/index.js';
import { PmemWholeFiles, type PmemWhole } from './pmem-whole-files.js';
import { WholeScrub, type ScrubTarget } from './whole-scrub.js';
import { readExactly, writeAll } from './nvme-whole-file.js';
import { wholeJob } from './whole-jobs.js';
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
  /**
   * Objects whose blocks are all in the pool can be made whole files (`assembleWhole`) in
   * `<path>.whole/`, for passthrough (pmem-whole-files.ts). Off: none are made, and any left
   * from an earlier run are removed at open. Default off.
   */
  readonly wholeFiles?: boolean;
  /** Bytes per second the background scrub re-reads of whole files (whole-scrub.ts); 0 or absent: no scrub. */
  readonly scrubBytesPerSecond?: number;
}

/** A block of a whole file, and where it lies in it. */
interface WholeBlock {
  readonly whole: PmemWhole;
  readonly offset: number;
  readonly length: number;
  readonly checksum: number;
}

/** Keys of whole files in the recency order (`#slots`) start with this; block keys are hex hashes. */
const WHOLE_KEY = 'whole:';
/** The value of a whole file's key in `#slots`: it has no slot of its own. */
const NO_SLOT = -1;

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
 *
 * Whole files (`wholeFiles`): an object whose blocks are all in the pool can be copied, each
 * block CRC-checked, into one plain file beside the pool (pmem-whole-files.ts), which the
 * native FUSE path hands to the kernel. The file then stands in for its blocks' slots: their
 * records are cleared and their memory given back (a hole punched in the pool file; a slot a
 * native reader still has on loan is punched when the loan ends), and they stay off the free
 * list until the file goes, when they are allocated again. So the pool's memory and the whole
 * files' together stay within the capacity. A whole file is one entry for recency and eviction
 * (never evicted while its object is pinned); blocks are read from it with a CRC check, and
 * the optional scrub re-checks it in the background.
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
  /**
   * id hash → slot, in LRU order (first = least recently used); whole files are in the same
   * order, as `WHOLE_KEY` + object version id → NO_SLOT.
   */
  readonly #slots = new Map<string, number>();
  /** The pool file, kept open to give slots' memory back (punch) and take it again (allocate). */
  readonly #fd: number;
  /** The whole-file folder; undefined when whole files are off. */
  readonly #files: PmemWholeFiles | undefined;
  /** Whole files by object version id. */
  readonly #wholes = new Map<string, PmemWhole>();
  /** Blocks held in whole files (`stats().blocks` counts blocks). */
  #wholeBlocks = 0;
  /** Slots a whole file stands in for that are still lent: punched when their last loan ends. */
  readonly #punchLater = new Set<number>();
  /** Object versions being made whole. */
  readonly #assembling = new Map<string, Promise<boolean>>();
  readonly #scrub: WholeScrub | undefined;
  #closing = false;
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
    fd: number,
    whole: { files: PmemWholeFiles; wholes: PmemWhole[] } | undefined,
    config: PmemTierConfig,
    logger: Logger,
  ) {
    this.#fd = fd;
    this.#files = whole?.files;
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
    this.#loadRecords(whole?.wholes ?? []);
    this.#counters.sizes(this.#used, this.capacityBytes);
    const rate = config.scrubBytesPerSecond ?? 0;
    this.#scrub =
      this.#files !== undefined && rate > 0
        ? new WholeScrub(rate, {
            wholeFiles: () => this.#wholeTargets(),
            mismatch: (target) => {
              this.#counters.checksumMismatch(target.objectId);
              if (this.#wholes.get(target.objectId) === target.entry) this.#dropWhole(target.objectId);
            },
            ioError: (err) => this.#counters.ioError('scrub', err),
          })
        : undefined;
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
      mmap.allocate(fd, geometry.dataStart);
      const meta = mmap.map(fd, 0, geometry.dataStart);
      const header = readPoolHeader(meta);
      const reinit = fresh || header?.blockSize !== geometry.blockSize || header.slotCount !== geometry.slotCount;
      if (reinit) {
        if (!fresh) logger.warn({ path: config.path }, 'pmem pool header does not match the configuration; re-initialising the pool');
        meta.fill(0, HEADER_BYTES, geometry.dataStart);
        mmap.sync(meta, HEADER_BYTES, geometry.tableBytes);
        writePoolHeader(meta, geometry);
        mmap.sync(meta, 0, HEADER_BYTES);
      }
      // Whole files left by an earlier run keep their slots; a new pool (or whole files off) drops them.
      const wholeDir = `${resolve(config.path)}.whole`;
      let whole: { files: PmemWholeFiles; wholes: PmemWhole[] } | undefined;
      if (config.wholeFiles === true) whole = PmemWholeFiles.open(wholeDir, geometry.blockSize, slotCount, reinit, logger);
      else rmSync(wholeDir, { recursive: true, force: true });
      const held = new Set(whole?.wholes.flatMap((w) => w.slots));
      // Reserve the free slots' memory up front (a store through a mapping into a full tmpfs is
      // SIGBUS) and give back the memory of slots whole files stand in for.
      forEachRun(slotCount, (slot) => !held.has(slot), (first, count) => mmap.allocate(fd, count * geometry.blockSize, geometry.dataStart + first * geometry.blockSize));
      forEachRun(slotCount, (slot) => held.has(slot), (first, count) => mmap.punch(fd, geometry.dataStart + first * geometry.blockSize, count * geometry.blockSize));
      const slotsPerSegment = Math.max(1, Math.floor(SEGMENT_BYTES / geometry.blockSize));
      const segments: Buffer[] = [];
      for (let first = 0; first < slotCount; first += slotsPerSegment) {
        const slots = Math.min(slotsPerSegment, slotCount - first);
        segments.push(mmap.map(fd, geometry.dataStart + first * geometry.blockSize, slots * geometry.blockSize));
      }
      return new PmemTier(mmap, geometry, meta, segments, slotsPerSegment, fd, whole, config, logger);
    } catch (err) {
      closeSync(fd);
      if (err instanceof CacheError) throw err;
      throw new CacheError('CACHE_TIER_INVALID', `pmem pool ${config.path} cannot be mapped: ${(err as Error).message}`, { cause: err });
    }
  }

  get capacityBytes(): number {
    return this.#geometry.slotCount * this.#geometry.blockSize;
  }

  get usedBytes(): number {
    return this.#used;
  }

  has(id: string): boolean {
    return this.#slots.has(hashId(id)) || this.#wholeHolding(id) !== undefined;
  }

  async get(id: string): Promise<Buffer | undefined> {
    const hash = hashId(id);
    const slot = this.#slots.get(hash);
    if (slot === undefined && this.#meta !== undefined) {
      const held = this.#wholeHolding(id);
      if (held !== undefined) return this.#getFromWhole(id, held);
    }
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
    if (slot === undefined && this.#meta !== undefined) {
      // A block of a whole file: the file is never changed while it exists (removed, not reused).
      const held = this.#wholeHolding(id);
      if (held === undefined || held.length !== length || this.#files === undefined) return undefined;
      this.#touchWhole(held.whole.objectId);
      return { path: this.#files.dataPath(held.whole.objectId), offset: held.offset, checksum: held.checksum };
    }
    if (slot === undefined || this.#meta === undefined || this.#lengths[slot] !== length) return undefined;
    this.#slots.delete(hash);
    this.#slots.set(hash, slot);
    this.#lend(slot);
    return { path: this.#path, offset: this.#geometry.dataStart + slot * this.#geometry.blockSize, checksum: this.#checksums[slot]! };
  }

  unlocate(place: BlockPlace): void {
    if (!('path' in place) || place.path !== this.#path) return;
    this.#endLoan((place.offset - this.#geometry.dataStart) / this.#geometry.blockSize);
  }

  #lend(slot: number): void {
    this.#loans.set(slot, (this.#loans.get(slot) ?? 0) + 1);
  }

  /**
   * One loan of `slot` ends. At the last one, a slot whose block went meanwhile becomes free,
   * and a slot a whole file now stands in for gives its memory back.
   */
  #endLoan(slot: number): void {
    const loans = this.#loans.get(slot);
    if (loans === undefined) return;
    if (loans > 1) {
      this.#loans.set(slot, loans - 1);
      return;
    }
    this.#loans.delete(slot);
    if (this.#lentGone.delete(slot)) this.#free.push(slot);
    else if (this.#punchLater.delete(slot)) this.#punchSlot(slot);
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
    const held = this.#wholeHolding(id);
    if (held !== undefined) {
      this.#touchWhole(held.whole.objectId);
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
    if (slot !== undefined) {
      this.#release(hash, slot);
      return;
    }
    // A block of a whole file: the object's whole file goes (its blocks are one entry).
    const held = this.#wholeHolding(id);
    if (held !== undefined) this.#dropWhole(held.whole.objectId);
  }

  /**
   * The whole file of object version `objectId` (block-key.ts `objectVersionId`), counted as a
   * use unless `touch` is false; undefined when there is none. The file holds exactly the
   * object's bytes while it exists: it is removed, never changed.
   */
  wholeFile(objectId: string, options: { readonly touch?: boolean } = {}): { readonly path: string; readonly size: number } | undefined {
    const whole = this.#wholes.get(objectId);
    if (whole === undefined || this.#files === undefined || this.#closing) return undefined;
    if (options.touch !== false) this.#touchWhole(objectId);
    return { path: this.#files.dataPath(objectId), size: whole.size };
  }

  /**
   * Makes object version `objectId` of `size` bytes whole when every one of its blocks
   * (`blockSize` bytes, the pool's, the last one short) is in the pool: the blocks are copied
   * from the pool, each checked against its CRC-32C, into a whole file (pmem-whole-files.ts),
   * whose slots are then given back (see the class comment). The blocks are lent meanwhile,
   * so none is evicted or reused; one dropped meanwhile (deleted, or found damaged) abandons
   * the file. Answers whether the object is whole now. Never rejects.
   */
  assembleWhole(objectId: string, size: number, blockSize: number): Promise<boolean> {
    if (this.#files === undefined || this.#closing || blockSize !== this.#geometry.blockSize || !(size > blockSize)) return Promise.resolve(false);
    if (this.#wholes.has(objectId)) return Promise.resolve(true);
    const files = this.#files;
    return wholeJob(this.#assembling, objectId, () => this.#assemble(files, objectId, size), (err) => this.#counters.ioError('assemble', err));
  }

  stats(): TierStats {
    return this.#counters.snapshot({ capacityBytes: this.capacityBytes, usedBytes: this.#used, blocks: this.#slots.size - this.#wholes.size + this.#wholeBlocks });
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    // An assembly stops at its next block and removes what it wrote; the scrub at its next read.
    await Promise.allSettled([...this.#assembling.values(), this.#scrub?.stop()]);
    // Every committed record is already flushed. Dropping the Buffers lets the garbage
    // collector unmap the pool; no explicit munmap, so no stale view can ever fault.
    this.#meta = undefined;
    this.#segments = [];
    this.#slots.clear();
    this.#wholes.clear();
    closeSync(this.#fd);
  }

  #loadRecords(wholes: readonly PmemWhole[]): void {
    const meta = this.#meta as Buffer;
    const held = new Set<number>();
    for (const whole of wholes) {
      this.#wholes.set(whole.objectId, whole);
      this.#slots.set(WHOLE_KEY + whole.objectId, NO_SLOT);
      this.#wholeBlocks += whole.slots.length;
      this.#used += whole.size;
      for (const slot of whole.slots) held.add(slot);
    }
    const valid: Array<{ slot: number; sequence: bigint; hash: string }> = [];
    const bySequence = new Map<string, { slot: number; sequence: bigint }>();
    for (let slot = 0; slot < this.#geometry.slotCount; slot += 1) {
      if (held.has(slot)) {
        // A crash after a whole file's commit and before its slots' records were cleared.
        if (readSlotRecord(meta, recordOffset(slot), this.#geometry.blockSize) !== undefined) {
          clearSlotRecord(meta, recordOffset(slot));
          this.#mmap.sync(meta, recordOffset(slot), RECORD_BYTES);
        }
        continue;
      }
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
    for (let slot = this.#geometry.slotCount - 1; slot >= 0; slot -= 1) if (!taken.has(slot) && !held.has(slot)) this.#free.push(slot);
  }

  /** Frees the least recently used block or whole file that is not pinned nor lent; answers a free slot. */
  #evictOldest(): number | undefined {
    let victim: [string, number] | undefined;
    for (const entry of this.#slots) {
      if (entry[1] === NO_SLOT) {
        const objectId = entry[0].slice(WHOLE_KEY.length);
        if (this.#isPinned?.(blockIdInVersion(objectId, 0)) === true) continue;
        this.#dropWhole(objectId);
        this.#counters.eviction();
        return this.#free.pop();
      }
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

  /** The whole file holding block `id`, with where the block lies in it; undefined when none does. */
  #wholeHolding(id: string): WholeBlock | undefined {
    if (this.#wholes.size === 0) return undefined;
    const block = splitBlockId(id);
    const whole = block === undefined ? undefined : this.#wholes.get(block.objectId);
    if (whole === undefined || block!.index >= whole.checksums.length) return undefined;
    const offset = block!.index * whole.blockSize;
    return { whole, offset, length: Math.min(whole.blockSize, whole.size - offset), checksum: whole.checksums[block!.index]! };
  }

  #touchWhole(objectId: string): void {
    const key = WHOLE_KEY + objectId;
    if (this.#slots.delete(key)) this.#slots.set(key, NO_SLOT);
  }

  /** One block read from its whole file, checked against its CRC-32C; a damaged file is dropped. */
  async #getFromWhole(id: string, held: WholeBlock): Promise<Buffer | undefined> {
    const bytes = blockMemory(held.length);
    let short = false;
    try {
      await readExactly(this.#files!.dataPath(held.whole.objectId), held.offset, bytes);
    } catch (err) {
      // A file shorter than its manifest says is damaged, as one that fails its CRC.
      short = (err as NodeJS.ErrnoException).code === 'ESHORT';
      if (!short) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#counters.ioError('read', err);
        this.#counters.miss();
        return undefined;
      }
    }
    if (short || blockChecksum(bytes) !== held.checksum) {
      this.#counters.checksumMismatch(id);
      this.#counters.miss();
      if (this.#wholes.get(held.whole.objectId) === held.whole) this.#dropWhole(held.whole.objectId);
      return undefined;
    }
    if (this.#wholes.get(held.whole.objectId) === held.whole) this.#touchWhole(held.whole.objectId);
    this.#counters.hit();
    return bytes;
  }

  async #assemble(files: PmemWholeFiles, objectId: string, size: number): Promise<boolean> {
    const blockSize = this.#geometry.blockSize;
    const sources: Array<{ hash: string; slot: number }> = [];
    for (let index = 0; index * blockSize < size; index++) {
      const hash = hashId(blockIdInVersion(objectId, index));
      const slot = this.#slots.get(hash);
      if (slot === undefined || slot === NO_SLOT || this.#lengths[slot] !== Math.min(blockSize, size - index * blockSize)) return false;
      sources.push({ hash, slot });
    }
    // Lent for the copy: no source slot is evicted or reused until the file is committed or abandoned.
    for (const { slot } of sources) this.#lend(slot);
    const whole: PmemWhole = { objectId, size, blockSize, checksums: sources.map(({ slot }) => this.#checksums[slot]!), slots: sources.map(({ slot }) => slot) };
    let committed = false;
    try {
      await files.write(whole, async (handle) => {
        for (const [index, { slot }] of sources.entries()) {
          if (this.#closing) throw new CacheError('CACHE_TIER_IO', 'pmem tier closed while a whole file was being made');
          const { segment, offset } = this.#locate(slot);
          const bytes = segment.subarray(offset, offset + this.#lengths[slot]!);
          if (blockChecksum(bytes) !== this.#checksums[slot]) throw new DamagedBlock(index);
          await writeAll(handle, bytes, index * blockSize);
        }
      });
      // A block dropped meanwhile: the file must not outlive the blocks it was made of.
      if (this.#closing || sources.some(({ hash, slot }) => this.#slots.get(hash) !== slot)) {
        files.remove(objectId);
        return false;
      }
      this.#commitWhole(whole, sources);
      committed = true;
      return true;
    } catch (err) {
      // Stopped by close (the files are removed): not an I/O error.
      if (this.#closing && !(err instanceof DamagedBlock)) return false;
      if (!(err instanceof DamagedBlock)) throw err;
      const bad = sources[err.index]!;
      this.#counters.checksumMismatch(blockIdInVersion(objectId, err.index));
      if (this.#slots.get(bad.hash) === bad.slot) this.#release(bad.hash, bad.slot);
      return false;
    } finally {
      if (!committed) for (const { slot } of sources) this.#endLoan(slot);
    }
  }

  /** The whole file is durable and its manifest committed: its blocks leave the pool. */
  #commitWhole(whole: PmemWhole, sources: ReadonlyArray<{ hash: string; slot: number }>): void {
    const meta = this.#meta!;
    for (const { hash, slot } of sources) {
      this.#slots.delete(hash);
      this.#idsByHash.delete(hash);
      try {
        clearSlotRecord(meta, recordOffset(slot));
        this.#mmap.sync(meta, recordOffset(slot), RECORD_BYTES);
      } catch (err) {
        // The record stays valid on the media: the next open clears it (the manifest names the slot).
        this.#counters.ioError('clear', err);
      }
      // The copy's loan ends: the slot's memory goes back now, or when a reader's loan ends.
      this.#punchLater.add(slot);
      this.#endLoan(slot);
    }
    this.#wholes.set(whole.objectId, whole);
    this.#slots.set(WHOLE_KEY + whole.objectId, NO_SLOT);
    this.#wholeBlocks += whole.slots.length;
    wholeFilesAssembled.inc();
    this.#scrub?.wake();
  }

  /** Removes `objectId`'s whole file: its slots are allocated again and freed. */
  #dropWhole(objectId: string): void {
    const whole = this.#wholes.get(objectId);
    if (whole === undefined) return;
    try {
      this.#files?.remove(objectId);
    } catch (err) {
      // The manifest could not be removed: the slots stay held, so a restart finds them as the manifest says.
      this.#counters.ioError('remove', err);
      return;
    }
    this.#wholes.delete(objectId);
    this.#slots.delete(WHOLE_KEY + objectId);
    this.#wholeBlocks -= whole.slots.length;
    this.#used -= whole.size;
    for (const slot of whole.slots) {
      if (this.#punchLater.delete(slot)) {
        // Never punched (still lent): it becomes free when its last loan ends.
        this.#lentGone.add(slot);
        continue;
      }
      try {
        this.#mmap.allocate(this.#fd, this.#geometry.blockSize, this.#geometry.dataStart + slot * this.#geometry.blockSize);
      } catch (err) {
        // No memory for it now (a full tmpfs): the slot stays out of use until the next open.
        this.#counters.ioError('allocate', err);
        continue;
      }
      this.#free.push(slot);
    }
    this.#counters.sizes(this.#used, this.capacityBytes);
  }

  /** Gives back the memory of `slot`, which a whole file stands in for. */
  #punchSlot(slot: number): void {
    // Closed: the descriptor is closed, and its number may name another file by now.
    if (this.#meta === undefined) return;
    try {
      this.#mmap.punch(this.#fd, this.#geometry.dataStart + slot * this.#geometry.blockSize, this.#geometry.blockSize);
    } catch (err) {
      // The memory stays taken (counted as an I/O error); nothing is wrong with the data.
      this.#counters.ioError('punch', err);
    }
  }

  /** The whole files in the order they were made (or loaded), for the scrub. */
  *#wholeTargets(): Generator<ScrubTarget> {
    if (this.#closing || this.#files === undefined) return;
    for (const [objectId, whole] of this.#wholes) yield { objectId, path: this.#files.dataPath(objectId), size: whole.size, layout: whole, entry: whole };
  }

  #locate(slot: number): { segment: Buffer; offset: number } {
    const segment = this.#segments[Math.floor(slot / this.#slotsPerSegment)];
    if (segment === undefined) throw new CacheError('CACHE_TIER_IO', 'pmem pool is closed');
    return { segment, offset: (slot % this.#slotsPerSegment) * this.#geometry.blockSize };
  }
}

const wholeFilesAssembled = counter('strata_cache_whole_files_assembled_total', 'Object versions made whole in the NVMe or pmem tier: their blocks copied, CRC-checked, into one file the kernel can read through passthrough');

/** A block failed its CRC while being copied into a whole file: the file is abandoned. */
class DamagedBlock extends Error {
  constructor(readonly index: number) {
    super(`block ${index} failed its checksum`);
  }
}

/** Calls `run(first, count)` for each maximal run of slots in [0, slotCount) that `wanted` accepts. */
function forEachRun(slotCount: number, wanted: (slot: number) => boolean, run: (first: number, count: number) => void): void {
  let first = -1;
  for (let slot = 0; slot <= slotCount; slot += 1) {
    const inRun = slot < slotCount && wanted(slot);
    if (inRun && first < 0) first = slot;
    else if (!inRun && first >= 0) {
      run(first, slot - first);
      first = -1;
    }
  }
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
