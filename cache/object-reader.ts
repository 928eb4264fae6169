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
}
