import { createRequire } from 'node:module';
import { basename, dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { StrataError } from '../errors/index.js';
import type { Logger } from '../telemetry/index.js';
import { errnoOf } from './errno.js';
import { opSeconds, promiseOf, reportFailure } from './fuse-metrics.js';
import type { Filesystem } from './filesystem.js';
import { MountPointError, prepareMountPoint, unmountPath, type UnmountPolicy } from './mount-point.js';
import { NativeFuseSession } from './native-session.js';

export class FuseUnavailableError extends StrataError<'FUSE_UNAVAILABLE'> {}

export interface FuseMountOptions {
  /** Seconds the kernel may trust attributes and names (and negative lookups): the metadata TTL. */
  readonly metadataTtlSeconds: number;
  /**
   * Let users other than the daemon's use the mount (needs `user_allow_other` for non-root
   * daemons); the kernel then checks their access against each file's mode and owner.
   */
  readonly allowOther?: boolean;
  /** Let root use the mount besides the daemon's user. */
  readonly allowRoot?: boolean;
  /** Largest read request; 128 KiB is what the kernel sends a libfuse 2 mount anyway (32 pages; bench/read-path). */
  readonly maxReadBytes?: number;
  readonly fsName?: string;
  readonly unmountPolicy?: UnmountPolicy;
  /**
   * Which FUSE path serves the mount: `native` (the project's addon on /dev/fuse: 1 MiB
   * requests, kernel caching with invalidations, passthrough), `fuse-native` (libfuse 2),
   * or `auto` (native, else fuse-native when the addon cannot load or the kernel refuses).
   */
  readonly fusePath?: FusePathChoice;
}

export type FusePathChoice = 'auto' | 'native' | 'fuse-native';
export type FusePath = 'native' | 'fuse-native';

/** How a mount is served, for `strata status` and the log. */
export interface FuseMountInfo {
  readonly path: FusePath;
  /** Opens of plain local files are served by the kernel (native path, kernel 6.9+, root). */
  readonly passthrough: boolean;
  /** Seconds the kernel keeps names and attributes. */
  readonly kernelMetadataSeconds: number;
  readonly maxRequestBytes: number;
}

/**
 * Longest a FUSE call may run before it is answered ETIMEDOUT. A cold read waits for
 * a store round trip of up to a block, and the SDK's own timeouts and retries end
 * before this; the limit only catches a bug that would otherwise hang the caller.
 */
const OPERATION_TIMEOUT_MS = 120_000;
const DEFAULT_MAX_READ = 128 * 1024;
const KERNEL_METADATA_SECONDS = 1;
const MAX_WRITE_BYTES = 1024 * 1024;
/** libfuse 2's name for a file unlinked while open (its `hide_file`), unless `hard_remove` is set. */
const LIBFUSE_HIDDEN_PREFIX = '.fuse_hidden';
/** UTIME_NOW and UTIME_OMIT (2^30 - 1 and - 2 ns, seconds 0) as fuse-native's milliseconds. */
const UTIME_SPECIAL_MS = 1073;

type FuseCallback = (errno: number, ...results: unknown[]) => void;
type FuseClass = typeof import('fuse-native');

/**
 * A live FUSE mount of a `Filesystem`. The only importer of fuse-native: it translates
 * arguments, answers errno values from `errno.ts`, times each call and logs failures
 * once at the level they deserve. No file system logic lives here.
 */
export class FuseMount {
  readonly mountPoint: string;
  readonly info: FuseMountInfo;
  readonly #fuse: InstanceType<FuseClass> | undefined;
  readonly #native: NativeFuseSession | undefined;
  readonly #logger: Logger;
  readonly #policy: UnmountPolicy | undefined;
  #mounted = true;

  private constructor(
    mountPoint: string,
    served: { fuse: InstanceType<FuseClass> } | { native: NativeFuseSession },
    info: FuseMountInfo,
    logger: Logger,
    policy?: UnmountPolicy,
  ) {
    this.mountPoint = mountPoint;
    this.#fuse = 'fuse' in served ? served.fuse : undefined;
    this.#native = 'native' in served ? served.native : undefined;
    this.info = info;
    this.#logger = logger;
    this.#policy = policy;
  }

  /**
   * Mounts `fs` at `mountPoint` (absolute), after cleaning up a stale mount there, on the
   * native FUSE path when it can (see `FuseMountOptions.fusePath`), else with fuse-native.
   */
  static async mount(fs: Filesystem, mountPoint: string, options: FuseMountOptions, logger: Logger): Promise<FuseMount> {
    await prepareMountPoint(mountPoint, logger);
    const choice = options.fusePath ?? 'auto';
    if (choice !== 'fuse-native') {
      try {
        const native = await NativeFuseSession.mount(
          fs,
          mountPoint,
          { metadataTtlSeconds: options.metadataTtlSeconds, allowOther: options.allowOther ?? false, fsName: options.fsName ?? 'strata', operationTimeoutMs: OPERATION_TIMEOUT_MS },
          logger,
        );
        const { maxWrite, passthrough, protocolMinor } = native.negotiated;
        const info: FuseMountInfo = { path: 'native', passthrough, kernelMetadataSeconds: options.metadataTtlSeconds, maxRequestBytes: maxWrite };
        logger.info({ mountPoint, fuse: 'native', protocol: `7.${protocolMinor}`, passthrough, maxRequestBytes: maxWrite }, 'FUSE served by native threads');
        return new FuseMount(mountPoint, { native }, info, logger, options.unmountPolicy);
      } catch (err) {
        const reason = (err as Error).message.split('\n')[0];
        if (choice === 'native') {
          throw new MountPointError('MOUNT_FAILED', `cannot mount ${mountPoint} on the native FUSE path: ${reason}`, { cause: err });
        }
        logger.warn({ mountPoint, reason }, 'native FUSE path unavailable; serving the mount with fuse-native');
      }
    }
    return FuseMount.#mountFuseNative(fs, mountPoint, options, logger);
  }

  static async #mountFuseNative(fs: Filesystem, mountPoint: string, options: FuseMountOptions, logger: Logger): Promise<FuseMount> {
    const Fuse = loadFuse();
    // The kernel keeps names and attributes at most a second, however long the daemon's own
    // metadata TTL: the daemon answers from its cache in microseconds, and a link removed
    // or an object invalidated by an event then disappears within a second (fuse-native
    // cannot push invalidations to the kernel).
    const ttl = Math.min(options.metadataTtlSeconds, KERNEL_METADATA_SECONDS);
    // libfuse 2 delivers writes in 4 KiB pieces unless big_writes is set (fuse-native's own default). The
    // kernel still caps them at 128 KiB (32 pages: libfuse 2 cannot negotiate more), so a
    // 2 GiB `dd bs=4M` arrives as 16,384 writes, answered one after the other.
    // atomic_o_trunc: open(O_TRUNC) of an existing file arrives as one OPEN with O_TRUNC,
    // instead of an OPEN without it (which stages a copy of the current object) followed by
    // a truncate to 0 that throws the copy away.
    const extra = [`negative_timeout=${ttl}`, 'big_writes', `max_write=${MAX_WRITE_BYTES}`, 'atomic_o_trunc'];
    const maxRead = options.maxReadBytes ?? DEFAULT_MAX_READ;
    const fuse = new (strataFuseClass(Fuse, extra))(mountPoint, operations(fs, logger), {
      timeout: OPERATION_TIMEOUT_MS,
      // auto_cache keeps the kernel's page cache across opens only while mtime and size
      // are unchanged; Filesystem folds the ETag into mtime, so a changed object drops it.
      autoCache: true,
      attrTimeout: ttl,
      entryTimeout: ttl,
      maxRead,
      fsname: options.fsName ?? 'strata',
      subtype: 'strata',
      // default_permissions: the kernel checks access against the modes and owners shown, as
      // users of a shared mount expect once chmod and chown are kept.
      ...(options.allowOther || options.allowRoot ? { defaultPermissions: true } : {}),
      ...(options.allowOther ? { allowOther: true } : {}),
      ...(options.allowRoot ? { allowRoot: true } : {}),
    });
    await new Promise<void>((resolve, reject) => {
      fuse.mount((err) => {
        if (!err) return resolve();
        reject(new MountPointError('MOUNT_FAILED', `cannot mount at ${mountPoint}: ${err.message}`, { cause: err }));
      });
    });
    logger.info({ mountPoint, fuse: 'fuse-native' }, 'FUSE served by fuse-native (libfuse 2)');
    const info: FuseMountInfo = { path: 'fuse-native', passthrough: false, kernelMetadataSeconds: ttl, maxRequestBytes: maxRead };
    return new FuseMount(mountPoint, { fuse }, info, logger, options.unmountPolicy);
  }

  /**
   * Drops what the kernel caches of `path` (a path in the mount; all paths without it):
   * attributes, pages and names, negative ones included. Called when a link changes, an S3
   * event arrives, a sync runs or an ETag changed. On fuse-native there is nothing to drop:
   * the kernel keeps metadata at most a second there.
   */
  invalidate(path?: string, options: { subtree?: boolean } = {}): void {
    this.#native?.invalidate(path, options.subtree ?? false);
  }

  /** Unmounts (retrying while busy, then detaching lazily) and stops serving requests. */
  async unmount(): Promise<'clean' | 'lazy' | 'not-mounted'> {
    if (!this.#mounted) return 'not-mounted';
    this.#mounted = false;
    if (this.#native) return this.#native.unmount(this.#policy);
    const how = await unmountPath(this.mountPoint, this.#logger, this.#policy);
    const fuse = this.#fuse;
    if (fuse) await new Promise<void>((resolve) => fuse.unmount(() => resolve()));
    return how;
  }
}

/** Loads fuse-native, which links Debian's libfuse2; a missing library becomes one clear error. */
function loadFuse(): FuseClass {
  const require = createRequire(import.meta.url);
  try {
    return require('fuse-native') as FuseClass;
  } catch (err) {
    throw new FuseUnavailableError(
      'FUSE_UNAVAILABLE',
      `cannot load FUSE (${(err as Error).message.split('\n')[0]}); install Debian's libfuse2 and fuse3: bash scripts/install-deps.sh`,
      { cause: err },
    );
  }
}

/**
 * fuse-native assembles its mount options in one method and knows no `negative_timeout`
 * (nor `big_writes`); the subclass appends options it lacks, and replaces its unmount
 * (an immediate lazy `fusermount -uz`) with ours, which has already run when `_close` is
 * called, so only the native side is released here.
 */
function strataFuseClass(Fuse: FuseClass, extraOptions: readonly string[]): FuseClass {
  const require = createRequire(import.meta.url);
  const binding = require('node-gyp-build')(dirname(require.resolve('fuse-native/package.json'))) as {
    fuse_native_unmount(mnt: string, thread: Buffer | null): void;
  };
  class StrataFuse extends Fuse {
    protected override _fuseOptions(): string {
      const base = super._fuseOptions();
      return base ? `${base},${extraOptions.join(',')}` : `-o${extraOptions.join(',')}`;
    }

    protected override _close(cb: (err: Error | null) => void): void {
      try {
        binding.fuse_native_unmount(this.mnt, this._thread);
        cb(null);
      } catch (err) {
        cb(err as Error);
      }
    }
  }
  return StrataFuse as unknown as FuseClass;
}

/** Answers a FUSE callback from a promise, with timing, metrics and one log line on failure. */
function serve<T>(op: string, path: string, logger: Logger, cb: FuseCallback, work: () => Promise<T> | T, answer: (value: T) => unknown[]): void {
  const started = performance.now();
  promiseOf(work).then(
    (value) => {
      opSeconds.observe({ op }, (performance.now() - started) / 1000);
      cb(0, ...answer(value));
    },
    (err: unknown) => {
      opSeconds.observe({ op }, (performance.now() - started) / 1000);
      reportFailure(op, path, err, logger);
      cb(errnoOf(err));
    },
  );
}

function operations(fs: Filesystem, logger: Logger): Record<string, (...args: never[]) => void> {
  const ok = () => [];
  return {
    init: (cb: FuseCallback) => cb(0),
    getattr: (path: string, cb: FuseCallback) => serve('getattr', path, logger, cb, () => fs.getattr(path), (s) => [s]),
    fgetattr: (path: string, _fd: number, cb: FuseCallback) => serve('getattr', path, logger, cb, () => fs.getattr(path), (s) => [s]),
    readdir: (path: string, cb: FuseCallback) => serve('readdir', path, logger, cb, () => fs.readdir(path), (names) => [names]),
    open: (path: string, flags: number, cb: FuseCallback) => serve('open', path, logger, cb, () => fs.open(path, flags), (h) => [h]),
    create: (path: string, mode: number, cb: FuseCallback) => serve('create', path, logger, cb, () => fs.create(path, mode), (h) => [h]),
    read: (path: string, handle: number, buffer: Buffer, length: number, position: number, cb: FuseCallback) => {
      const started = performance.now();
      fs.read(handle, position, length).then(
        (bytes) => {
          opSeconds.observe({ op: 'read' }, (performance.now() - started) / 1000);
          bytes.copy(buffer, 0, 0, Math.min(bytes.length, length));
          cb(Math.min(bytes.length, length));
        },
        (err: unknown) => {
          // fuse-native answers a read with its byte count, so an error is a negative count.
          serve('read', path, logger, cb, () => Promise.reject(err), ok);
        },
      );
    },
    write: (path: string, handle: number, buffer: Buffer, length: number, position: number, cb: FuseCallback) => {
      // The buffer belongs to the FUSE thread, which waits for the answer before reusing it,
      // so it is passed on without a copy: Filesystem.write keeps no reference once settled.
      // (fuse-native answers ETIMEDOUT by itself after OPERATION_TIMEOUT_MS; that write has
      // then failed for the caller, and the handle's later writes are applied after it.)
      const started = performance.now();
      fs.write(handle, position, buffer.subarray(0, length)).then(
        (written) => {
          opSeconds.observe({ op: 'write' }, (performance.now() - started) / 1000);
          cb(written);
        },
        (err: unknown) => serve('write', path, logger, cb, () => Promise.reject(err), ok),
      );
    },
    truncate: (path: string, size: number, cb: FuseCallback) => serve('truncate', path, logger, cb, () => fs.truncate(path, size), ok),
    ftruncate: (path: string, handle: number, size: number, cb: FuseCallback) => serve('truncate', path, logger, cb, () => fs.truncate(path, size, handle), ok),
    // fuse-native passes (path, datasync, handle): see its index.js `_op_fsync`. fdatasync
    // arrives here too (datasync = 1) and waits for the store the same way.
    fsync: (path: string, _datasync: number, handle: number, cb: FuseCallback) => serve('fsync', path, logger, cb, () => fs.fsync(handle), ok),
    flush: (path: string, handle: number, cb: FuseCallback) => serve('flush', path, logger, cb, () => fs.flush(handle), ok),
    release: (path: string, handle: number, cb: FuseCallback) => serve('release', path, logger, cb, () => fs.release(handle), ok),
    statfs: (path: string, cb: FuseCallback) => serve('statfs', path, logger, cb, () => fs.statfs(), (s) => [s]),
    unlink: (path: string, cb: FuseCallback) => serve('unlink', path, logger, cb, () => fs.unlink(path), ok),
    // libfuse 2 renames a file unlinked while open to `.fuse_hidden…` (see Filesystem.hide).
    rename: (from: string, to: string, cb: FuseCallback) =>
      serve('rename', from, logger, cb, () => (basename(to).startsWith(LIBFUSE_HIDDEN_PREFIX) ? fs.hide(from, to) : fs.rename(from, to)), ok),
    mkdir: (path: string, _mode: number, cb: FuseCallback) => serve('mkdir', path, logger, cb, () => fs.mkdir(path), ok),
    rmdir: (path: string, cb: FuseCallback) => serve('rmdir', path, logger, cb, () => fs.rmdir(path), ok),
    // Modes, owners and times are kept with the object (docs/SEMANTICS.md). fuse-native hands
    // utimens the access time twice (its C side passes `atime` for both), and libfuse 2 sends
    // "now" as UTIME_NOW/UTIME_OMIT in the nanoseconds, which arrive as 1,073 ms: "now" then.
    chmod: (path: string, mode: number, cb: FuseCallback) => serve('chmod', path, logger, cb, () => fs.chmod(path, mode), ok),
    chown: (path: string, uid: number, gid: number, cb: FuseCallback) => serve('chown', path, logger, cb, () => fs.chown(path, uid, gid), ok),
    utimens: (path: string, _atime: number, mtime: number, cb: FuseCallback) =>
      serve('utimens', path, logger, cb, () => fs.utimens(path, mtime === UTIME_SPECIAL_MS ? new Date() : new Date(mtime)), ok),
    symlink: (target: string, path: string, cb: FuseCallback) => serve('symlink', path, logger, cb, () => fs.symlink(target, path), ok),
    readlink: (path: string, cb: FuseCallback) => serve('readlink', path, logger, cb, () => fs.readlink(path), (target) => [target]),
    link: (target: string, path: string, cb: FuseCallback) => serve('link', path, logger, cb, () => fs.link(target, path), ok),
  };
}
