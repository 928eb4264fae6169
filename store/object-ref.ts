/**
 * Identity of one version of one object: what a block of cached bytes belongs to.
 * Two refs with the same `storeId`, `key` and `etag` name the same bytes.
 */
export interface ObjectRef {
  /** Stable identity of the store (its URL without credentials, e.g. `s3://bucket/prefix`). */
  readonly storeId: string;
  /** Key relative to the store root. */
  readonly key: string;
  readonly etag: string;
  readonly size: number;
}
