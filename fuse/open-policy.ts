import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { BlockFiles } from '../cache/index.js';
import { counter, type Logger } from '../telemetry/index.js';
import type { FileStat, Filesystem } from './filesystem.js';
import type { InodeTable } from './inode-table.js';
import { OpenFlag, openOut } from './kernel-protocol.js';
import type { FuseBinding, FuseSessionHandle } from './native-binding.js';

/**
 * How the kernel serves each open of the native FUSE session: through passthrough (the
 * kernel reads a plain local file itself), from its page cache kept across opens while the
 * file's version is unchanged, or DIRECT_IO through the daemon; and which tier files the
 * reader threads may answer READs from. Per node it keeps the cached version and the
 * passthrough backing shared by the node's opens, and drops them once nothing needs them.
 */

const passthroughOpens = counter('strata_fuse_passthrough_files_total', 'Files the kernel was given to read or write itself (FUSE passthrough backing files registered)', []);

/** open(2)'s access mode bits (O_ACCMODE). */
const ACCESS_MODE = 0o3;

/** Per node: the version its pages were cached for, and any passthrough backing shared by its opens. */
interface NodeIo {
  version?: string;
  cachedOpens: number;
  backing?: { id: number; file: string; opens: number };
}

export class OpenPolicy {
  readonly #binding: FuseBinding;
  readonly #session: FuseSessionHandle;
  readonly #fs: Filesystem;
  readonly #logger: Logger;
  readonly #inodes: InodeTable;
  /** Whether INIT granted passthrough. */
  readonly #passthrough: () => boolean;
  readonly #io = new Map<bigint, NodeIo>();
  /** Handle → node and backing of a passthrough or cached open, for RELEASE. */
  readonly #opens = new Map<number, { node: bigint; passthrough: boolean; cached: boolean; files: BlockFiles | undefined }>();

  constructor(binding: FuseBinding, session: FuseSessionHandle, fs: Filesystem, logger: Logger, inodes: InodeTable, passthrough: () => boolean) {
    this.#binding = binding;
    this.#session = session;
    this.#fs = fs;
    this.#logger = logger;
    this.#inodes = inodes;
    this.#passthrough = passthrough;
  }

  /**
   * OPEN: the Filesystem opens; this decides how the kernel serves the handle. A reader of
   * a file the Filesystem can back with a plain local file goes through passthrough (the
   * kernel reads that file itself). Otherwise the kernel's page cache is kept across opens
   * while size and mtime (which carries the ETag) are unchanged, as libfuse's auto_cache.
   * The kernel refuses to mix passthrough and cached opens of one inode: a cached open
   * while passthrough ones are live is answered DIRECT_IO (through the daemon, uncached),
   * and a passthrough candidate while cached opens are live is served cached.
   */
  async open(node: bigint, path: string, flags: number): Promise<Buffer> {
    const fs = this.#fs;
    // The read is announced below, once it is known the daemon serves it (not passthrough,
    // not a first block the FUSE threads read themselves).
    const handle = await fs.open(path, flags, { announceRead: false });
    // A FLUSH with nothing to do (a reader's: writers finish their file there, async close) is
    // not sent at all: one round trip less per file closed (`cat` of many small files).
    const noFlush = fs.flushes(handle) ? 0 : OpenFlag.NOFLUSH;
    try {
      const io = this.#nodeIo(node);
      const backingId = await this.#passthroughOf(handle, node, io, flags);
      if (backingId !== undefined) return openOut(handle, OpenFlag.PASSTHROUGH | noFlush, backingId);
      const files = this.#serveFromFiles(handle);
      // Loading the first block ahead (and the next files) is for reads the daemon answers: a
      // first block the FUSE threads read from a tier file or DRAM needs none.
      if (files?.blocks[0] === undefined) fs.announceRead(handle);
      if (io.backing) {
        this.#opens.set(handle, { node, passthrough: false, cached: false, files });
        return openOut(handle, OpenFlag.DIRECT_IO | noFlush);
      }
      io.cachedOpens++;
      this.#opens.set(handle, { node, passthrough: false, cached: true, files });
      const stat = await fs.getattr(path).catch(() => undefined);
      const version = stat ? versionOf(stat) : undefined;
      const keep = version !== undefined && version === io.version;
      io.version = version;
      return openOut(handle, (keep ? OpenFlag.KEEP_CACHE : 0) | noFlush);
    } catch (err) {
      this.closed(handle);
      await fs.release(handle).catch(() => undefined);
      throw err;
    }
  }

  /**
   * CREATE opened `handle` on `node`: through passthrough to the staged file when the write
   * path lets the kernel write it, else cached like any open, unless passthrough opens of the
   * node are live (then DIRECT_IO). Answers the open reply.
   */
  async created(handle: number, node: bigint, flags: number): Promise<Buffer> {
    const io = this.#nodeIo(node);
    const backingId = await this.#passthroughOf(handle, node, io, flags);
    if (backingId !== undefined) return openOut(handle, OpenFlag.PASSTHROUGH, backingId);
    const direct = io.backing !== undefined;
    if (!direct) io.cachedOpens++;
    this.#opens.set(handle, { node, passthrough: false, cached: !direct, files: undefined });
    return openOut(handle, direct ? OpenFlag.DIRECT_IO : 0);
  }

  /**
   * The backing id `handle` (opened with `flags`) is served through when passthrough can take
   * it (registered as such), else undefined. A writer only when opened write-only: a shared
   * writable mapping needs a descriptor that reads too, and the kernel maps the backing file
   * itself, so such a mapping could write on after the last close, when the daemon has
   * committed the file (the daemon's path sees those writes before RELEASE).
   */
  async #passthroughOf(handle: number, node: bigint, io: NodeIo, flags: number): Promise<number | undefined> {
    if (!this.#passthrough() || io.cachedOpens > 0) return undefined;
    if (this.#fs.flushes(handle) && (flags & ACCESS_MODE) !== constants.O_WRONLY) return undefined;
    const file = await this.#fs.backingFile(handle);
    const backingId = file && (await this.#backing(io, file));
    if (backingId !== undefined) this.#opens.set(handle, { node, passthrough: true, cached: false, files: undefined });
    return backingId;
  }

  /** A handle open on `node` (the last registered), for fstat of a file whose path is gone. */
  handleOn(node: bigint): number | undefined {
    let handle: number | undefined;
    for (const [h, open] of this.#opens) if (open.node === node) handle = h;
    return handle;
  }

  /** A handle is released: its node's passthrough backing or cached-open count goes down. */
  closed(handle: number): void {
    const open = this.#opens.get(handle);
    if (!open) return;
    this.#opens.delete(handle);
    if (open.files) open.files.read(this.#binding.forgetFiles(this.#session, handle));
    const io = this.#io.get(open.node);
    if (!io) return;
    if (open.cached) io.cachedOpens--;
    if (open.passthrough && io.backing && --io.backing.opens === 0) {
      try {
        this.#binding.backingClose(this.#session, io.backing.id);
      } catch (err) {
        this.#logger.warn({ err: (err as Error).message }, 'cannot drop a passthrough backing file');
      }
      io.backing = undefined;
    }
    if (io.cachedOpens === 0 && !io.backing && (io.version === undefined || this.#inodes.pathOf(open.node) === undefined)) this.#io.delete(open.node);
  }

  /** The kernel forgot `node`: its cache version goes too, unless opens still need it. */
  forgotten(node: bigint): void {
    const io = this.#io.get(node);
    if (io && io.cachedOpens === 0 && !io.backing) this.#io.delete(node);
  }

  #nodeIo(node: bigint): NodeIo {
    let io = this.#io.get(node);
    if (!io) {
      io = { cachedOpens: 0 };
      this.#io.set(node, io);
    }
    return io;
  }

  /**
   * The node's backing id for `file` (which this closes): one per node, shared by its
   * passthrough opens while they last, since the kernel ties a backing file to the inode.
   * Undefined when the node is backed by another file (a new version) or the kernel refuses.
   */
  async #backing(io: NodeIo, file: FileHandle): Promise<number | undefined> {
    try {
      const info = await file.stat();
      const identity = `${info.dev}:${info.ino}`;
      // A cached open arrived meanwhile: the kernel would refuse to mix the two.
      if (io.cachedOpens > 0) return undefined;
      if (io.backing) {
        if (io.backing.file !== identity) return undefined;
        io.backing.opens++;
        return io.backing.id;
      }
      const id = this.#binding.backingOpen(this.#session, file.fd);
      io.backing = { id, file: identity, opens: 1 };
      passthroughOpens.inc();
      return id;
    } catch (err) {
      this.#logger.warn({ err: (err as Error).message }, 'passthrough refused by the kernel; serving the file through the daemon');
      return undefined;
    } finally {
      await file.close();
    }
  }

  /**
   * Hands the reader threads the places of the handle's cached blocks now (DRAM buffers, pmem
   * slots, NVMe block files), so READs of those blocks are answered on the threads, never
   * waiting for the event loop; the rest (and any block that fails its checksum) still comes
   * here. The places when the handle was registered (RELEASE unregisters them, and only then
   * is `files`, which keeps the DRAM buffers alive, let go).
   */
  #serveFromFiles(handle: number): BlockFiles | undefined {
    const files = this.#fs.blockFiles(handle);
    if (!files) return undefined;
    const count = files.blocks.length;
    const places = new Array<string | Buffer | null>(count);
    const offsets = new Float64Array(count);
    const checksums = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const block = files.blocks[i];
      if (block === undefined) places[i] = null;
      else if ('memory' in block) places[i] = block.memory;
      else {
        places[i] = block.path;
        offsets[i] = block.offset;
        checksums[i] = block.checksum;
      }
    }
    try {
      this.#binding.serveFiles(this.#session, handle, files.size, files.blockSize, places, offsets, checksums);
      return files;
    } catch (err) {
      files.read([]);
      this.#logger.warn({ err: (err as Error).message }, 'cannot hand tier files to the FUSE threads; reads go through the daemon');
      return undefined;
    }
  }
}

/** What keeps cached pages valid: the size and the mtime (which carries the ETag). */
function versionOf(stat: FileStat): string {
  return `${stat.size}:${stat.mtime.getTime()}`;
}
