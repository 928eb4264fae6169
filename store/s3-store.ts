import type { Readable } from 'node:stream';
import { CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Logger } from '../telemetry/index.js';
import { StoreError } from './errors.js';
import type { SignedGet } from './s3-get.js';
import { PayloadHasher } from './payload-hasher.js';
import { timedRequest } from './store-metrics.js';
import { s3StoreUrl } from './url.js';
import type { CopyOptions, GetRangeOptions, GetRangeResult, ListOptions, ListPage, MultipartUpload, ObjectInfo, ObjectStore, PendingMultipart, PutOptions, UploadedPart } from './object-store.js';
import { metaFromHeaders, metaToHeaders, type ObjectMeta } from './object-meta.js';
import { connectS3, HEAD_DEADLINE_MS } from './s3-client.js';
import { mapS3Error, stripQuotes } from './s3-errors.js';
import { listS3 } from './s3-listing.js';
import { S3Multipart } from './s3-multipart.js';
import { signWithPayloadHash } from './s3-payload-hash.js';

export interface S3StoreConfig {
  readonly bucket: string;
  /** Key prefix of the store root: empty or ending in `/`. */
  readonly prefix: string;
  /** S3-compatible endpoint (else AWS_ENDPOINT_URL, else AWS's own); path-style addressing when one is given. */
  readonly endpoint?: string | undefined;
  readonly region?: string | undefined;
  readonly logger?: Logger | undefined;
}

/**
 * The S3 backend (AWS S3 or a compatible store such as Ceph RGW or MinIO). Credentials
 * come from the SDK's default provider chain only and are never logged.
 *
 * A facade over its parts: the client and the AWS environment (s3-client.ts), the signed GET
 * of the block-fetch path (s3-get.ts), error mapping (s3-errors.ts), listing (s3-listing.ts)
 * and multipart uploads (s3-multipart.ts). Reads, writes, copies and deletes are here.
 */
export class S3Store implements ObjectStore {
  readonly url: string;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #endpoint: string;
  readonly #signedGet: SignedGet | undefined;
  readonly #hasher = new PayloadHasher();
  readonly #multipart: S3Multipart;

  constructor(config: S3StoreConfig) {
    this.#bucket = config.bucket;
    this.#prefix = config.prefix;
    this.url = s3StoreUrl(config.bucket, config.prefix);
    const connection = connectS3({ bucket: config.bucket, url: this.url, endpoint: config.endpoint, region: config.region, logger: config.logger });
    this.#client = connection.client;
    this.#endpoint = connection.endpointName;
    this.#signedGet = connection.signedGet;
    this.#multipart = new S3Multipart({
      client: this.#client,
      bucket: this.#bucket,
      prefix: this.#prefix,
      hasher: this.#hasher,
      error: (err, key) => this.#error(err, key),
      etagAfterWrite: (key) => this.#etagAfterWrite(key),
    });
  }

  async check(): Promise<void> {
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.#bucket }));
    } catch (err) {
      const mapped = this.#error(err, '');
      if (mapped.code === 'STORE_NOT_FOUND' || mapped.code === 'STORE_BUCKET_NOT_FOUND') {
        throw new StoreError('STORE_BUCKET_NOT_FOUND', `bucket "${this.#bucket}" does not exist at ${this.#endpoint}`, { cause: err });
      }
      if (mapped.code === 'STORE_ACCESS_DENIED' && (err as { name?: string }).name !== 'CredentialsProviderError') {
        const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        throw new StoreError('STORE_ACCESS_DENIED', `access to bucket "${this.#bucket}" at ${this.#endpoint} was denied (HTTP ${status ?? '?'}): check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the bucket policy`, { cause: err });
      }
      if (mapped.code === 'STORE_UNREACHABLE') throw new StoreError('STORE_UNREACHABLE', `${mapped.message} for bucket "${this.#bucket}"`, { cause: err });
      throw mapped;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await timedRequest('head', () =>
        this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key }), { abortSignal: AbortSignal.timeout(HEAD_DEADLINE_MS) }),
      );
      const meta = metaFromHeaders(out.Metadata);
      return { key, size: out.ContentLength ?? 0, etag: stripQuotes(out.ETag), lastModified: out.LastModified ?? new Date(0), ...(meta ? { meta } : {}) };
    } catch (err) {
      const mapped = this.#error(err, key);
      if (mapped.code === 'STORE_NOT_FOUND') return undefined;
      throw mapped;
    }
  }

  list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    return listS3(this.#client, this.#bucket, this.#prefix, prefix, options, (err, key) => this.#error(err, key));
  }

  async getRange(key: string, start: number, length: number, options: GetRangeOptions = {}): Promise<GetRangeResult> {
    if (length <= 0) return this.#emptyRange(key, start, options);
    return timedRequest('get', () => this.#getRange(key, start, length, options));
  }

  async #getRange(key: string, start: number, length: number, options: GetRangeOptions): Promise<GetRangeResult> {
    const whole = start === 0 && length === options.objectSize;
    try {
      const out = await this.#sendGet(this.#prefix + key, whole ? undefined : [start, start + length - 1], options);
      // Some stores ignore If-Match: compare the answer's ETag as well, before reading the body.
      if (options.ifMatch !== undefined && out.etag !== options.ifMatch) {
        out.discard();
        throw new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${this.url} (ETag ${out.etag}, expected ${options.ifMatch})`);
      }
      if (whole && out.contentLength !== length) {
        // Not the size the caller saw (no If-Match to tell): read the range it asked for instead.
        out.discard();
        return await this.#getRange(key, start, length, { ...options, objectSize: undefined });
      }
      const size = totalSize(out.contentRange) ?? out.contentLength;
      const body = await out.read();
      return { body, etag: out.etag, size };
    } catch (err) {
      const mapped = err instanceof StoreError ? err : this.#error(err, key);
      // An empty object has no byte 0: S3 answers 416 where the range starts at its end.
      if (mapped.code === 'STORE_INVALID_RANGE') return this.#emptyRange(key, start, options);
      throw mapped;
    }
  }

  /** One GET, through the signed fast path where there is one, else the SDK; the body is left to read. */
  async #sendGet(fullKey: string, range: readonly [number, number] | undefined, options: GetRangeOptions): Promise<GetAnswer> {
    const request = { key: fullKey, range, ifMatch: options.ifMatch || undefined, signal: options.signal };
    if (this.#signedGet?.readsDirect) {
      const { header, body } = await this.#signedGet.getBody(request);
      return { etag: stripQuotes(header('etag')), contentLength: body.length, contentRange: header('content-range'), read: async () => body, discard: () => undefined };
    }
    if (this.#signedGet) {
      const res = await this.#signedGet.get(request);
      const header = (name: string) => {
        const value = res.headers[name];
        return Array.isArray(value) ? value[0] : value;
      };
      return streamed(stripQuotes(header('etag')), Number(header('content-length') ?? 0), header('content-range'), res);
    }
    const out = await this.#client.send(
      new GetObjectCommand({
        Bucket: this.#bucket,
        Key: fullKey,
        ...(range ? { Range: `bytes=${range[0]}-${range[1]}` } : {}),
        ...(options.ifMatch ? { IfMatch: `"${options.ifMatch}"` } : {}),
      }),
      options.signal ? { abortSignal: options.signal } : {},
    );
    return streamed(stripQuotes(out.ETag), out.ContentLength ?? 0, out.ContentRange, out.Body as Readable);
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<{ etag: string }> {
    try {
      if (Buffer.isBuffer(body)) {
        const command = new PutObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key, Body: body, Metadata: metaToHeaders(options.meta) });
        await signWithPayloadHash(command, body, this.#hasher);
        const out = await this.#client.send(command, options.signal ? { abortSignal: options.signal } : {});
        return { etag: stripQuotes(out.ETag) || (await this.#etagAfterWrite(key)) };
      }
      const upload = new Upload({ client: this.#client, params: { Bucket: this.#bucket, Key: this.#prefix + key, Body: body, Metadata: metaToHeaders(options.meta) } });
      options.signal?.addEventListener('abort', () => void upload.abort(), { once: true });
      const out = await upload.done();
      return { etag: stripQuotes(out.ETag) || (await this.#etagAfterWrite(key)) };
    } catch (err) {
      throw this.#error(err, key);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key }));
    } catch (err) {
      const mapped = this.#error(err, key);
      if (mapped.code !== 'STORE_NOT_FOUND') throw mapped;
    }
  }

  async copy(fromKey: string, toKey: string, options: CopyOptions = {}): Promise<{ etag: string }> {
    try {
      const source = `${this.#bucket}/${(this.#prefix + fromKey).split('/').map(encodeURIComponent).join('/')}`;
      const replace = options.meta ? { MetadataDirective: 'REPLACE' as const, Metadata: metaToHeaders(options.meta) ?? {} } : {};
      const out = await this.#client.send(new CopyObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + toKey, CopySource: source, ...replace }));
      return { etag: stripQuotes(out.CopyObjectResult?.ETag) || (await this.#etagAfterWrite(toKey)) };
    } catch (err) {
      throw this.#error(err, fromKey);
    }
  }

  createMultipart(key: string, options: { readonly meta?: ObjectMeta } = {}): Promise<MultipartUpload> {
    return this.#multipart.create(key, options);
  }

  uploadPart(upload: MultipartUpload, partNumber: number, body: Buffer): Promise<UploadedPart> {
    return this.#multipart.uploadPart(upload, partNumber, body);
  }

  listParts(upload: MultipartUpload): Promise<UploadedPart[]> {
    return this.#multipart.listParts(upload);
  }

  completeMultipart(upload: MultipartUpload, parts: readonly UploadedPart[]): Promise<{ etag: string }> {
    return this.#multipart.complete(upload, parts);
  }

  abortMultipart(upload: MultipartUpload): Promise<void> {
    return this.#multipart.abort(upload);
  }

  listMultipart(key: string): Promise<PendingMultipart[]> {
    return this.#multipart.list(key);
  }

  async close(): Promise<void> {
    this.#signedGet?.close();
    this.#hasher.close();
    this.#client.destroy();
  }

  async #etagAfterWrite(key: string): Promise<string> {
    const info = await this.head(key);
    if (!info) throw new StoreError('STORE_IO', `${key} is missing right after it was written to ${this.url}`);
    return info.etag;
  }

  /** A zero-length range: no GET can express it, so the object's existence and ETag come from HEAD. */
  async #emptyRange(key: string, start: number, options: GetRangeOptions): Promise<GetRangeResult> {
    const info = await this.head(key);
    if (!info) throw new StoreError('STORE_NOT_FOUND', `no object ${key} in ${this.url}`);
    if (options.ifMatch !== undefined && info.etag !== options.ifMatch) {
      throw new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${this.url} (ETag ${info.etag}, expected ${options.ifMatch})`);
    }
    if (start > info.size) throw new StoreError('STORE_INVALID_RANGE', `range start ${start} is past the end of ${key} (${info.size} bytes)`);
    return { body: Buffer.alloc(0), etag: info.etag, size: info.size };
  }

  /** One StoreError with a stable code for any SDK or network failure (s3-errors.ts). */
  #error(err: unknown, key: string): StoreError {
    return mapS3Error(err, key, { url: this.url, bucket: this.#bucket, endpointName: this.#endpoint });
  }
}

/** A GET's answer before its body is read (or, over plain HTTP, already read), from any path. */
interface GetAnswer {
  readonly etag: string;
  readonly contentLength: number;
  readonly contentRange: string | undefined;
  read(): Promise<Buffer>;
  /** Drops a body that will not be read. */
  discard(): void;
}

function streamed(etag: string, contentLength: number, contentRange: string | undefined, body: Readable): GetAnswer {
  return { etag, contentLength, contentRange, read: () => readBody(body, contentLength), discard: () => body.destroy() };
}

/** `bytes 0-99/1234` → 1234. */
function totalSize(contentRange: string | undefined): number | undefined {
  const match = contentRange ? /\/(\d+)$/.exec(contentRange) : null;
  return match ? Number(match[1]) : undefined;
}

/** Reads a response body into one buffer sized from Content-Length (no chunk list to concatenate). */
async function readBody(stream: Readable, expected: number): Promise<Buffer> {
  const body = Buffer.allocUnsafe(expected);
  let offset = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (offset + chunk.length > expected) throw new StoreError('STORE_IO', `the store sent more than the ${expected} bytes it announced`);
    chunk.copy(body, offset);
    offset += chunk.length;
  }
  if (offset !== expected) throw new StoreError('STORE_IO', `the store sent ${offset} of ${expected} bytes`);
  return body;
}
