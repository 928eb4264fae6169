/** Messages between the LookupPool and its worker threads. */
export type ToWorker =
  /** Map the table file at `path` (already validated by the main thread), with its overlay if it has one; again when it gained one. */
  | { readonly type: 'open'; readonly path: string }
  /** Forget the table file (in-flight lookups queued before this message still run). */
  | { readonly type: 'close'; readonly path: string }
  /**
   * Look up keys [from, to) of an n-key batch. `shared` holds the keys (n x 8 bytes from
   * byte 0) then the answer (from byte n x 8); the worker writes its part of the answer.
   */
  | { readonly type: 'mget'; readonly id: number; readonly path: string; readonly shared: SharedArrayBuffer; readonly n: number; readonly from: number; readonly to: number };

export type FromWorker =
  | { readonly type: 'opened'; readonly path: string; readonly error?: string }
  | { readonly type: 'done'; readonly id: number; readonly error?: string };
