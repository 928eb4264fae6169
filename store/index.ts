import type { Logger } from '../telemetry/index.js';
import { LocalStore } from './local-store.js';
import type { ObjectStore } from './object-store.js';
import { LazyS3Store } from './lazy-s3-store.js';
import { parseStoreUrl } from './url.js';

export type { CopyOptions, GetRangeOptions, GetRangeResult, ListOptions, ListPage, MultipartUpload, ObjectInfo, ObjectStore, PendingMultipart, PutOptions, UploadedPart } from './object-store.js';
export { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, isSymlinkMeta, metaFromHeaders, metaToHeaders, type ObjectMeta } from './object-meta.js';
export type { ObjectRef } from './object-ref.js';
export { StoreError, type StoreErrorCode } from './errors.js';
export { blockMemory, releaseFreedBlockMemory, reserveBlockMemory, trimBlockMemory } from './block-memory.js';
export { parseStoreUrl, type StoreLocation } from './url.js';
export { endpointSchema, httpUrlSchema, storeUrlSchema } from './url-schema.js';

export interface OpenStoreOptions {
  /** S3-compatible endpoint (else AWS_ENDPOINT_URL, else AWS's own); path-style addressing then. Ignored for file://. */
  readonly endpoint?: string | undefined;
  readonly region?: string | undefined;
  readonly logger?: Logger | undefined;
}

/** Opens the store a URL names. Nothing is contacted until the first call (`check()` first, usually). */
export function openStore(url: string, options: OpenStoreOptions = {}): ObjectStore {
  const location = parseStoreUrl(url);
  if (location.scheme === 'file') return new LocalStore(location.dir);
  return new LazyS3Store({ bucket: location.bucket, prefix: location.prefix, endpoint: options.endpoint, region: options.region, logger: options.logger });
}
