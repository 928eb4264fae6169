import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { Logger } from '../telemetry/index.js';
import { StoreError } from './errors.js';
import { objectAddress, SignedGet } from './s3-get.js';
import { PayloadHasher } from './payload-hasher.js';
import { timedRequest } from './store-metrics.js';
import { s3StoreUrl } from './url.js';
import type { CopyOptions, GetRangeOptions, GetRangeResult, ListOptions, ListPage, MultipartUpload, ObjectInfo, ObjectStore, PendingMultipart, PutOptions, UploadedPart } from './object-store.js';
import { metaFromHeaders, metaToHeaders, type ObjectMeta } from './object-meta.js';

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
 * Sockets kept open to the store. The block cache runs up to 8 parallel block fetches per
 * read plus readahead and prefetch jobs; 64 leaves room for all of them without queueing
 * behind a busy socket.
 */
const MAX_SOCKETS = 64;
/** Connecting to an S3 endpoint takes milliseconds; 5 s means it is down or unroutable. */
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * Silence on an upload's socket before it is given up: a store may take a while to answer
 * a 16 MiB part it is still writing, and the uploader retries in the background anyway.
 */
const SOCKET_TIMEOUT_MS = 60_000;
/**
 * Silence on a read's socket before it is given up (and retried, see s3-get.ts): a healthy
 * gateway starts sending a block within milliseconds and never pauses for seconds, while a
 * reader waiting on a hung one should fail in seconds, far from the FUSE call timeout.
 */
const READ_IDLE_TIMEOUT_MS = 5_000;
/**
 * A HEAD, retries included, answers within this or fails with STORE_UNREACHABLE: a reader
 * waits on it, and a HEAD takes milliseconds when the store is up. The namespace serves what
 * it knew after 2 s already (docs/SEMANTICS.md).
 */
const HEAD_DEADLINE_MS = 5_000;
/**
 * The same for a LIST page of many keys: up to 1,000, which a busy gateway takes seconds to
 * gather. A LIST of one key (the namespace's "is this a folder" probe) gets HEAD_DEADLINE_MS.
 */
const LIST_DEADLINE_MS = 10_000;
/**
 * The SDK's retries (exponential backoff with jitter) for throttling, transient 5xx and
 * dropped connections: 4 attempts in all, a few seconds at most, after which the caller
 * (block cache, uploader) decides. Refused connections are retried too, so an unreachable
 * endpoint is reported after those few seconds.
 */
const MAX_ATTEMPTS = 4;

/**
 * The S3 backend (AWS S3 or a compatible store such as Ceph RGW or MinIO). Credentials
 * come from the SDK's default provider chain only and are never logged.
 */
export class S3Store implements ObjectStore {
  readonly url: string;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #endpoint: string;
  readonly #signedGet: SignedGet | undefined;
  readonly #hasher = new PayloadHasher();

  constructor(config: S3StoreConfig) {
    this.#bucket = config.bucket;
    this.#prefix = config.prefix;
    this.url = s3StoreUrl(config.bucket, config.prefix);
    const endpoint = config.endpoint || process.env.AWS_ENDPOINT_URL || undefined;
    this.#endpoint = endpoint ?? 'the default AWS endpoint';
    const logger = config.logger;
    const region = config.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS });
    // AWS_CA_BUNDLE (honoured by the AWS CLI, not by SDK v3 itself) applies to TLS only:
    // plain-HTTP endpoints such as a loopback gateway go through the HTTP agent untouched.
    const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS, ...caBundle() });
    this.#client = new S3Client({
      region,
      // Compatible stores are reached by host and port, without wildcard DNS for bucket names.
      ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
      // S3-compatible stores (Ceph RGW 16) reject or store verbatim the CRC trailers the
      // SDK adds by default; send and check checksums only where the API requires them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: MAX_ATTEMPTS,
      requestHandler: new NodeHttpHandler({
        httpAgent,
        httpsAgent,
        connectionTimeout: CONNECT_TIMEOUT_MS,
        requestTimeout: SOCKET_TIMEOUT_MS,
      }),
      ...(logger
        ? {
            logger: {
              debug: () => {},
              info: () => {},
              warn: (...args: unknown[]) => logger.warn({ store: this.url }, String(args[0])),
              error: () => {},
            },
          }
        : {}),
    });
    if (logger) this.#logRetries(logger);
    // Block fetches skip the SDK's command stack where the object address is certain (see s3-get.ts).
    const address = process.env.STRATA_S3_GET === 'sdk' ? undefined : objectAddress(config.bucket, region, endpoint);
    if (address) {
      this.#signedGet = new SignedGet({
        address,
        region,
        credentials: this.#client.config.credentials,
        agent: address.protocol === 'https:' ? httpsAgent : httpAgent,
        maxAttempts: MAX_ATTEMPTS,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        socketTimeoutMs: READ_IDLE_TIMEOUT_MS,
        logger,
        storeUrl: this.url,
        endpointName: this.#endpoint,
        maxIdleSockets: MAX_SOCKETS,
      });
    }
  }

  /**
   * Logs every retry the SDK makes as a warning: the middleware sits below the retry loop,
   * so it runs once per attempt and sees the attempt number in the request headers.
   */
  #logRetries(logger: Logger): void {
    const middleware = (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
      const header = (args as { request?: { headers?: Record<string, string> } }).request?.headers?.['amz-sdk-request'];
      const attempt = Number(/attempt=(\d+)/.exec(header ?? '')?.[1] ?? 1);
      if (attempt > 1) logger.warn({ store: this.url, endpoint: this.#endpoint, command: context.commandName, attempt }, 'retrying a store request');
      return next(args);
    };
    // The stack's type is a union over every step, which no single function signature satisfies.
    this.#client.middlewareStack.addRelativeTo(middleware as unknown as RelativeMiddleware, { relation: 'after', toMiddleware: 'retryMiddleware', name: 'strataRetryLog', override: true });
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

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    try {
      const out = await timedRequest('list', () => this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: this.#prefix + prefix,
          ...(options.delimiter ? { Delimiter: options.delimiter } : {}),
          ...(options.token ? { ContinuationToken: options.token } : {}),
          MaxKeys: Math.max(1, Math.min(options.maxKeys ?? 1000, 1000)), // S3 answers at most 1,000 keys a page
        }),
        { abortSignal: AbortSignal.timeout((options.maxKeys ?? 1000) <= 1 ? HEAD_DEADLINE_MS : LIST_DEADLINE_MS) },
      ));
      const cut = this.#prefix.length;
      return {
        objects: (out.Contents ?? []).map((o) => ({ key: o.Key!.slice(cut), size: o.Size ?? 0, etag: stripQuotes(o.ETag), lastModified: o.LastModified ?? new Date(0) })),
        prefixes: (out.CommonPrefixes ?? []).map((p) => p.Prefix!.slice(cut)),
        ...(out.IsTruncated && out.NextContinuationToken ? { nextToken: out.NextContinuationToken } : {}),
      };
    } catch (err) {
      throw this.#error(err, prefix);
    }
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

  async createMultipart(key: string, options: { readonly meta?: ObjectMeta } = {}): Promise<MultipartUpload> {
    try {
      const out = await this.#client.send(new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: this.#prefix + key, Metadata: metaToHeaders(options.meta) }));
      return { key, uploadId: out.UploadId! };
    } catch (err) {
      throw this.#error(err, key);
    }
  }

  async uploadPart(upload: MultipartUpload, partNumber: number, body: Buffer): Promise<UploadedPart> {
    try {
      const command = new UploadPartCommand({ Bucket: this.#bucket, Key: this.#prefix + upload.key, UploadId: upload.uploadId, PartNumber: partNumber, Body: body });
      await signWithPayloadHash(command, body, this.#hasher);
      const out = await this.#client.send(command);
      return { partNumber, etag: stripQuotes(out.ETag), size: body.length };
    } catch (err) {
      throw this.#error(err, upload.key);
    }
  }

  async listParts(upload: MultipartUpload): Promise<UploadedPart[]> {
    const parts: UploadedPart[] = [];
    let marker: string | undefined;
    try {
      do {
        const out = await this.#client.send(
          new ListPartsCommand({ Bucket: this.#bucket, Key: this.#prefix + upload.key, UploadId: upload.uploadId, ...(marker ? { PartNumberMarker: marker } : {}) }),
        );
        for (const p of out.Parts ?? []) parts.push({ partNumber: p.PartNumber!, etag: stripQuotes(p.ETag), size: p.Size ?? 0 });
        marker = out.IsTruncated ? out.NextPartNumberMarker : undefined;
      } while (marker);
    } catch (err) {
      throw this.#error(err, upload.key);
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  async completeMultipart(upload: MultipartUpload, parts: readonly UploadedPart[]): Promise<{ etag: string }> {
    try {
      const out = await this.#client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#bucket,
          Key: this.#prefix + upload.key,
          UploadId: upload.uploadId,
          MultipartUpload: { Parts: [...parts].sort((a, b) => a.partNumber - b.partNumber).map((p) => ({ PartNumber: p.partNumber, ETag: `"${p.etag}"` })) },
        }),
      );
      // Ceph RGW 16 answers CompleteMultipartUpload with an empty ETag; HEAD has the real one.
      return { etag: stripQuotes(out.ETag) || (await this.#etagAfterWrite(upload.key)) };
    } catch (err) {
      throw this.#error(err, upload.key);
    }
  }

  async abortMultipart(upload: MultipartUpload): Promise<void> {
    try {
      await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: this.#prefix + upload.key, UploadId: upload.uploadId }));
    } catch (err) {
      const mapped = this.#error(err, upload.key);
      if (mapped.code !== 'STORE_NOT_FOUND') throw mapped;
    }
  }

  async listMultipart(key: string): Promise<PendingMultipart[]> {
    const found: PendingMultipart[] = [];
    const full = this.#prefix + key;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    try {
      do {
        const out = await this.#client.send(
          new ListMultipartUploadsCommand({ Bucket: this.#bucket, Prefix: full, ...(keyMarker ? { KeyMarker: keyMarker } : {}), ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}) }),
        );
        for (const u of out.Uploads ?? []) {
          if (u.Key === full && u.UploadId) found.push({ upload: { key, uploadId: u.UploadId }, initiated: u.Initiated ?? new Date(0) });
        }
        const more = out.IsTruncated === true;
        keyMarker = more ? out.NextKeyMarker : undefined;
        uploadIdMarker = more ? out.NextUploadIdMarker : undefined;
      } while (keyMarker);
    } catch (err) {
      throw this.#error(err, key);
    }
    return found.sort((a, b) => a.initiated.getTime() - b.initiated.getTime());
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

  /** One StoreError with a stable code for any SDK or network failure. Messages never carry credentials. */
  #error(err: unknown, key: string): StoreError {
    if (err instanceof StoreError) return err;
    const e = err as { name?: string; Code?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode;
    const name = e.name ?? e.Code ?? '';
    const where = `${this.url} at ${this.#endpoint}`;
    if (name === 'NoSuchBucket') return new StoreError('STORE_BUCKET_NOT_FOUND', `bucket "${this.#bucket}" does not exist at ${this.#endpoint}`, { cause: err });
    if (name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload' || status === 404) return new StoreError('STORE_NOT_FOUND', `no object ${key} in ${where}`, { cause: err });
    if (name === 'PreconditionFailed' || status === 412) return new StoreError('STORE_PRECONDITION_FAILED', `${key} changed in ${this.url}`, { cause: err });
    if (name === 'InvalidRange' || status === 416) return new StoreError('STORE_INVALID_RANGE', `invalid range for ${key} in ${this.url}`, { cause: err });
    if (['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden', 'ExpiredToken'].includes(name) || status === 403) {
      return new StoreError('STORE_ACCESS_DENIED', `access denied to ${where} (${name || status}): check the credentials`, { cause: err });
    }
    if (name === 'CredentialsProviderError') return new StoreError('STORE_ACCESS_DENIED', `no AWS credentials found for ${where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE`, { cause: err });
    const code = e.code ?? '';
    if (name === 'AbortError' || code === 'ABORT_ERR') return new StoreError('STORE_UNREACHABLE', `no answer from ${this.#endpoint} in time (a HEAD gets ${HEAD_DEADLINE_MS / 1000} s, a LIST page ${LIST_DEADLINE_MS / 1000} s, retries included)`, { cause: err });
    if (['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code) || name === 'TimeoutError' || /timed? ?out/i.test(e.message ?? '')) {
      return new StoreError('STORE_UNREACHABLE', `cannot reach ${this.#endpoint} (${code || name})`, { cause: err });
    }
    return new StoreError('STORE_IO', `store request for ${key} in ${where} failed: ${name || status || e.message}`, { cause: err });
  }
}

/** Bodies below this are hashed by the SDK itself: a threadpool round trip costs more than hashing them. */
const OFF_THREAD_HASH_MIN_BYTES = 1024 * 1024;

/**
 * Hands the SigV4 payload hash (SHA-256 of `body`) to the signer as its header, computed on a
 * worker thread (payload-hasher.ts). Without it the SDK hashes a Buffer body synchronously on
 * the event loop (with no checksum trailer, as here, over plain HTTP and HTTPS alike): 20-40 ms
 * per 16 MiB part here, during which the FUSE requests of a file being written wait. The
 * store still checks the hash, so the payload stays signed.
 */
async function signWithPayloadHash(command: { middlewareStack: { add: (...args: never[]) => void } }, body: Buffer, hasher: PayloadHasher): Promise<void> {
  if (body.length < OFF_THREAD_HASH_MIN_BYTES) return;
  const hash = await hasher.hash(body);
  const middleware = (next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
    const request = (args as { request?: { headers?: Record<string, string> } }).request;
    if (request?.headers) request.headers['x-amz-content-sha256'] = hash;
    return next(args);
  };
  (command.middlewareStack as unknown as { add(m: unknown, o: { step: string; name: string; override: boolean }): void }).add(middleware, {
    step: 'build',
    name: 'strataPayloadHash',
    override: true,
  });
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

type RelativeMiddleware = Parameters<S3Client['middlewareStack']['addRelativeTo']>[0];

/** The CA certificates AWS_CA_BUNDLE names, for the HTTPS agent; read once, when a store is opened. */
function caBundle(): { ca?: Buffer } {
  const path = process.env.AWS_CA_BUNDLE;
  if (!path) return {};
  try {
    return { ca: readFileSync(path) };
  } catch (err) {
    throw new StoreError('STORE_UNREACHABLE', `AWS_CA_BUNDLE=${path} cannot be read: ${(err as Error).message}`, { cause: err });
  }
}

function stripQuotes(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/"/g, '');
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
