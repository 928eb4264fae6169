import type { Readable } from 'node:stream';
import type { CopyOptions, GetRangeOptions, GetRangeResult, ListOptions, ListPage, MultipartUpload, ObjectInfo, ObjectStore, PendingMultipart, PutOptions, UploadedPart } from './object-store.js';
import type { ObjectMeta } from './object-meta.js';
import type { S3Store, S3StoreConfig } from './s3-store.js';
import { s3StoreUrl } from './url.js';

/**
 * An S3Store whose module (and with it the AWS SDK, about 0.25 s of imports: bench/startup)
 * is loaded by its first call, so a daemon or command that only uses `file://` stores, or
 * answers parameter lookups before its links are checked, never waits for it. Behaves as the
 * S3Store it opens; `close()` before any call has nothing to release.
 */
export class LazyS3Store implements ObjectStore {
  readonly url: string;
  readonly #config: S3StoreConfig;
  #store: Promise<S3Store> | undefined;

  constructor(config: S3StoreConfig) {
    this.#config = config;
    this.url = s3StoreUrl(config.bucket, config.prefix);
  }

  #open(): Promise<S3Store> {
    this.#store ??= import('./s3-store.js').then(({ S3Store }) => new S3Store(this.#config));
    return this.#store;
  }

  async check(): Promise<void> {
    return (await this.#open()).check();
  }
  async head(key: string): Promise<ObjectInfo | undefined> {
    return (await this.#open()).head(key);
  }
  async list(prefix: string, options?: ListOptions): Promise<ListPage> {
    return (await this.#open()).list(prefix, options);
  }
  async getRange(key: string, start: number, length: number, options?: GetRangeOptions): Promise<GetRangeResult> {
    return (await this.#open()).getRange(key, start, length, options);
  }
  async put(key: string, body: Buffer | Readable, options?: PutOptions): Promise<{ etag: string }> {
    return (await this.#open()).put(key, body, options);
  }
  async delete(key: string): Promise<void> {
    return (await this.#open()).delete(key);
  }
  async copy(fromKey: string, toKey: string, options?: CopyOptions): Promise<{ etag: string }> {
    return (await this.#open()).copy(fromKey, toKey, options);
  }
  async createMultipart(key: string, options?: { readonly meta?: ObjectMeta }): Promise<MultipartUpload> {
    return (await this.#open()).createMultipart(key, options);
  }
  async uploadPart(upload: MultipartUpload, partNumber: number, body: Buffer): Promise<UploadedPart> {
    return (await this.#open()).uploadPart(upload, partNumber, body);
  }
  async listParts(upload: MultipartUpload): Promise<UploadedPart[]> {
    return (await this.#open()).listParts(upload);
  }
  async completeMultipart(upload: MultipartUpload, parts: readonly UploadedPart[]): Promise<{ etag: string }> {
    return (await this.#open()).completeMultipart(upload, parts);
  }
  async abortMultipart(upload: MultipartUpload): Promise<void> {
    return (await this.#open()).abortMultipart(upload);
  }
  async listMultipart(key: string): Promise<PendingMultipart[]> {
    return (await this.#open()).listMultipart(key);
  }
  async close(): Promise<void> {
    if (this.#store) await (await this.#store).close();
  }
}
