import type { ObjectRef } from '../store/index.js';

/**
 * Whether a user is waiting for the bytes (`foreground`) or background work wants them (a
 * prefetch, eager import or distribute job, and the readahead of its sessions): a scheduler
 * may let foreground fetches go first.
 */
export type FetchPriority = 'foreground' | 'background';

/**
 * Who wants the bytes: a `read` of a session, the `readahead` of a sequential session, a
 * job's `warm` of one block, or a `peer` that asked this daemon for a block it owns (a
 * peer's request is never forwarded to another peer).
 */
export type FetchOrigin = 'read' | 'readahead' | 'warm' | 'peer';

/** What the block cache wants of a fetch, apart from the bytes: travels from a session to the store. */
export interface FetchIntent {
  readonly priority: FetchPriority;
  readonly origin: FetchOrigin;
}

/**
 * One store fetch of `range` of the object version `ref`. Every concern a layer between
 * the cache and the store looks at (a scheduler, the peer layer) is a field here: a new
 * concern adds a field, never an argument that some wrapper forgets to pass on.
 */
export interface FetchRequest extends FetchIntent {
  readonly ref: ObjectRef;
  readonly range: { readonly start: number; readonly length: number };
  /** Aborted when the cache closes. */
  readonly signal?: AbortSignal;
}

/**
 * Reads `request.range` of the object version `request.ref` from the store. Must answer
 * exactly `range.length` bytes, or throw; a changed object is a StoreError
 * STORE_PRECONDITION_FAILED (the daemon passes `ifMatch: ref.etag`).
 */
export type FetchRange = (request: FetchRequest) => Promise<Buffer>;

/** The intent of a session opened without options: a user's read. */
export const FOREGROUND_READ: FetchIntent = Object.freeze({ priority: 'foreground', origin: 'read' });
