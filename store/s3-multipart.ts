import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { StoreError } from './errors.js';
import type { MultipartUpload, PendingMultipart, UploadedPart } from './object-store.js';
import { metaToHeaders, type ObjectMeta } from './object-meta.js';
import type { PayloadHasher } from './payload-hasher.js';
import { stripQuotes } from './s3-errors.js';
import { signWithPayloadHash } from './s3-payload-hash.js';

/** What the multipart calls need of their store. */
export interface S3MultipartScope {
  readonly client: S3Client;
  readonly bucket: string;
  /** Key prefix of the store root: empty or ending in `/`. */
  readonly prefix: string;
  readonly hasher: PayloadHasher;
  error(err: unknown, key: string): StoreError;
  /** The ETag of `key` by HEAD, for stores that answer a write without one. */
  etagAfterWrite(key: string): Promise<string>;
}

/** The multipart upload calls of the S3 store (ObjectStore's contract, object-store.ts). */
export class S3Multipart {
  readonly #s: S3MultipartScope;

  constructor(scope: S3MultipartScope) {
    this.#s = scope;
  }

  async create(key: string, options: { readonly meta?: ObjectMeta } = {}): Promise<MultipartUpload> {
    const s = this.#s;
    try {
      const out = await s.client.send(new CreateMultipartUploadCommand({ Bucket: s.bucket, Key: s.prefix + key, Metadata: metaToHeaders(options.meta) }));
      return { key, uploadId: out.UploadId! };
    } catch (err) {
      throw s.error(err, key);
    }
  }

  async uploadPart(upload: MultipartUpload, partNumber: number, body: Buffer): Promise<UploadedPart> {
    const s = this.#s;
    try {
      const command = new UploadPartCommand({ Bucket: s.bucket, Key: s.prefix + upload.key, UploadId: upload.uploadId, PartNumber: partNumber, Body: body });
      await signWithPayloadHash(command, body, s.hasher);
      const out = await s.client.send(command);
      return { partNumber, etag: stripQuotes(out.ETag), size: body.length };
    } catch (err) {
      throw s.error(err, upload.key);
    }
  }

  async listParts(upload: MultipartUpload): Promise<UploadedPart[]> {
    const s = this.#s;
    const parts: UploadedPart[] = [];
    let marker: string | undefined;
    try {
      do {
        const out = await s.client.send(
          new ListPartsCommand({ Bucket: s.bucket, Key: s.prefix + upload.key, UploadId: upload.uploadId, ...(marker ? { PartNumberMarker: marker } : {}) }),
        );
        for (const p of out.Parts ?? []) parts.push({ partNumber: p.PartNumber!, etag: stripQuotes(p.ETag), size: p.Size ?? 0 });
        marker = out.IsTruncated ? out.NextPartNumberMarker : undefined;
      } while (marker);
    } catch (err) {
      throw s.error(err, upload.key);
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  async complete(upload: MultipartUpload, parts: readonly UploadedPart[]): Promise<{ etag: string }> {
    const s = this.#s;
    try {
      const out = await s.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: s.bucket,
          Key: s.prefix + upload.key,
          UploadId: upload.uploadId,
          MultipartUpload: { Parts: [...parts].sort((a, b) => a.partNumber - b.partNumber).map((p) => ({ PartNumber: p.partNumber, ETag: `"${p.etag}"` })) },
        }),
      );
      // Ceph RGW 16 answers CompleteMultipartUpload with an empty ETag; HEAD has the real one.
      return { etag: stripQuotes(out.ETag) || (await s.etagAfterWrite(upload.key)) };
    } catch (err) {
      throw s.error(err, upload.key);
    }
  }

  async abort(upload: MultipartUpload): Promise<void> {
    const s = this.#s;
    try {
      await s.client.send(new AbortMultipartUploadCommand({ Bucket: s.bucket, Key: s.prefix + upload.key, UploadId: upload.uploadId }));
    } catch (err) {
      const mapped = s.error(err, upload.key);
      if (mapped.code !== 'STORE_NOT_FOUND') throw mapped;
    }
  }

  async list(key: string): Promise<PendingMultipart[]> {
    const s = this.#s;
    const found: PendingMultipart[] = [];
    const full = s.prefix + key;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    try {
      do {
        const out = await s.client.send(
          new ListMultipartUploadsCommand({ Bucket: s.bucket, Prefix: full, ...(keyMarker ? { KeyMarker: keyMarker } : {}), ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}) }),
        );
        for (const u of out.Uploads ?? []) {
          if (u.Key === full && u.UploadId) found.push({ upload: { key, uploadId: u.UploadId }, initiated: u.Initiated ?? new Date(0) });
        }
        const more = out.IsTruncated === true;
        keyMarker = more ? out.NextKeyMarker : undefined;
        uploadIdMarker = more ? out.NextUploadIdMarker : undefined;
      } while (keyMarker);
    } catch (err) {
      throw s.error(err, key);
    }
    return found.sort((a, b) => a.initiated.getTime() - b.initiated.getTime());
  }
}
