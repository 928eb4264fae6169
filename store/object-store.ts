import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { ObjectMeta } from './object-meta.js';

/** Metadata of one object, as HEAD or LIST reports it. */
export interface ObjectInfo {
  /** Key relative to the store's root (the URL's prefix is stripped). Never starts with `/`. */
  readonly key: string;
  readonly size: number;
  /**
   * The store's entity tag, quotes stripped. Opaque: multipart ETags look like
   * `<md5>-<parts>`, so never treat it as the MD5 of the bytes.
   */
  readonly etag: string;
  readonly lastModified: Date;
  /**
   * POSIX attributes stored with the object (object-meta.ts). Only `head` reports them (an S3
   * listing carries no user metadata); absent when the object has none.
   */
  readonly meta?: ObjectMeta;
}

/** One page of a listing with a delimiter. */
export interface ListPage {
  /** Objects directly under the prefix, in key order (UTF-8 byte order for S3). */
  readonly objects: ObjectInfo[];
  /** Common prefixes ("folders"), each ending with the delimiter, relative to the store root. */
  readonly prefixes: string[];
  /** Pass to the next `list` call to continue; absent on the last page. */
  readonly nextToken?: string;
}

export interface ListOptions {
  /** `'/'` groups keys into `prefixes`; absent lists every key under the prefix recursively. */
  readonly delimiter?: string;
  /** Continuation token from the previous page. */
  readonly token?: string;
  /** Page size hint, at most 1000 (the S3 limit). */
  readonly maxKeys?: number;
}

export interface GetRangeOptions {
  /**
   * The ETag the caller expects. When the object's ETag differs the call throws
   * `StoreError('STORE_PRECONDITION_FAILED')` and returns no bytes. Backends check it on
   * every response themselves as well, because some stores ignore `If-Match`.
   */
  readonly ifMatch?: string;
  readonly signal?: AbortSignal;
  /**
   * The object's size as the caller last saw it (a listing, a HEAD). When the range is the
   * whole object (`start === 0 && length === objectSize`), a backend may fetch it without a
   * range: on Ceph RGW a plain GET of a 100 KiB object costs the gateway about 15% less CPU
   * than the same bytes as `Range: bytes=0-...`. The answer is the same either way; should
   * the object turn out to have another size, the backend falls back to the ranged read.
   */
  readonly objectSize?: number;
}

export interface GetRangeResult {
  /** Exactly the bytes of [start, min(start + length, size)). */
  readonly body: Buffer;
  /** ETag of the object that served these bytes. */
  readonly etag: string;
  /** Total size of the object. */
  readonly size: number;
}

export interface PutOptions {
  readonly signal?: AbortSignal;
  /** Attributes stored with the object. A symbolic link (`S_IFLNK` mode) holds its target as its bytes. */
  readonly meta?: ObjectMeta;
}

export interface CopyOptions {
  /** Replace the object's attributes with these; without it the copy keeps the source's. */
  readonly meta?: ObjectMeta;
}

/** A multipart upload in progress. Parts are numbered from 1 as in S3. */
export interface MultipartUpload {
  readonly key: string;
  readonly uploadId: string;
}

/** A multipart upload the store holds, as `listMultipart` answers it. */
export interface PendingMultipart {
  readonly upload: MultipartUpload;
  /** When the store created it (the store's clock). */
  readonly initiated: Date;
}

export interface UploadedPart {
  readonly partNumber: number;
  readonly etag: string;
  readonly size: number;
}

/**
 * The one boundary to an object store. Keys are relative to the store's root, which
 * is the bucket plus the prefix of the store URL (`s3://bucket/prefix` or `file:///dir`).
 *
 * Missing things: `head` answers `undefined` for a missing object; every other call
 * throws `StoreError` with code `STORE_NOT_FOUND`. Errors are always `StoreError`s with
 * a stable code, never SDK or `fs` errors.
 *
 * All calls are safe to retry: `put`, `delete` and the multipart calls are idempotent
 * for the same arguments (deleting a missing key succeeds).
 */
export interface ObjectStore {
  /** The URL this store was opened with, without credentials, for logs and status. */
  readonly url: string;

  /**
   * Checks that the store can be used: the bucket (or directory) exists and the
   * credentials are accepted. Throws `STORE_BUCKET_NOT_FOUND`, `STORE_ACCESS_DENIED`
   * or `STORE_UNREACHABLE` with one clear message.
   */
  check(): Promise<void>;

  /** Metadata of one object, or `undefined` if there is none at that key. */
  head(key: string): Promise<ObjectInfo | undefined>;

  /** One page of keys under `prefix` (`''` for the root). */
  list(prefix: string, options?: ListOptions): Promise<ListPage>;

  /**
   * Bytes [start, start + length) of an object. A range running past the end is cut
   * at the end; `start === size` gives an empty body; `start > size` throws
   * `STORE_INVALID_RANGE`.
   */
  getRange(key: string, start: number, length: number, options?: GetRangeOptions): Promise<GetRangeResult>;

  /** Writes a whole object, replacing any object at that key. Answers the new ETag. */
  put(key: string, body: Buffer | Readable, options?: PutOptions): Promise<{ etag: string }>;

  /** Deletes one object; succeeds when it is already missing. */
  delete(key: string): Promise<void>;

  /**
   * Copies an object within the store (server side where the backend can), with its attributes
   * unless `options.meta` replaces them. `fromKey === toKey` with `meta` changes attributes only.
   */
  copy(fromKey: string, toKey: string, options?: CopyOptions): Promise<{ etag: string }>;

  /** Starts a multipart upload; the completed object carries `options.meta`. */
  createMultipart(key: string, options?: { readonly meta?: ObjectMeta }): Promise<MultipartUpload>;
  /** Uploads part `partNumber` (1-based). Every part but the last must be at least 5 MiB on S3. */
  uploadPart(upload: MultipartUpload, partNumber: number, body: Buffer): Promise<UploadedPart>;
  /** The parts the store holds for an upload, in part-number order. */
  listParts(upload: MultipartUpload): Promise<UploadedPart[]>;
  completeMultipart(upload: MultipartUpload, parts: readonly UploadedPart[]): Promise<{ etag: string }>;
  /** Drops an upload and its parts; succeeds when it is already gone. */
  abortMultipart(upload: MultipartUpload): Promise<void>;
  /**
   * The multipart uploads of exactly `key` (not of longer keys it prefixes) that are neither
   * completed nor aborted, oldest first. Any writer's are listed: a caller cleaning up after a
   * crash decides which are its own.
   */
  listMultipart(key: string): Promise<PendingMultipart[]>;

  /** Releases sockets and file handles. */
  close(): Promise<void>;

  /**
   * Stores that keep objects as plain local files (the local-directory store): the file
   * of `key`, opened for reading, if it is still the version `etag` names; else undefined.
   * The handle keeps reading that version even if the object is replaced (writes replace
   * files by rename). The caller closes it. Stores without local files lack the method.
   */
  openVersion?(key: string, etag: string): Promise<FileHandle | undefined>;
}
