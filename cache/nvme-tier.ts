import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, statfs, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Logger } from '../telemetry/index.js';
import { CacheError } from './cache-error.js';
import { blockChecksum } from './checksum.js';
import { FIXED_HEADER_BYTES, blockFileSize, decodeBlockHeader, encodeBlockHeader } from './nvme-block-file.js';
import type { BlockFile } from './object-reader.js';
import { deleteRecord, putRecord, replayIndexLog, type IndexEntry } from './nvme-index-log.js';
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
 * into place, so a crash never leaves a visible half block; files are not fsync'd, since
 * the CRC catches a block torn by power loss and a cache may lose blocks.
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
    for (const entry of entries.values()) this.#used += entry.fileBytes;
    this.#counters.sizes(this.#used, this.#capacity);
    this.scanned = this.#scan().catch((err: unknown) => this.#counters.ioError('scan', err));
  }

  /** Opens (or creates) the tier in `config.dir`, replaying its index. */
  static async open(config: NvmeTierConfig, logger: Logger): Promise<NvmeTier> {
    if (!(config.capacityBytes > 0)) throw new CacheError('CACHE_TIER_INVALID', `nvme capacity must be positive, got ${config.capacityBytes}`);
    let reserveBytes: number;
    try {
      await mkdir(config.dir, { recursive: true });
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
    return this.#entries.has(id);
  }

  locate(id: string, length: number): BlockFile | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined || this.#closed) return undefined;
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
    if (entry === undefined || this.#closed) {
      this.#counters.miss();
      return undefined;
    }
    const path = this.#pathOf(id);
    let file: Buffer;
    let bytesRead: number;
    try {
      const handle = await open(path, 'r');
      try {
        file = Buffer.allocUnsafe(entry.fileBytes);
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
    if (present !== undefined) {
      this.#entries.delete(id);
      this.#entries.set(id, present);
      return true;
    }
    const pending = this.#pending.get(id);
    if (pending !== undefined) return pending;
    const write = this.#write(id, bytes, checksum).finally(() => this.#pending.delete(id));
    this.#pending.set(id, write);
    return write;
  }

  async delete(id: string): Promise<void> {
    if (!this.#entries.has(id)) return;
    this.#forget(id);
    await this.#unlink(this.#pathOf(id));
  }

  stats(): TierStats {
    return this.#counters.snapshot({ capacityBytes: this.#capacity, usedBytes: this.#used, blocks: this.#entries.size });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#pending.values(), this.scanned]);
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
    const fileBytes = this.#forget(id);
    this.#counters.eviction();
    this.#freeEstimate.bytes += fileBytes;
    void this.#unlink(this.#pathOf(id));
    return fileBytes;
  }

  /** The least recently used block that is not pinned; undefined when every block is pinned. */
  #oldestUnpinned(): string | undefined {
    const pinned = this.#isPinned;
    for (const id of this.#entries.keys()) if (pinned === undefined || !pinned(id)) return id;
    return undefined;
  }

  /** Drops `id` from the index (and the log); answers the bytes it held. */
  #forget(id: string): number {
    const entry = this.#entries.get(id);
    if (entry === undefined) return 0;
    this.#entries.delete(id);
    this.#used -= entry.fileBytes;
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
    await mkdir(sub, { recursive: true });
    this.#knownDirs.add(sub);
  }

  #pathOf(id: string): string {
    const hash = hashId(id);
    return join(this.#dir, hash.slice(0, 2), `${hash}.blk`);
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
        }
      }
    }
    if (adopted > 0) this.#logger.info({ tier: 'nvme', adopted }, 'adopted block files missing from the index');
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

function hashId(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

async function writeCompactLog(dir: string, entries: Map<string, IndexEntry>): Promise<void> {
  const lines: string[] = [];
  for (const [id, entry] of entries) lines.push(putRecord(id, entry));
  const path = join(dir, INDEX_FILE);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, lines.join(''));
  await rename(tmp, path);
}
