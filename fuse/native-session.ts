import { readFile, writeFile, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { isStrataError } from '../errors/index.js';
import { counter, gauge, type Logger } from '../telemetry/index.js';
import { errnoOf } from './errno.js';
import type { BlockFiles } from '../cache/index.js';
import type { FileStat, Filesystem } from './filesystem.js';
import { opSeconds, promiseOf, reportFailure } from './fuse-metrics.js';
import { InodeTable, childPath, splitPath } from './inode-table.js';
import {
  INIT2_PASSTHROUGH,
  IN_HEADER_BYTES,
  OpenFlag,
  Opcode,
  GETATTR_FH,
  RENAME_NOREPLACE,
  SESSION_ENDED,
  SetattrValid,
  attrOut,
  decodeHeader,
  direntsOut,
  entryOut,
  invalEntryNotice,
  invalInodeNotice,
  nameAt,
  openOut,
  outHeader,
  statfsOut,
  writeOut,
  type DirectoryItem,
} from './kernel-protocol.js';
import { unmountPath, type UnmountPolicy } from './mount-point.js';
import { loadFuseBinding, type FuseBinding, type FuseSessionHandle } from './native-binding.js';

const E = constants.errno;

/** Sessions alive, whose reader threads' counters the gauge below sums at each scrape. */
const liveSessions = new Set<{ fileStats(): Record<string, number> }>();
gauge(
  'strata_fuse_file_reads',
  'READs the FUSE threads answered from tier files without the event loop, since start: kind="reads" requests, "bytes" their bytes, "fallbacks" requests of such files left to the daemon, "mismatches" blocks that failed their checksum',
  ['kind'],
  (g) => {
    const sum: Record<string, number> = { reads: 0, bytes: 0, fallbacks: 0, mismatches: 0 };
    for (const session of liveSessions) for (const [kind, value] of Object.entries(session.fileStats())) sum[kind] = (sum[kind] ?? 0) + value;
    for (const [kind, value] of Object.entries(sum)) g.set({ kind }, value);
  },
);
const passthroughOpens = counter('strata_fuse_passthrough_files_total', 'Files the kernel was given to read itself (FUSE passthrough backing files registered)', []);

export interface NativeSessionOptions {
  /** Seconds the kernel keeps names and attributes; invalidations end them early. */
  readonly metadataTtlSeconds: number;
  readonly allowOther?: boolean;
  readonly fsName?: string;
  /** Largest READ and WRITE request: 1 MiB, the most the kernel's max_pages (256) allows. */
  readonly maxIoBytes?: number;
  /** Threads reading /dev/fuse. */
  readonly threads?: number;
  /** Ask the kernel for FUSE_PASSTHROUGH (granted on 6.9+ to a root daemon). */
  readonly passthrough?: boolean;
  /** Longest a request may wait for its answer before it is answered ETIMEDOUT. */
  readonly operationTimeoutMs: number;
}

/** What the kernel agreed to at INIT. */
export interface NegotiatedSession {
  readonly protocolMinor: number;
  readonly maxWrite: number;
  readonly passthrough: boolean;
}

/**
 * 1 MiB requests: a tenth of the per-request cost of fuse-native's 128 KiB, and the
 * most one request can carry (max_pages is 256 pages of 4 KiB).
 */
const DEFAULT_MAX_IO = 1024 * 1024;
/**
 * Two readers: one can wait in the kernel for the next request while the other hands
 * one to the event loop. JavaScript answers on one thread, so more only help once hits
 * are served natively.
 */
const DEFAULT_THREADS = 2;
/** The kernel sends INIT as soon as mount(2) returns; no answer in this time means it refused. */
const INIT_WAIT_MS = 5_000;
/** How often requests are checked against the operation timeout. */
const TIMEOUT_SWEEP_MS = 5_000;
/** The mode shown for `.` and `..` in a listing (names carry no type: DT_UNKNOWN). */
const DIRENT_MODE_DIR = 0o040000;
/** S_IFMT and S_IFREG of st_mode (mknod's file type). */
const S_IFMT_BITS = 0o170000;
const S_IFREG_BITS = 0o100000;
/** chown's "leave unchanged" (-1 as an unsigned 32-bit id). */
const ID_UNCHANGED = 0xffff_ffff;

interface Pending {
  readonly op: string;
  readonly started: number;
}

interface OpenDir {
  readonly path: string;
  items?: DirectoryItem[];
}

/** Per node: the version its pages were cached for, and any passthrough backing shared by its opens. */
interface NodeIo {
  version?: string;
  cachedOpens: number;
  backing?: { id: number; file: string; opens: number };
}

/**
 * A FUSE mount served by the project's addon (native/src/strata_fuse.c): reader threads
 * take requests from /dev/fuse and hand them to this adapter on the event loop, which
 * translates them to `Filesystem` calls and answers. Like the fuse-native adapter it holds
 * no file system logic; unlike it, it speaks node ids (an `InodeTable` maps them to
 * paths), caches names and attributes in the kernel for the metadata TTL (`invalidate`
 * ends them early), and ties opens of plain local files to the kernel with passthrough.
 */
export class NativeFuseSession {
  readonly mountPoint: string;
  readonly #binding: FuseBinding;
  readonly #session: FuseSessionHandle;
  readonly #fs: Filesystem;
  readonly #logger: Logger;
  readonly #ttl: number;
  readonly #timeoutMs: number;
  readonly #inodes = new InodeTable();
  readonly #pending = new Map<bigint, Pending>();
  readonly #dirs = new Map<number, OpenDir>();
  readonly #io = new Map<bigint, NodeIo>();
  /** Handle → node and backing of a passthrough or cached open, for RELEASE. */
  readonly #opens = new Map<number, { node: bigint; passthrough: boolean; cached: boolean; files: BlockFiles | undefined }>();
  #nextDir = 1;
  #negotiated: NegotiatedSession | undefined;
  #onInit: ((n: NegotiatedSession) => void) | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #ended = false;
  #unmounting = false;
  #connection: string | undefined;

  private constructor(mountPoint: string, binding: FuseBinding, session: FuseSessionHandle, fs: Filesystem, options: NativeSessionOptions, logger: Logger) {
    this.mountPoint = mountPoint;
    this.#binding = binding;
    this.#session = session;
    this.#fs = fs;
    this.#logger = logger;
    this.#ttl = options.metadataTtlSeconds;
    this.#timeoutMs = options.operationTimeoutMs;
  }

  /**
   * Mounts `fs` at `mountPoint` (already prepared: an empty folder, no stale mount) and
   * waits for INIT. Throws when the addon cannot load or the kernel refuses (not root, no
   * /dev/fuse, no INIT): the caller falls back to fuse-native then.
   */
  static async mount(fs: Filesystem, mountPoint: string, options: NativeSessionOptions, logger: Logger): Promise<NativeFuseSession> {
    const binding = loadFuseBinding();
    const maxIo = options.maxIoBytes ?? DEFAULT_MAX_IO;
    const mountOptions = [`max_read=${maxIo}`, ...(options.allowOther ? ['allow_other'] : [])].join(',');
    const session = binding.mount(mountPoint, options.fsName ?? 'strata', mountOptions, maxIo, options.passthrough ?? true);
    const self = new NativeFuseSession(mountPoint, binding, session, fs, options, logger);
    const init = new Promise<NegotiatedSession>((resolve) => {
      self.#onInit = resolve;
    });
    try {
      binding.start(session, (request) => self.#dispatch(request), options.threads ?? DEFAULT_THREADS);
    } catch (err) {
      await unmountPath(mountPoint, logger, { attempts: 1, delayMs: 0 }).catch(() => undefined);
      throw err;
    }
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), INIT_WAIT_MS);
    });
    const negotiated = await Promise.race([init, expired]);
    clearTimeout(timer);
    if (!negotiated) {
      await self.#detach();
      throw new Error(`the kernel sent no INIT within ${INIT_WAIT_MS} ms`);
    }
    self.#sweep = setInterval(() => self.#expire(), TIMEOUT_SWEEP_MS).unref();
    liveSessions.add(self);
    await self.#tuneReadahead(maxIo);
    return self;
  }

  /** What INIT agreed (after `mount` resolved). */
  get negotiated(): NegotiatedSession {
    return this.#negotiated!;
  }

  /** What the reader threads answered from tier files themselves (binding `fileStats`). */
  fileStats(): { reads: number; bytes: number; fallbacks: number; mismatches: number } {
    return this.#binding.fileStats(this.#session);
  }

  /** Nodes the kernel knows now. */
  get knownNodes(): number {
    return this.#inodes.size;
  }

  /**
   * Drops what the kernel caches about `path` (a path in the mount): its attributes and
   * pages, and its name in its folder (negative entries included), so the next access asks
   * the daemon. Without `path`, everything the kernel knows. Cheap when the kernel knows
   * nothing of the path; never waits (notices are written by the addon's own thread).
   * `subtree`: every path under `path` too.
   */
  invalidate(path?: string, subtree = false): void {
    if (this.#ended) return;
    if (path === undefined || (subtree && path === '/')) {
      for (const [id, node] of this.#inodes.entries()) this.#notifyPath(node, id);
      return;
    }
    this.#notifyPath(path, this.#inodes.nodeOf(path));
    if (!subtree) return;
    const prefix = `${path}/`;
    for (const [id, node] of this.#inodes.entries()) if (node.startsWith(prefix)) this.#notifyPath(node, id);
  }

  /** Unmounts (retrying while busy, then detaching lazily) and ends the session. */
  async unmount(policy?: UnmountPolicy): Promise<'clean' | 'lazy' | 'not-mounted'> {
    this.#unmounting = true;
    const how = await unmountPath(this.mountPoint, this.#logger, policy);
    await this.stop();
    return how;
  }

  /** Ends the session after the mount is gone (or detached): threads stop, the fd closes. */
  async stop(): Promise<void> {
    if (this.#sweep) clearInterval(this.#sweep);
    this.#ended = true;
    liveSessions.delete(this);
    await this.#abortConnection();
    if (!this.#binding.stop(this.#session)) {
      this.#logger.warn({ mountPoint: this.mountPoint }, 'FUSE connection still open after a lazy detach; it ends when the daemon exits');
    }
  }

  #notifyPath(path: string, node: bigint | undefined): void {
    if (node !== undefined) this.#binding.notify(this.#session, invalInodeNotice(node));
    const split = splitPath(path);
    if (!split) return;
    const parent = this.#inodes.nodeOf(split.parent);
    if (parent === undefined) return;
    this.#binding.notify(this.#session, invalEntryNotice(parent, split.name));
    // The folder's listing changed too (a name came or went).
    this.#binding.notify(this.#session, invalInodeNotice(parent));
  }

  /** Unmounts with umount2 when mounting half-failed (no INIT). */
  async #detach(): Promise<void> {
    await unmountPath(this.mountPoint, this.#logger, { attempts: 1, delayMs: 0 }).catch(() => undefined);
    await this.stop();
  }

  /** The connection's number (`0:N` of /proc/self/mountinfo), for sysfs. */
  async #connectionId(): Promise<string | undefined> {
    if (this.#connection) return this.#connection;
    const table = await readFile('/proc/self/mountinfo', 'utf8');
    for (const line of table.split('\n')) {
      const fields = line.split(' ');
      if (fields[4] === this.mountPoint && fields.slice(6).includes('fuse.strata')) this.#connection = fields[2];
    }
    return this.#connection;
  }

  /**
   * The kernel reads ahead 128 KiB by default, so even with 1 MiB max_read a sequential
   * read arrives in 128 KiB requests; the mount's bdi gets a read-ahead of one request.
   */
  async #tuneReadahead(maxIo: number): Promise<void> {
    const id = await this.#connectionId();
    if (!id) return;
    await writeFile(`/sys/class/bdi/${id}/read_ahead_kb`, String(maxIo / 1024)).catch((err: unknown) => {
      this.#logger.debug({ err: (err as Error).message }, 'cannot raise the mount read-ahead');
    });
  }

  /** Aborts a connection a lazy detach left alive, where fusectl is mounted; else nothing. */
  async #abortConnection(): Promise<void> {
    const id = this.#connection;
    if (!id) return;
    const minor = id.split(':')[1];
    await writeFile(`/sys/fs/fuse/connections/${minor}/abort`, '1').catch(() => undefined);
  }

  #dispatch(request: Buffer): void {
    const header = decodeHeader(request);
    const { opcode, unique, nodeId } = header;
    if (opcode === SESSION_ENDED) {
      if (!this.#ended && !this.#unmounting) this.#logger.warn({ mountPoint: this.mountPoint }, 'FUSE connection ended (unmounted from outside the daemon)');
      this.#ended = true;
      return;
    }
    if (opcode === Opcode.INIT) {
      const minor = request.readUInt32LE(IN_HEADER_BYTES);
      const flags2 = request.readUInt32LE(IN_HEADER_BYTES + 8);
      const maxWrite = request.readUInt32LE(IN_HEADER_BYTES + 12);
      this.#negotiated = { protocolMinor: minor, maxWrite, passthrough: (flags2 & INIT2_PASSTHROUGH) !== 0 };
      this.#onInit?.(this.#negotiated);
      return;
    }
    if (opcode === Opcode.FORGET) {
      this.#forget(nodeId, request.readBigUInt64LE(IN_HEADER_BYTES));
      return;
    }
    if (opcode === Opcode.BATCH_FORGET) {
      const count = request.readUInt32LE(IN_HEADER_BYTES);
      for (let i = 0; i < count; i++) {
        const at = IN_HEADER_BYTES + 8 + i * 16;
        if (at + 16 > request.length) break;
        this.#forget(request.readBigUInt64LE(at), request.readBigUInt64LE(at + 8));
      }
      return;
    }
    const path = this.#inodes.pathOf(nodeId);
    if (path === undefined) {
      this.#fail(unique, -E.ESTALE);
      return;
    }
    const body = IN_HEADER_BYTES;
    const fs = this.#fs;
    switch (opcode) {
      case Opcode.LOOKUP: {
        const target = childPath(path, nameAt(request, body).name);
        this.#serve('lookup', unique, target, async () => {
          try {
            return entryOut(this.#inodes.remember(target), await fs.getattr(target), this.#ttl);
          } catch (err) {
            // A negative entry, cached by the kernel for the TTL like a positive one.
            if (isStrataError(err, 'FS_NOT_FOUND')) return entryOut(0n, undefined, this.#ttl);
            throw err;
          }
        });
        return;
      }
      case Opcode.GETATTR: {
        // fuse_getattr_in: getattr_flags, dummy, fh. fstat of a file unlinked while open names
        // its handle: the path is gone, the handle still answers.
        const flags = request.readUInt32LE(body);
        const fh = Number(request.readBigUInt64LE(body + 8));
        this.#serve('getattr', unique, path, async () => {
          try {
            return attrOut(nodeId, await fs.getattr(path), this.#ttl);
          } catch (err) {
            if (!isStrataError(err, 'FS_NOT_FOUND')) throw err;
            // fstat(2) sends no handle: any handle open on this node answers.
            let handle = flags & GETATTR_FH ? fh : undefined;
            if (handle === undefined) for (const [h, open] of this.#opens) if (open.node === nodeId) handle = h;
            const open = handle === undefined ? undefined : fs.getattrOpen(handle);
            if (!open) throw err;
            return attrOut(nodeId, open, 0);
          }
        });
        return;
      }
      case Opcode.SETATTR: {
        const valid = request.readUInt32LE(body);
        const fh = Number(request.readBigUInt64LE(body + 8));
        const size = Number(request.readBigUInt64LE(body + 16));
        // fuse_setattr_in: ... mtime u64 at 40, mtimensec u32 at 60, mode at 68, uid at 76, gid at 80.
        const mtime = Number(request.readBigUInt64LE(body + 40)) * 1000 + Math.floor(request.readUInt32LE(body + 60) / 1e6);
        const mode = request.readUInt32LE(body + 68);
        const uid = request.readUInt32LE(body + 76);
        const gid = request.readUInt32LE(body + 80);
        this.#serve('setattr', unique, path, async () => {
          // Modes, owners and times are kept with the object (docs/SEMANTICS.md).
          if (valid & SetattrValid.SIZE) await fs.truncate(path, size, valid & SetattrValid.FH ? fh : undefined);
          if (valid & SetattrValid.MODE) await fs.chmod(path, mode);
          if (valid & (SetattrValid.UID | SetattrValid.GID)) await fs.chown(path, valid & SetattrValid.UID ? uid : ID_UNCHANGED, valid & SetattrValid.GID ? gid : ID_UNCHANGED);
          if (valid & SetattrValid.MTIME_NOW) await fs.utimens(path, new Date());
          else if (valid & SetattrValid.MTIME) await fs.utimens(path, new Date(mtime));
          return attrOut(nodeId, await fs.getattr(path), this.#ttl);
        });
        return;
      }
      case Opcode.OPEN: {
        const flags = request.readUInt32LE(body);
        this.#serve('open', unique, path, () => this.#open(nodeId, path, flags));
        return;
      }
      case Opcode.CREATE: {
        const { name } = nameAt(request, body + 16);
        const target = childPath(path, name);
        this.#serve('create', unique, target, async () => {
          // fuse_create_in: flags, mode (the kernel applied the umask), umask, open_flags.
          const handle = await fs.create(target, request.readUInt32LE(body + 4));
          const stat = await fs.getattr(target);
          const node = this.#inodes.remember(target);
          const io = this.#nodeIo(node);
          const direct = io.backing !== undefined;
          if (!direct) io.cachedOpens++;
          this.#opens.set(handle, { node, passthrough: false, cached: !direct, files: undefined });
          return Buffer.concat([entryOut(node, stat, this.#ttl), openOut(handle, direct ? OpenFlag.DIRECT_IO : 0)]);
        });
        return;
      }
      case Opcode.READ: {
        const fh = Number(request.readBigUInt64LE(body));
        const offset = Number(request.readBigUInt64LE(body + 8));
        const size = request.readUInt32LE(body + 16);
        this.#read(unique, path, fh, offset, size);
        return;
      }
      case Opcode.WRITE: {
        const fh = Number(request.readBigUInt64LE(body));
        const offset = Number(request.readBigUInt64LE(body + 8));
        const size = request.readUInt32LE(body + 16);
        const data = request.subarray(body + 40, body + 40 + size);
        this.#serve('write', unique, path, async () => writeOut(await fs.write(fh, offset, data)));
        return;
      }
      case Opcode.FLUSH:
        this.#serve('flush', unique, path, async () => (await fs.flush(Number(request.readBigUInt64LE(body))), undefined));
        return;
      case Opcode.FSYNC:
        this.#serve('fsync', unique, path, async () => (await fs.fsync(Number(request.readBigUInt64LE(body))), undefined));
        return;
      case Opcode.RELEASE: {
        const fh = Number(request.readBigUInt64LE(body));
        this.#serve('release', unique, path, async () => {
          this.#closed(fh);
          await fs.release(fh);
          return undefined;
        });
        return;
      }
      case Opcode.STATFS:
        this.#serve('statfs', unique, path, () => statfsOut(fs.statfs()));
        return;
      case Opcode.UNLINK: {
        const target = childPath(path, nameAt(request, body).name);
        this.#serve('unlink', unique, target, async () => (await fs.unlink(target), undefined));
        return;
      }
      case Opcode.RMDIR: {
        const target = childPath(path, nameAt(request, body).name);
        this.#serve('rmdir', unique, target, async () => (await fs.rmdir(target), undefined));
        return;
      }
      case Opcode.MKDIR: {
        const target = childPath(path, nameAt(request, body + 8).name);
        this.#serve('mkdir', unique, target, async () => {
          await fs.mkdir(target);
          return entryOut(this.#inodes.remember(target), await fs.getattr(target), this.#ttl);
        });
        return;
      }
      case Opcode.RENAME:
      case Opcode.RENAME2: {
        const newDir = request.readBigUInt64LE(body);
        const flags = opcode === Opcode.RENAME2 ? request.readUInt32LE(body + 8) : 0;
        const names = opcode === Opcode.RENAME2 ? body + 16 : body + 8;
        const from = nameAt(request, names);
        const to = nameAt(request, from.next);
        const toDir = this.#inodes.pathOf(newDir);
        if (toDir === undefined) {
          this.#fail(unique, -E.ESTALE);
          return;
        }
        const source = childPath(path, from.name);
        const target = childPath(toDir, to.name);
        this.#serve('rename', unique, source, async () => {
          // RENAME_EXCHANGE and RENAME_WHITEOUT have no meaning for objects.
          if (flags & ~RENAME_NOREPLACE) return -E.EINVAL;
          if (flags & RENAME_NOREPLACE && (await fs.getattr(target).then(() => true, () => false))) return -E.EEXIST;
          await fs.rename(source, target);
          this.#inodes.move(source, target);
          return undefined;
        });
        return;
      }
      case Opcode.OPENDIR: {
        const handle = this.#nextDir++;
        this.#dirs.set(handle, { path });
        this.#respond(unique, 'opendir', performance.now(), openOut(handle, 0));
        return;
      }
      case Opcode.READDIR: {
        const fh = Number(request.readBigUInt64LE(body));
        const offset = Number(request.readBigUInt64LE(body + 8));
        const size = request.readUInt32LE(body + 16);
        this.#serve('readdir', unique, path, async () => {
          const dir = this.#dirs.get(fh);
          if (!dir) return -E.EBADF;
          if (!dir.items || offset === 0) {
            const names = await fs.readdir(dir.path);
            dir.items = [{ name: '.', mode: DIRENT_MODE_DIR }, { name: '..', mode: DIRENT_MODE_DIR }, ...names.map((name) => ({ name, mode: 0 }))];
          }
          return direntsOut(dir.items, offset, size);
        });
        return;
      }
      case Opcode.RELEASEDIR:
        this.#dirs.delete(Number(request.readBigUInt64LE(body)));
        this.#respond(unique, 'releasedir', performance.now(), undefined);
        return;
      case Opcode.FSYNCDIR:
      case Opcode.DESTROY:
        this.#respond(unique, 'fsyncdir', performance.now(), undefined);
        return;
      case Opcode.SYMLINK: {
        // The link's name, then its target, each NUL-terminated.
        const link = nameAt(request, body);
        const linkTarget = nameAt(request, link.next).name;
        const target = childPath(path, link.name);
        this.#serve('symlink', unique, target, async () => {
          await fs.symlink(linkTarget, target);
          return entryOut(this.#inodes.remember(target), await fs.getattr(target), this.#ttl);
        });
        return;
      }
      case Opcode.READLINK:
        this.#serve('readlink', unique, path, async () => Buffer.from(await fs.readlink(path), 'utf8'));
        return;
      case Opcode.LINK: {
        const target = childPath(path, nameAt(request, body + 8).name);
        this.#serve('link', unique, target, () => fs.link(path, target));
        return;
      }
      case Opcode.MKNOD: {
        // fuse_mknod_in: mode, rdev, umask, padding. A regular file is a create; FIFOs,
        // sockets and devices have no object (ENOSYS, as libfuse 2 answers without mknod).
        const mode = request.readUInt32LE(body);
        const target = childPath(path, nameAt(request, body + 16).name);
        this.#serve('mknod', unique, target, async () => {
          if ((mode & S_IFMT_BITS) !== S_IFREG_BITS) return -E.ENOSYS;
          await fs.release(await fs.create(target, mode));
          return entryOut(this.#inodes.remember(target), await fs.getattr(target), this.#ttl);
        });
        return;
      }
      default:
        // ACCESS, xattrs, locks, fallocate, lseek, ioctl, statx, ...: ENOSYS tells the
        // kernel to stop asking (access is then granted, locks stay local, as before).
        this.#fail(unique, -E.ENOSYS);
    }
  }

  /** The kernel forgot lookups of `node`; once it forgot the node, its cache version goes too. */
  #forget(node: bigint, count: bigint): void {
    if (!this.#inodes.forget(node, count)) return;
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
   * OPEN: the Filesystem opens; this decides how the kernel serves the handle. A reader of
   * a file the Filesystem can back with a plain local file goes through passthrough (the
   * kernel reads that file itself). Otherwise the kernel's page cache is kept across opens
   * while size and mtime (which carries the ETag) are unchanged, as libfuse's auto_cache.
   * The kernel refuses to mix passthrough and cached opens of one inode: a cached open
   * while passthrough ones are live is answered DIRECT_IO (through the daemon, uncached),
   * and a passthrough candidate while cached opens are live is served cached.
   */
  async #open(node: bigint, path: string, flags: number): Promise<Buffer> {
    const fs = this.#fs;
    const handle = await fs.open(path, flags);
    try {
      const io = this.#nodeIo(node);
      if (this.#negotiated?.passthrough && io.cachedOpens === 0) {
        const file = await fs.backingFile(handle);
        const backingId = file && (await this.#backing(io, file));
        if (backingId !== undefined) {
          this.#opens.set(handle, { node, passthrough: true, cached: false, files: undefined });
          return openOut(handle, OpenFlag.PASSTHROUGH, backingId);
        }
      }
      const files = this.#serveFromFiles(handle);
      if (io.backing) {
        this.#opens.set(handle, { node, passthrough: false, cached: false, files });
        return openOut(handle, OpenFlag.DIRECT_IO);
      }
      io.cachedOpens++;
      this.#opens.set(handle, { node, passthrough: false, cached: true, files });
      const stat = await fs.getattr(path).catch(() => undefined);
      const version = stat ? versionOf(stat) : undefined;
      const keep = version !== undefined && version === io.version;
      io.version = version;
      return openOut(handle, keep ? OpenFlag.KEEP_CACHE : 0);
    } catch (err) {
      this.#closed(handle);
      await fs.release(handle).catch(() => undefined);
      throw err;
    }
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
   * Hands the reader threads the tier files that hold the handle's blocks now (the NVMe tier's
   * block files), so READs of those blocks are answered with pread on the threads, never
   * waiting for the event loop; the rest (and any block that fails its checksum) still comes
   * here. The files when the handle was registered (RELEASE then unregisters it).
   */
  #serveFromFiles(handle: number): BlockFiles | undefined {
    const files = this.#fs.blockFiles(handle);
    if (!files) return undefined;
    const count = files.blocks.length;
    const paths = new Array<string | null>(count);
    const offsets = new Float64Array(count);
    const checksums = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const block = files.blocks[i];
      paths[i] = block?.path ?? null;
      offsets[i] = block?.offset ?? 0;
      checksums[i] = block?.checksum ?? 0;
    }
    try {
      this.#binding.serveFiles(this.#session, handle, files.size, files.blockSize, paths, offsets, checksums);
      return files;
    } catch (err) {
      this.#logger.warn({ err: (err as Error).message }, 'cannot hand tier files to the FUSE threads; reads go through the daemon');
      return undefined;
    }
  }

  /** A handle is released: its node's passthrough backing or cached-open count goes down. */
  #closed(handle: number): void {
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

  #read(unique: bigint, path: string, fh: number, offset: number, size: number): void {
    const started = performance.now();
    this.#pending.set(unique, { op: 'read', started });
    this.#fs.read(fh, offset, size).then(
      (bytes) => {
        if (!this.#pending.delete(unique)) return;
        opSeconds.observe({ op: 'read' }, (performance.now() - started) / 1000);
        const data = bytes.length > size ? bytes.subarray(0, size) : bytes;
        this.#write(outHeader(unique, 0, data.length), data);
      },
      (err: unknown) => this.#failed(unique, 'read', path, started, err),
    );
  }

  /** Runs `work` and answers its result: a body, nothing, or a negative errno. */
  #serve(op: string, unique: bigint, path: string, work: () => Promise<Buffer | number | undefined> | Buffer | number | undefined): void {
    const started = performance.now();
    this.#pending.set(unique, { op, started });
    promiseOf(work).then(
      (value) => {
        if (!this.#pending.delete(unique)) return;
        if (typeof value === 'number') {
          opSeconds.observe({ op }, (performance.now() - started) / 1000);
          this.#write(outHeader(unique, value, 0));
          return;
        }
        this.#respond(unique, op, started, value);
      },
      (err: unknown) => this.#failed(unique, op, path, started, err),
    );
  }

  #respond(unique: bigint, op: string, started: number, body: Buffer | undefined): void {
    opSeconds.observe({ op }, (performance.now() - started) / 1000);
    this.#write(outHeader(unique, 0, body?.length ?? 0), body);
  }

  #failed(unique: bigint, op: string, path: string, started: number, err: unknown): void {
    if (!this.#pending.delete(unique)) return;
    opSeconds.observe({ op }, (performance.now() - started) / 1000);
    reportFailure(op, path, err, this.#logger);
    this.#write(outHeader(unique, errnoOf(err), 0));
  }

  #fail(unique: bigint, errno: number): void {
    this.#write(outHeader(unique, errno, 0));
  }

  #write(header: Buffer, body?: Buffer): void {
    if (this.#ended) return;
    const err = this.#binding.reply(this.#session, header, body);
    // ENOENT: the caller was interrupted (a signal) and no longer waits. Anything else is a bug.
    if (err !== 0 && err !== E.ENOENT) this.#logger.error({ errno: err }, 'cannot answer a FUSE request');
  }

  /** Answers ETIMEDOUT to requests that waited longer than the operation timeout (a bug's symptom). */
  #expire(): void {
    const now = performance.now();
    for (const [unique, pending] of this.#pending) {
      if (now - pending.started < this.#timeoutMs) continue;
      this.#pending.delete(unique);
      this.#logger.error({ op: pending.op, ms: Math.round(now - pending.started) }, 'FUSE operation timed out; answered ETIMEDOUT');
      this.#write(outHeader(unique, -E.ETIMEDOUT, 0));
    }
  }
}

/** What keeps cached pages valid: the size and the mtime (which carries the ETag). */
function versionOf(stat: FileStat): string {
  return `${stat.size}:${stat.mtime.getTime()}`;
}
