import type { ObjectMeta, UploadedPart } from '../store/index.js';

/**
 * - `writing`: a handle is still open; the staged bytes are incomplete and not durable.
 *   At start such a record only says which multipart upload to abort.
 * - `closed`: released; the staged file is fsync'd and complete. Recovery uploads it.
 * - `committing`: CompleteMultipartUpload was sent. If the store no longer knows the upload
 *   at start, it was completed (nobody else aborts our uploads), so it is checked with HEAD.
 */
export type RecordState = 'writing' | 'closed' | 'committing';

/**
 * One upload as the journal keeps it: enough to finish it after a crash. `parts` are the
 * parts known to be in the store for `uploadId` when the record was last written (at
 * release and before completion, not after every part): the store's ListParts is the final word.
 */
export interface UploadRecord {
  readonly version: 1;
  readonly id: string;
  readonly storeId: string;
  readonly key: string;
  /** Absolute path of the staged bytes. */
  readonly stagedFile: string;
  readonly size: number;
  /** Part size the parts of `uploadId` were cut with (part-layout.ts). */
  readonly partSizeBytes: number;
  readonly uploadId?: string | undefined;
  readonly parts: readonly UploadedPart[];
  readonly state: RecordState;
  /** Release order (milliseconds since the epoch at release, then a counter) to commit versions of one key in order. */
  readonly order: readonly [number, number];
  /** Modification time shown for the pending file (ms since the epoch). */
  readonly mtimeMs: number;
  /** Attributes the object is committed with. */
  readonly meta?: ObjectMeta | undefined;
  /**
   * The file was written through FUSE passthrough while its parts streamed: a part the store
   * holds is reused only when its ETag is the MD5 of the file's bytes in its range.
   */
  readonly partsUnverified?: boolean | undefined;
  /**
   * Set (ms since the epoch) just before a CreateMultipartUpload whose answer is not journaled
   * yet. Found at start without `uploadId`, it sends recovery looking for that upload in the store.
   */
  readonly creatingSinceMs?: number | undefined;
}

/** Validates a record read from disk; `undefined` for anything malformed. */
export function parseRecord(text: string): UploadRecord | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = doc as Partial<UploadRecord>;
  const ok =
    r.version === 1 &&
    typeof r.id === 'string' &&
    typeof r.storeId === 'string' &&
    typeof r.key === 'string' &&
    typeof r.stagedFile === 'string' &&
    typeof r.size === 'number' &&
    typeof r.partSizeBytes === 'number' &&
    (r.uploadId === undefined || typeof r.uploadId === 'string') &&
    Array.isArray(r.parts) &&
    (r.state === 'writing' || r.state === 'closed' || r.state === 'committing') &&
    Array.isArray(r.order) &&
    typeof r.mtimeMs === 'number' &&
    (r.creatingSinceMs === undefined || typeof r.creatingSinceMs === 'number') &&
    (r.partsUnverified === undefined || typeof r.partsUnverified === 'boolean') &&
    (r.meta === undefined || (typeof r.meta === 'object' && r.meta !== null));
  return ok ? (r as UploadRecord) : undefined;
}
