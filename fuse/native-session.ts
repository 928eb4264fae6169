import { readFile, writeFile } from 'node:fs/promises';
import { gauge, type Logger } from '../telemetry/index.js';
import type { Filesystem } from './filesystem.js';
import { FuseReplies } from './fuse-replies.js';
import { InodeTable, splitPath } from './inode-table.js';
import { INIT2_PASSTHROUGH, IN_HEADER_BYTES, Opcode, SESSION_ENDED, decodeHeader, invalEntryNotice, invalInodeNotice } from './kernel-protocol.js';
import { unmountPath, type UnmountPolicy } from './mount-point.js';
import { loadFuseBinding, type FuseBinding, type FuseSessionHandle } from './native-binding.js';
import { OpenPolicy } from './open-policy.js';
import { RequestDispatch } from './request-dispatch.js';

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

gauge(
  'strata_fuse_request_buffers',
  'Large FUSE requests (WRITEs) the threads handed to the daemon in the buffer they read them into: kind="handoffs" requests and "allocations" buffers allocated because none was free to reuse, since start; "pooled" free buffers kept for reuse now',
  ['kind'],
  (g) => {
    if (liveSessions.size === 0) return;
    for (const [kind, value] of Object.entries(loadFuseBinding().requestBufferStats())) g.set({ kind }, value);
  },
);

/**
 * Frees the 1 MiB request buffers the FUSE threads keep for reuse (up to 32 MiB after writes
 * through the daemon): the memory watchdog's reclaim, when the process is over its bound.
 */
export function trimFuseRequestBuffers(): void {
  if (liveSessions.size > 0) loadFuseBinding().trimRequestBuffers();
}

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
 * Four readers. Requests for JavaScript need two (one waits in the kernel for the next
 * request while the other hands one over), but a READ served from a tier file blocks its
 * thread in pread until the disk answers, so the threads are the disk's queue depth for
 * native reads. `fio --rw=randread --bs=128k --numjobs=4` on a file in the NVMe tier, page
 * cache dropped, four interleaved rounds at load 12 (the fio case of bench/native-fuse.ts):
 * 0.46-0.58x the local copy with 2 threads, 0.63-0.75x with 4, 0.61-0.85x with 8.
 */
const DEFAULT_THREADS = 4;
/** The kernel sends INIT as soon as mount(2) returns; no answer in this time means it refused. */
const INIT_WAIT_MS = 5_000;
/** How often requests are checked against the operation timeout. */
const TIMEOUT_SWEEP_MS = 5_000;

/**
 * A FUSE mount served by the project's addon (native/src/strata_fuse.c): reader threads
 * take requests from /dev/fuse and hand them to this adapter on the event loop, which
 * translates them to `Filesystem` calls and answers. Like the fuse-native adapter it holds
 * no file system logic; unlike it, it speaks node ids (an `InodeTable` maps them to
 * paths), caches names and attributes in the kernel for the metadata TTL (`invalidate`
 * ends them early), and ties opens of plain local files to the kernel with passthrough.
 *
 * This class is the facade: the session's life (mount, INIT, invalidations, unmount) and
 * FORGET are here; request-dispatch.ts translates the other requests, open-policy.ts
 * decides how the kernel serves each open (passthrough, page cache, tier files), and
 * fuse-replies.ts answers, with the pending requests and their timeout.
 */
export class NativeFuseSession {
  readonly mountPoint: string;
  readonly #binding: FuseBinding;
  readonly #session: FuseSessionHandle;
  readonly #logger: Logger;
  readonly #inodes = new InodeTable();
  readonly #replies: FuseReplies;
  readonly #policy: OpenPolicy;
  readonly #requests: RequestDispatch;
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
    this.#logger = logger;
    this.#replies = new FuseReplies(binding, session, logger, options.operationTimeoutMs, () => this.#ended);
    this.#policy = new OpenPolicy(binding, session, fs, logger, this.#inodes, () => this.#negotiated?.passthrough === true);
    this.#requests = new RequestDispatch(fs, this.#inodes, this.#replies, this.#policy, options.metadataTtlSeconds);
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
    self.#sweep = setInterval(() => self.#replies.expire(), TIMEOUT_SWEEP_MS).unref();
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
    const { opcode, nodeId } = header;
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
    this.#requests.dispatch(request, header);
  }

  /** The kernel forgot lookups of `node`; once it forgot the node, its cache version goes too. */
  #forget(node: bigint, count: bigint): void {
    if (!this.#inodes.forget(node, count)) return;
    this.#policy.forgotten(node);
  }
}
