import type { ObjectRef } from '../store/index.js';
import type { FetchOrigin, FetchPriority } from './fetch-request.js';

/**
 * Per-open-handle state a reader may keep (sequential-access detection for readahead).
 * Created by `ObjectReader.openSession`, dropped with `closeSession`.
 */
export interface ReadSession {
  readonly ref: ObjectRef;
}

export interface ReadSessionOptions {
  /**
   * `'background'`: the session reads for background work (a prefetch or distribute job),
   * not for a user waiting on a file: its store fetches may be held back while foreground
   * reads fetch. Default `'foreground'`.
   */
  readonly priority?: FetchPriority;
  /** `'peer'`: the session reads blocks a peer asked for, which are never forwarded. Default `'read'`. */
  readonly origin?: Extract<FetchOrigin, 'read' | 'peer'>;
}

/** Where one cached block's bytes lie in a tier file that never changes while it exists. */
export interface BlockFile {
  readonly path: string;
  /** Offset of the block's first byte in the file. */
  readonly offset: number;
  /** CRC-32C of the block (cache/checksum.ts), for a reader that skips the tier's own check. */
  readonly checksum: number;
}

/**
 * A cached block in process memory (a DRAM tier buffer), which a native reader may copy from
 * directly; never modified. The memory stays alive while this object is referenced.
 */
export interface BlockMemory {
  readonly memory: Buffer;
}

/** Where a native reader finds a cached block: a tier file or process memory. */
export type BlockPlace = BlockFile | BlockMemory;

/** The blocks of an object version that the DRAM tier or a file tier holds now (undefined: not there). */
export interface BlockFiles {
  readonly blockSize: number;
  readonly size: number;
  readonly blocks: ReadonlyArray<BlockPlace | undefined>;
  /**
   * The reader is done with the files and read these blocks from them: they count as hits of
   * the tiers that hold them, and the tiers may reuse the places (pmem slots) from now on.
   * Called once per answer of `locate`, also when nothing was read; later calls do nothing.
   */
  readonly read: (blockIndexes: readonly number[]) => void;
}

/**
 * Reads byte ranges of an object version. The file system calls this for every FUSE
 * read; implementations are the direct store reader and the tiered block cache.
 *
 * `read` answers exactly the bytes [offset, min(offset + length, size)); a read at or
 * past the end answers an empty buffer. If the object no longer has `ref.etag` in the
 * store and the bytes are not cached, it throws a StoreError `STORE_PRECONDITION_FAILED`,
 * never bytes of another version.
 */
export interface ObjectReader {
  openSession(ref: ObjectRef, options?: ReadSessionOptions): ReadSession;
  read(session: ReadSession, offset: number, length: number): Promise<Buffer>;
  closeSession(session: ReadSession): void;
  /**
   * Where the session's blocks lie in the DRAM tier or file tiers now, so a native reader may
   * read them itself (checking each file block's checksum); undefined when none do. Optional:
   * readers without a cache leave it out. A file block evicted later stays readable through a
   * descriptor the reader kept, or fails that native read, which then comes back to `read`.
   */
  locate?(session: ReadSession): BlockFiles | undefined;
  /**
   * The path of one plain local file holding the session's object version whole, at its own
   * offsets (the NVMe tier's whole-object file), for a reader that hands it to the kernel (FUSE
   * passthrough); undefined when there is none. The file never changes while it exists; it may
   * be removed at any time (evicted, or dropped by the scrub), so opening it may fail, and an
   * open descriptor keeps the bytes it had. Optional: readers without such files leave it out.
   */
  wholeFile?(session: ReadSession): string | undefined;
  /**
   * Starts loading the start of `ref` in the background, because a read of it is expected
   * (it was just opened, or is the next file of a folder read in order); never waits and
   * never fails. Answers the load (settled either way), or undefined when nothing started:
   * cached, loading already, or no memory to spare. Optional: readers without a cache leave
   * it out.
   */
  readAhead?(ref: ObjectRef): Promise<unknown> | undefined;
}
