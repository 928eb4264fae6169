import { closeSync, openSync, writeSync } from 'node:fs';
import { link, open, readFile, readdir, rename, rm, statfs, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { counter, type Logger } from '../telemetry/index.js';
import { blockMemory } from '../store/index.js';
import { blockIdInVersion, hashId, splitBlockId } from './block-key.js';
import { CacheError } from './cache-error.js';
import { blockChecksum } from './checksum.js';
import { FIXED_HEADER_BYTES, blockFileSize, decodeBlockHeader, encodeBlockHeader } from './nvme-block-file.js';
import type { BlockFile } from './object-reader.js';
import { deleteRecord, putRecord, replayIndexLog, type IndexEntry, type WholeLayout } from './nvme-index-log.js';
import { makeFolders, renameDurably } from '../durable/index.js';
import { assembleWholeFile, blockChecksumsOf, readExactly, type SourceBlock } from './nvme-whole-file.js';
import { WholeScrub, type ScrubTarget } from './whole-scrub.js';
import { wholeJob } from './whole-jobs.js';
import type { Tier, TierStats } from './tier.js';
import { TierCounters } from './tier-counters.js';

export interface NvmeTierConfig {
  /** Directory holding the block files and `index.log`; created if missing. */
  readonly dir: string;
  /** Most bytes of block files (headers included) the tier keeps. */
  readonly capacityBytes: number;
  /**
   * Free bytes the tier always leaves on the file system, evicting its own blocks to
   * keep them. Default: 10% of the file system's size, because ext4 and XFS slow down
   * sharply when nearly full and other users (checkpoint staging, logs) share the disk.
   */
  readonly reserveBytes?: number;
  /** Pinned blocks are never evicted (pins of `strata warmup --pin` and checkpoints). */
  readonly isPinned?: (id: string) => boolean;
  /**
   * Bytes per second the background scrub re-reads of whole-object files, checking every
   * block's CRC-32C (whole-scrub.ts); 0 or absent: no scrub.
   */
  readonly scrubBytesPerSecond?: number;
}

/** Where a block of a whole-object file lies in it. */
interface WholeBlock {
  readonly objectId: string;
  readonly entry: IndexEntry;
  readonly offset: number;
  readonly length: number;
  readonly checksum: number;
}

/** A whole-object file of the tier, as `wholeFile` answers it. */
export interface WholeFile {
  readonly path: string;
  readonly size: number;
}

const INDEX_FILE = 'index.log';
/** Re-read statfs at most once a second; in between, writes and unlinks adjust a local estimate. */
const STATFS_TTL_MS = 1000;
/** A header is 24 bytes plus the id; ids (store URL, key ≤ 1,024 bytes, ETag) fit in 4 KiB. */
const HEADER_PROBE_BYTES = 4096;
/** Rewrite the log at open when it holds more than this many records per live block. */
const COMPACT_RATIO = 2;
/** The start-up scan hashes known ids in batches this size, yielding to the event loop between. */
const SCAN_BATCH = 5000;

/**
 * The NVMe tier: one file per block, `<dir>/<2 hex>/<sha256(id)>.blk`, holding a header
 * (id, length, CRC) and the data. A block is written to a temporary file and renamed
 * into place, so a crash never leaves a visible half block; block files are not fsync'd,
 * since the CRC catches a block torn by power loss and a cache may lose blocks.
 *
 * An object version whose blocks are all here can be made whole (`assembleWhole`): one plain
 * file `<dir>/<2 hex>/<sha256(object id)>.obj` with the object's bytes at their own offsets
 * (for FUSE passthrough), fsync'd before the log records it, since the kernel reads it without
 * checking CRCs. It replaces the object's block files: its blocks are served from it (at
 * index × blockSize, with the CRCs the log keeps), so no byte is kept twice. A whole file is
 * one entry for capacity and recency (evicted whole, never while its object is pinned), and
 * the optional scrub (whole-scrub.ts) re-checks whole files in the background.
 *
 * The index lives in memory and in an append-only log (see nvme-index-log.ts) that is
 * replayed at open (about 0.1 s for 100,000 blocks) and compacted at close. After open,
 * a background scan (`scanned`) adopts block files the log missed (a crash between
 * rename and log append) and removes temporary files. Eviction is LRU by byte capacity;
 * recency survives a restart as of the last clean close, else as write order.
 */
export class NvmeTier implements Tier {
  readonly name = 'nvme' as const;
  readonly #dir: string;
  readonly #capacity: number;
  readonly #reserveBytes: number;
  readonly #isPinned: ((id: string) => boolean) | undefined;
  readonly #counters: TierCounters;
  readonly #logger: Logger;
  /** Live blocks in LRU order: the first key is the least recently used. */
  readonly #entries: Map<string, IndexEntry>;
  readonly #pending = new Map<string, Promise<boolean>>();
  readonly #knownDirs = new Set<string>();
  #logFd: number;
  #used = 0;
  #freeEstimate = { at: 0, bytes: 0 };
  #tmpSeq = 0;
  #closed = false;
  /** Object versions being assembled into whole files: their blocks are not evicted meanwhile. */
  readonly #assembling = new Map<string, Promise<boolean>>();
  readonly #scrub: WholeScrub | undefined;
  /** Blocks held in whole files beyond one per file: `stats().blocks` counts blocks, not files. */
  #wholeBlocks = 0;
  /** Settles when the start-up scan for orphan and temporary files has finished. */
  readonly scanned: Promise<void>;

  private constructor(config: NvmeTierConfig, reserveBytes: number, entries: Map<string, IndexEntry>, logFd: number, logger: Logger) {
    this.#dir = config.dir;
    this.#capacity = config.capacityBytes;
    this.#reserveBytes = reserveBytes;
    this.#isPinned = config.isPinned;
    this.#entries = entries;
    this.#logFd = logFd;
    this.#logger = logger;
    this.#counters = new TierCounters('nvme', logger);
    for (const entry of entries.values()) {
      this.#used += entry.fileBytes;
      this.#wholeBlocks += entry.whole === undefined ? 0 : entry.whole.checksums.length - 1;
    }
    this.#counters.sizes(this.#used, this.#capacity);
    this.scanned = this.#scan().catch((err: unknown) => this.#counters.ioError('scan', err));
    const rate = config.scrubBytesPerSecond ?? 0;
    this.#scrub =
      rate > 0
        ? new WholeScrub(rate, {
            wholeFiles: () => this.#wholeTargets(),
            mismatch: (target) => this.#scrubMismatch(target),
            ioError: (err) => this.#counters.ioError('scrub', err),
          })
        : undefined;
  }

  /** Opens (or creates) the tier in `config.dir`, replaying its index. */
  static async open(config: NvmeTierConfig, logger: Logger): Promise<NvmeTier> {
    if (!(config.capacityBytes > 0)) throw new CacheError('CACHE_TIER_INVALID', `nvme capacity must be positive, got ${config.capacityBytes}`);
    let reserveBytes: number;
    try {
      await makeFolders(config.dir);
      const fs = await statfs(config.dir);
      reserveBytes = config.reserveBytes ?? Math.floor(fs.blocks * fs.bsize * 0.1);
    } catch (err) {
      throw new CacheError('CACHE_TIER_INVALID', `nvme directory ${config.dir} cannot be used: ${(err as Error).message}`, { cause: err });
    }
    const logPath = join(config.dir, INDEX_FILE);
    let text = '';
    try {
      text = await readFile(logPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        logger.warn({ err, path: logPath }, 'nvme index unreadable; starting empty, the scan adopts existing blocks');
      }
    }
    const { entries, records } = replayIndexLog(text);
    if (records > COMPACT_RATIO * entries.size || text.length > 0 && !text.endsWith('\n')) {
      await writeCompactLog(config.dir, entries);
    }
    const logFd = openSync(logPath, 'a');
    return new NvmeTier(config, reserveBytes, entries, logFd, logger);
  }

  get capacityBytes(): number {
    return this.#capacity;
  }

  get usedBytes(): number {
    return this.#used;
  }

  has(id: string): boolean {
    const entry = this.#entries.get(id);
    return (entry !== undefined && entry.whole === undefined) || this.#wholeHolding(id) !== undefined;
  }

  locate(id: string, length: number): BlockFile | undefined {
    if (this.#closed) return undefined;
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.whole !== undefined) {
      const held = this.#wholeHolding(id);
      if (held === undefined || held.length !== length) return undefined;
      this.#touch(held.objectId, held.entry);
      return { path: this.#wholePath(held.objectId), offset: held.offset, checksum: held.checksum };
    }
    // The data ends the file, after a header of at least FIXED_HEADER_BYTES (nvme-block-file.ts).
    const offset = entry.fileBytes - length;
    if (offset < FIXED_HEADER_BYTES) return undefined;
    this.#entries.delete(id);
    this.#entries.set(id, entry);
    return { path: this.#pathOf(id), offset, checksum: entry.checksum };
  }

  countHits(blocks: number): void {
    if (blocks > 0) this.#counters.hit(blocks);
  }

  async get(id: string): Promise<Buffer | undefined> {
    const entry = this.#entries.get(id);
    if ((entry === undefined || entry.whole !== undefined) && !this.#closed) {
      const held = this.#wholeHolding(id);
      if (held !== undefined) return this.#getFromWhole(id, held);
    }
    if (entry === undefined || entry.whole !== undefined || this.#closed) {
      this.#counters.miss();
      return undefined;
    }
    const path = this.#pathOf(id);
    let file: Buffer;
    let bytesRead: number;
    try {
      const handle = await open(path, 'r');
      try {
        file = blockMemory(entry.fileBytes);
        ({ bytesRead } = await handle.read(file, 0, entry.fileBytes, 0));
      } finally {
        await handle.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.#forget(id);
      else this.#counters.ioError('read', err);
      this.#counters.miss();
      return undefined;
    }
    const header = decodeBlockHeader(file);
    const valid =
      header !== undefined &&
      header.id === id &&
      bytesRead === entry.fileBytes &&
      header.dataOffset + header.dataLength === bytesRead &&
      header.checksum === entry.checksum &&
      blockChecksum(file.subarray(header.dataOffset)) === header.checksum;
    if (!valid) {
      this.#counters.checksumMismatch(id);
      this.#counters.miss();
      await this.delete(id);
      return undefined;
    }
    if (this.#entries.delete(id)) this.#entries.set(id, entry);
    this.#counters.hit();
    return file.subarray(header.dataOffset);
  }

  async put(id: string, bytes: Buffer, checksum?: number): Promise<boolean> {
    if (this.#closed) return false;
    const present = this.#entries.get(id);
    if (present !== undefined && present.whole === undefined) {
      this.#touch(id, present);
      return true;
    }
    const held = this.#wholeHolding(id);
    if (held !== undefined) {
      this.#touch(held.objectId, held.entry);
      return true;
    }
    const pending = this.#pending.get(id);
    if (pending !== undefined) return pending;
    const write = this.#write(id, bytes, checksum).finally(() => this.#pending.delete(id));
    this.#pending.set(id, write);
    return write;
  }

  async delete(id: string): Promise<void> {
    const entry = this.#entries.get(id);
    if (entry !== undefined && entry.whole === undefined) {
      this.#forget(id);
      await this.#unlink(this.#pathOf(id));
      return;
    }
    // A block of a whole file: the object's whole file goes (its blocks are one entry).
    const held = this.#wholeHolding(id);
    if (held === undefined) return;
    this.#forget(held.objectId);
    await this.#unlink(this.#wholePath(held.objectId));
  }

  /**
   * The whole-object file of object version `objectId` (`[storeId, key, etag]` as JSON, the
   * first fields of its block ids), counted as a use for recency; undefined when the tier has
   * none. The file holds exactly the object's bytes while it exists: it is replaced only by
   * rename with the same bytes, and removed (never changed) when evicted or found damaged.
   */
  wholeFile(objectId: string, options: { readonly touch?: boolean } = {}): WholeFile | undefined {
    const entry = this.#entries.get(objectId);
    if (entry?.whole === undefined || this.#closed) return undefined;
    if (options.touch !== false) this.#touch(objectId, entry);
    return { path: this.#wholePath(objectId), size: entry.fileBytes };
  }

  /**
   * Makes object version `objectId` of `size` bytes whole: when every one of its blocks
   * (`blockSize` bytes each, the last one short) is a block file of this tier, copies them,
   * each checked against its CRC-32C, into one whole-object file (nvme-whole-file.ts), commits
   * it to the index log, then drops the block files. Answers whether the object is whole now.
   * Background work: one block buffer, one object at a time per call; concurrent calls for one
   * object share the work. Room for the file is made as for a block (its blocks are not
   * evicted for it); a block that fails its CRC is dropped (counted as a mismatch) and
   * nothing is made. Never rejects.
   */
  assembleWhole(objectId: string, size: number, blockSize: number): Promise<boolean> {
    if (this.#closed || !(size > 0) || !(blockSize > 0)) return Promise.resolve(false);
    if (this.#entries.get(objectId)?.whole !== undefined) return Promise.resolve(true);
    // Marked running before the work starts: making room (synchronously at first) must not evict its blocks.
    return wholeJob(this.#assembling, objectId, () => this.#assemble(objectId, size, blockSize), (err) => this.#counters.ioError('assemble', err));
  }

  /**
   * Takes `file`, a local file holding exactly object version `objectId`'s `size` bytes that is
   * durable and never changed again (a checkpoint's staged copy once committed), as its
   * whole-object file through a hard link: no byte is copied. The CRC-32C of each block is
   * computed from the file, for reads of single blocks and the scrub. Answers false, changing
   * nothing, when `file` is on another file system, the object is one block, or there is no
   * room. Never rejects.
   */
  adoptWhole(objectId: string, file: string, size: number, blockSize: number): Promise<boolean> {
    if (this.#closed || !(size > blockSize) || this.#assembling.has(objectId)) return Promise.resolve(false);
    if (this.#entries.get(objectId)?.whole !== undefined) return Promise.resolve(true);
    return wholeJob(this.#assembling, objectId, () => this.#linkWhole(objectId, file, size, blockSize), (err) => this.#counters.ioError('adopt', err));
  }

  stats(): TierStats {
    return this.#counters.snapshot({ capacityBytes: this.#capacity, usedBytes: this.#used, blocks: this.#entries.size + this.#wholeBlocks });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Assembly stops at its next block (its temporary file is removed); the scrub at its next read.
    await Promise.allSettled([...this.#pending.values(), this.scanned, ...this.#assembling.values(), this.#scrub?.stop()]);
    closeSync(this.#logFd);
    try {
      await writeCompactLog(this.#dir, this.#entries);
    } catch (err) {
      // The appended log is still valid; only recency order is lost.
      this.#counters.ioError('compact', err);
    }
  }

  async #write(id: string, bytes: Buffer, knownChecksum: number | undefined): Promise<boolean> {
    const fileBytes = blockFileSize(id, bytes.length);
    if (fileBytes > this.#capacity || !(await this.#makeRoom(fileBytes))) return false;
    this.#used += fileBytes;
    const path = this.#pathOf(id);
    const tmp = `${path}.${process.pid}.${this.#tmpSeq++}.tmp`;
    const checksum = knownChecksum ?? blockChecksum(bytes);
    try {
      await this.#ensureDir(path);
      const handle = await open(tmp, 'w');
      try {
        await handle.writev([encodeBlockHeader(id, bytes, checksum), bytes]);
      } finally {
        await handle.close();
      }
      await rename(tmp, path);
    } catch (err) {
      this.#used -= fileBytes;
      this.#counters.ioError('write', err);
      await rm(tmp, { force: true }).catch(() => undefined);
      return false;
    }
    this.#freeEstimate.bytes -= fileBytes;
    const entry = { fileBytes, checksum };
    this.#entries.set(id, entry);
    this.#append(putRecord(id, entry));
    this.#counters.sizes(this.#used, this.#capacity);
    return true;
  }

  /** Evicts LRU blocks until `fileBytes` fits under the capacity and above the free-space reserve. */
  async #makeRoom(fileBytes: number): Promise<boolean> {
    // Each loop stops when nothing is left to evict (empty, or every block pinned).
    while (this.#used + fileBytes > this.#capacity) if (this.#evictOldest() === 0) return false;
    let shortfall = this.#reserveBytes + fileBytes - (await this.#freeBytes());
    while (shortfall > 0) {
      const freed = this.#evictOldest();
      if (freed === 0) return false;
      shortfall -= freed;
    }
    return true;
  }

  async #freeBytes(): Promise<number> {
    const now = Date.now();
    if (now - this.#freeEstimate.at > STATFS_TTL_MS) {
      try {
        const fs = await statfs(this.#dir);
        this.#freeEstimate = { at: now, bytes: fs.bavail * fs.bsize };
      } catch (err) {
        this.#counters.ioError('statfs', err);
        return 0;
      }
    }
    return this.#freeEstimate.bytes;
  }

  #evictOldest(): number {
    const id = this.#oldestUnpinned();
    if (id === undefined) return 0;
    const path = this.#fileOf(id);
    const fileBytes = this.#forget(id);
    this.#counters.eviction();
    this.#freeEstimate.bytes += fileBytes;
    void this.#unlink(path);
    return fileBytes;
  }

  /**
   * The least recently used entry (block or whole file) that is not pinned and not a block of
   * an object being assembled; undefined when there is none.
   */
  #oldestUnpinned(): string | undefined {
    const pinned = this.#isPinned;
    for (const [id, entry] of this.#entries) {
      // A whole file is pinned when its object is: ask with the id of its first block.
      const asked = entry.whole === undefined ? id : blockIdInVersion(id, 0);
      if (pinned !== undefined && pinned(asked)) continue;
      if (entry.whole === undefined && this.#assembling.size > 0 && this.#assembling.has(splitBlockId(id)?.objectId ?? '')) continue;
      return id;
    }
    return undefined;
  }

  /** Drops `id` from the index (and the log); answers the bytes it held. */
  #forget(id: string): number {
    const entry = this.#entries.get(id);
    if (entry === undefined) return 0;
    this.#entries.delete(id);
    this.#used -= entry.fileBytes;
    if (entry.whole !== undefined) this.#wholeBlocks -= entry.whole.checksums.length - 1;
    this.#append(deleteRecord(id));
    this.#counters.sizes(this.#used, this.#capacity);
    return entry.fileBytes;
  }

  #append(record: string): void {
    if (this.#closed) return;
    try {
      // A synchronous append of one short line: cheaper than the block write it follows,
      // and it keeps records in the order the index changed.
      writeSync(this.#logFd, record);
    } catch (err) {
      this.#counters.ioError('index', err);
    }
  }

  async #unlink(path: string): Promise<void> {
    try {
      await unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#counters.ioError('unlink', err);
    }
  }

  async #ensureDir(path: string): Promise<void> {
    const sub = path.slice(0, path.lastIndexOf('/'));
    if (this.#knownDirs.has(sub)) return;
    await makeFolders(sub);
    this.#knownDirs.add(sub);
  }

  #pathOf(id: string): string {
    const hash = hashId(id);
    return join(this.#dir, hash.slice(0, 2), `${hash}.blk`);
  }

  #wholePath(objectId: string): string {
    const hash = hashId(objectId);
    return join(this.#dir, hash.slice(0, 2), `${hash}${WHOLE_SUFFIX}`);
  }

  /** The file of entry `id`: a block file, or a whole-object file. */
  #fileOf(id: string): string {
    return this.#entries.get(id)?.whole === undefined ? this.#pathOf(id) : this.#wholePath(id);
  }

  #touch(id: string, entry: IndexEntry): void {
    this.#entries.delete(id);
    this.#entries.set(id, entry);
  }

  /** The whole file that holds block `id`, with where the block lies in it; undefined when none does. */
  #wholeHolding(id: string): WholeBlock | undefined {
    const block = splitBlockId(id);
    if (block === undefined) return undefined;
    const { objectId, index } = block;
    const entry = this.#entries.get(objectId);
    const layout = entry?.whole;
    if (entry === undefined || layout === undefined || index >= layout.checksums.length) return undefined;
    const offset = index * layout.blockSize;
    return { objectId, entry, offset, length: Math.min(layout.blockSize, entry.fileBytes - offset), checksum: layout.checksums[index]! };
  }

  async #getFromWhole(id: string, held: WholeBlock): Promise<Buffer | undefined> {
    const path = this.#wholePath(held.objectId);
    const bytes = blockMemory(held.length);
    try {
      await readExactly(path, held.offset, bytes);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.#forget(held.objectId);
      else this.#counters.ioError('read', err);
      this.#counters.miss();
      return undefined;
    }
    if (blockChecksum(bytes) !== held.checksum) {
      // The file is damaged: it goes whole, and new opens read (and refetch) through blocks.
      this.#counters.checksumMismatch(id);
      this.#counters.miss();
      this.#dropWhole(held.objectId, held.entry);
      return undefined;
    }
    if (this.#entries.get(held.objectId) === held.entry) this.#touch(held.objectId, held.entry);
    this.#counters.hit();
    return bytes;
  }

  /** Removes the whole file of `objectId` if it is still the one `entry` describes. */
  #dropWhole(objectId: string, entry: IndexEntry): void {
    if (this.#entries.get(objectId) !== entry) return;
    this.#forget(objectId);
    void this.#unlink(this.#wholePath(objectId));
  }

  async #assemble(objectId: string, size: number, blockSize: number): Promise<boolean> {
    const layout: WholeLayout = { blockSize, checksums: [] };
    const blocks: SourceBlock[] = [];
    const sources: Array<{ id: string; entry: IndexEntry }> = [];
    for (let index = 0; index * blockSize < size; index++) {
      const id = blockIdInVersion(objectId, index);
      const entry = this.#entries.get(id);
      const length = Math.min(blockSize, size - index * blockSize);
      if (entry === undefined || entry.whole !== undefined || entry.fileBytes - length < FIXED_HEADER_BYTES) return false;
      blocks.push({ path: this.#pathOf(id), offset: entry.fileBytes - length, length, checksum: entry.checksum });
      sources.push({ id, entry });
      (layout.checksums as number[]).push(entry.checksum);
    }
    if (size > this.#capacity || !(await this.#makeRoom(size))) return false;
    this.#used += size;
    const path = this.#wholePath(objectId);
    const tempName = `${path.slice(path.lastIndexOf('/') + 1)}.${process.pid}.${this.#tmpSeq++}.tmp`;
    let result;
    try {
      await this.#ensureDir(path);
      result = await assembleWholeFile(path, tempName, blocks, blockSize, () => this.#closed);
    } catch (err) {
      this.#used -= size;
      throw err;
    }
    if (result.kind !== 'done') {
      this.#used -= size;
      if (result.kind === 'mismatch') {
        const bad = sources[result.index]!;
        this.#counters.checksumMismatch(bad.id);
        if (this.#entries.get(bad.id) === bad.entry) await this.delete(bad.id);
      }
      return false;
    }
    // A block dropped meanwhile (its object changed in the store, or it was found damaged):
    // the file must not outlive the blocks it was made of.
    if (this.#closed || sources.some(({ id, entry }) => this.#entries.get(id) !== entry)) {
      this.#used -= size;
      await this.#unlink(path);
      return false;
    }
    this.#commitWhole(objectId, size, layout);
    return true;
  }

  async #linkWhole(objectId: string, file: string, size: number, blockSize: number): Promise<boolean> {
    const checksums = await blockChecksumsOf(file, size, blockSize);
    if (checksums === undefined || size > this.#capacity || !(await this.#makeRoom(size))) return false;
    this.#used += size;
    const path = this.#wholePath(objectId);
    const temp = `${path}.${process.pid}.${this.#tmpSeq++}.tmp`;
    try {
      await this.#ensureDir(path);
      await link(file, temp);
      await renameDurably(temp, path);
    } catch (err) {
      this.#used -= size;
      await rm(temp, { force: true });
      if ((err as NodeJS.ErrnoException).code === 'EXDEV') return false; // another file system: the caller copies
      throw err;
    }
    if (this.#closed) {
      this.#used -= size;
      await this.#unlink(path);
      return false;
    }
    this.#commitWhole(objectId, size, { blockSize, checksums });
    return true;
  }

  /** Records `objectId`'s whole file (written and durable at its path): block files of the version it holds go. */
  #commitWhole(objectId: string, size: number, layout: WholeLayout): void {
    const whole: IndexEntry = { fileBytes: size, checksum: 0, whole: layout };
    this.#entries.set(objectId, whole);
    this.#wholeBlocks += layout.checksums.length - 1;
    this.#append(putRecord(objectId, whole));
    this.#freeEstimate.bytes -= size;
    // Committed: the block files go, their bytes are served from the whole file.
    for (let index = 0; index < layout.checksums.length; index++) {
      const id = blockIdInVersion(objectId, index);
      const entry = this.#entries.get(id);
      if (entry === undefined || entry.whole !== undefined) continue;
      this.#forget(id);
      void this.#unlink(this.#pathOf(id));
    }
    this.#counters.sizes(this.#used, this.#capacity);
    wholeFilesAssembled.inc();
    this.#scrub?.wake();
  }

  /** The whole files in index order, for the scrub. */
  *#wholeTargets(): Generator<ScrubTarget> {
    if (this.#closed) return;
    for (const [id, entry] of this.#entries) {
      if (entry.whole !== undefined) yield { objectId: id, path: this.#wholePath(id), size: entry.fileBytes, layout: entry.whole, entry };
    }
  }

  #scrubMismatch(target: ScrubTarget): void {
    this.#counters.checksumMismatch(target.objectId);
    this.#dropWhole(target.objectId, target.entry as IndexEntry);
  }

  /** Adopts block files the log does not know (their id is in the header) and removes temp files. */
  async #scan(): Promise<void> {
    const known = new Set<string>();
    let batch = 0;
    for (const id of [...this.#entries.keys()]) {
      known.add(hashId(id));
      if (++batch % SCAN_BATCH === 0) await yieldToLoop();
    }
    const subdirs = (await readdir(this.#dir)).filter((name) => /^[0-9a-f]{2}$/.test(name));
    let adopted = 0;
    for (const sub of subdirs) {
      if (this.#closed) return;
      for (const name of await readdir(join(this.#dir, sub))) {
        const path = join(this.#dir, sub, name);
        if (name.endsWith('.tmp')) {
          if (!name.includes(`.${process.pid}.`)) await this.#unlink(path);
        } else if (name.endsWith('.blk') && !known.has(name.slice(0, -4))) {
          if (await this.#adopt(path)) adopted += 1;
        } else if (name.endsWith(WHOLE_SUFFIX) && !known.has(name.slice(0, -WHOLE_SUFFIX.length)) && !this.#isWholeHash(name.slice(0, -WHOLE_SUFFIX.length))) {
          // Renamed into place but never committed to the log (a crash in between): its
          // blocks' CRCs are unknown, so it is never served; its block files are still there.
          await this.#unlink(path);
        }
      }
    }
    if (adopted > 0) this.#logger.info({ tier: 'nvme', adopted }, 'adopted block files missing from the index');
    await this.#dropBlocksOfWholes();
  }

  /** Whether `hash` names a whole file being assembled or committed since the scan began. */
  #isWholeHash(hash: string): boolean {
    for (const [id, entry] of this.#entries) if (entry.whole !== undefined && hashId(id) === hash) return true;
    for (const id of this.#assembling.keys()) if (hashId(id) === hash) return true;
    return false;
  }

  /**
   * Block files of objects that are whole (a crash between a whole file's commit and their
   * removal) go; the scan (`scanned`) ends once they are gone.
   */
  async #dropBlocksOfWholes(): Promise<void> {
    const covered: string[] = [];
    for (const [id, entry] of this.#entries) {
      if (entry.whole !== undefined) continue;
      const objectId = splitBlockId(id)?.objectId;
      if (objectId !== undefined && this.#entries.get(objectId)?.whole !== undefined) covered.push(id);
    }
    for (const id of covered) this.#forget(id);
    await Promise.all(covered.map((id) => this.#unlink(this.#pathOf(id))));
  }

  async #adopt(path: string): Promise<boolean> {
    const handle = await open(path, 'r');
    let header;
    let size;
    try {
      const probe = Buffer.alloc(HEADER_PROBE_BYTES);
      const { bytesRead } = await handle.read(probe, 0, HEADER_PROBE_BYTES, 0);
      header = decodeBlockHeader(probe.subarray(0, bytesRead));
      size = (await handle.stat()).size;
    } finally {
      await handle.close();
    }
    if (header === undefined || this.#entries.has(header.id) || this.#pending.has(header.id)) {
      if (header === undefined) await this.#unlink(path);
      return false;
    }
    if (size !== header.dataOffset + header.dataLength || !path.endsWith(`${hashId(header.id)}.blk`) || this.#used + size > this.#capacity) {
      await this.#unlink(path);
      return false;
    }
    const entry = { fileBytes: size, checksum: header.checksum };
    this.#entries.set(header.id, entry);
    this.#used += size;
    this.#append(putRecord(header.id, entry));
    this.#counters.sizes(this.#used, this.#capacity);
    return true;
  }
}

/** Whole-object files end with this; block files with `.blk`. */
const WHOLE_SUFFIX = '.obj';

const wholeFilesAssembled = counter('strata_cache_whole_files_assembled_total', 'Object versions made whole in the NVMe or pmem tier: their blocks copied, CRC-checked, into one file the kernel can read through passthrough');


async function writeCompactLog(dir: string, entries: Map<string, IndexEntry>): Promise<void> {
  const lines: string[] = [];
  for (const [id, entry] of entries) lines.push(putRecord(id, entry));
  const path = join(dir, INDEX_FILE);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, lines.join(''));
  await rename(tmp, path);
}
