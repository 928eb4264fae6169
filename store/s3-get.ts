import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { request as httpRequest, type Agent as HttpAgent, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentityProvider, Checksum, SourceData } from '@smithy/types';
import { retry, type Backoff } from '../async/index.js';
import type { Logger } from '../telemetry/index.js';
import { BodyConnectionPool, HttpNetworkError, HttpProtocolError, type HttpBodyResponse } from './body-connection.js';

/**
 * The GET of the block-fetch path, sent as one signed HTTP request without the SDK's command
 * stack. A GetObject through the SDK costs about 0.6 ms of CPU before a byte moves (endpoint
 * rules, schema serde, a dozen middlewares, retry bookkeeping), measured in a daemon
 * profile of a 10,000-file prefetch: a third of the daemon's CPU, on a machine whose other
 * core the store itself needs. Everything else (listings, HEAD, uploads) stays on the SDK,
 * which is also the fallback wherever this planner cannot be sure of the address.
 *
 * Signing is the SDK's own SigV4 signer; credentials and region come from the S3 client's
 * resolved config, so the standard AWS chain (and its refresh) applies unchanged.
 */

/** Where a bucket's objects live: `https://host[:port]/<basePath>/<key>`. */
export interface ObjectAddress {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly port: number | undefined;
  /** `/bucket` for path-style addressing, `` for virtual-hosted. */
  readonly basePath: string;
}

/**
 * The address of `bucket`'s objects, or undefined where only the SDK's endpoint rules know it
 * (FIPS or dual-stack endpoints, an S3-only endpoint override, access points, S3 Express,
 * bucket names that are not DNS labels). A given endpoint is addressed path-style, as the
 * S3 client is configured for it.
 */
export function objectAddress(bucket: string, region: string, endpoint: string | undefined, env: NodeJS.ProcessEnv = process.env): ObjectAddress | undefined {
  if (endpoint) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      return undefined;
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.username) return undefined;
    const base = url.pathname.replace(/\/+$/, '');
    return { protocol: url.protocol, hostname: url.hostname.replace(/^\[|\]$/g, ''), port: url.port ? Number(url.port) : undefined, basePath: `${base}/${encodeSegment(bucket)}` };
  }
  const flagged = ['AWS_USE_FIPS_ENDPOINT', 'AWS_USE_DUALSTACK_ENDPOINT'].some((name) => /^true$/i.test(env[name] ?? ''));
  if (flagged || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || env.AWS_S3_US_EAST_1_REGIONAL_ENDPOINT) return undefined;
  if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket) || bucket.endsWith('--x-s3') || bucket.endsWith('--ol-s3') || !/^[a-z]{2}(-[a-z]+)+-\d$/.test(region)) return undefined;
  const suffix = region.startsWith('cn-') ? 'amazonaws.com.cn' : 'amazonaws.com';
  return { protocol: 'https:', hostname: `${bucket}.s3.${region}.${suffix}`, port: undefined, basePath: '' };
}

export interface GetRequest {
  /** Full object key (with the store's prefix). */
  readonly key: string;
  /** An inclusive byte range `[first, last]`; absent: the whole object. */
  readonly range?: readonly [number, number] | undefined;
  /** ETag without quotes; the store answers 412 if the object's differs. */
  readonly ifMatch?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** What a failed GET looks like to the S3 store's error mapping: the shape of an SDK service error. */
export class GetFailure extends Error {
  readonly $metadata: { httpStatusCode: number | undefined };
  readonly code: string | undefined;
  constructor(name: string, message: string, status: number | undefined, code?: string) {
    super(message);
    this.name = name;
    this.$metadata = { httpStatusCode: status };
    this.code = code;
  }
}

/** A 200 or 206 answer read whole: its headers (lower-case names) and its body in memory of its own. */
export interface GetBody {
  header(name: string): string | undefined;
  readonly body: Buffer;
}

export interface SignedGetOptions {
  readonly address: ObjectAddress;
  readonly region: string;
  readonly credentials: AwsCredentialIdentityProvider;
  readonly agent: HttpAgent | HttpsAgent;
  readonly maxAttempts: number;
  readonly connectTimeoutMs: number;
  readonly socketTimeoutMs: number;
  readonly logger?: Logger | undefined;
  /** For log lines: the store's URL and endpoint (never a credential). */
  readonly storeUrl: string;
  readonly endpointName: string;
  /** Idle keep-alive connections kept for `getBody` over plain HTTP; absent: `getBody` is not offered. */
  readonly maxIdleSockets?: number | undefined;
}

/** SHA-256 of an empty body: GET requests sign it as their payload hash, as the SDK does. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** Statuses a GET is retried on, as the SDK's standard retry strategy does (throttling, transient 5xx). */
const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
const RETRY_NETWORK = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH']);
/**
 * Backoff: full jitter over 100 ms · 2^attempt (200 ms before the first retry), capped at 20 s:
 * the SDK's standard strategy.
 */
const GET_BACKOFF: Backoff = Object.freeze({ baseMs: 200, maxMs: 20_000, jitter: 'full' });
/**
 * Silence a GET tolerates while the store is known to be hung (a GET went silent and none has
 * been answered since): a gateway that is back answers in milliseconds, and one still hung then
 * costs a reader 1 s per attempt instead of the full idle timeout (bounding an uncached read on
 * a hung store, whose two kernel reads cost 10 s each before). Once the last silent GET is
 * HUNG_PROBE_AFTER_MS old, one GET at a time (the probe) gets the full timeout again, so a store
 * that is slow rather than hung is found answering.
 */
const HUNG_IDLE_TIMEOUT_MS = 1_000;
const HUNG_PROBE_AFTER_MS = 5_000;

export class SignedGet {
  readonly #options: SignedGetOptions;
  readonly #signer: SignatureV4;
  readonly #send: typeof httpRequest;
  readonly #hostHeader: string;
  /** Plain-HTTP endpoints: bodies read straight into their own memory (body-connection.ts). */
  readonly #pool: BodyConnectionPool | undefined;
  /** Set when a GET went silent, cleared by the next answered one: the store is taken as hung meanwhile. */
  #hungSince: number | undefined;
  /** Whether a GET with the full idle timeout is out while the store is taken as hung. */
  #probing = false;

  constructor(options: SignedGetOptions) {
    this.#options = options;
    const { address } = options;
    this.#send = address.protocol === 'https:' ? (httpsRequest as unknown as typeof httpRequest) : httpRequest;
    const host = address.hostname.includes(':') ? `[${address.hostname}]` : address.hostname;
    this.#hostHeader = address.port === undefined ? host : `${host}:${address.port}`;
    // S3 signs the path as sent (no second escaping) and takes the payload hash from its header.
    this.#signer = new SignatureV4({ service: 's3', region: options.region, credentials: options.credentials, sha256: NodeSha256, uriEscapePath: false, applyChecksum: false });
    if (address.protocol === 'http:' && options.maxIdleSockets !== undefined) {
      this.#pool = new BodyConnectionPool({ hostname: address.hostname, port: address.port ?? 80 }, options.maxIdleSockets);
    }
  }

  /** Whether `getBody` reads bodies straight from the socket (plain HTTP) rather than through node:http. */
  get readsDirect(): boolean {
    return this.#pool !== undefined;
  }

  /**
   * Sends the GET and reads the whole answer, retrying as `get` does. Over plain HTTP the body
   * goes from the socket into one buffer sized from Content-Length, with no chunk in between;
   * an answer that reader does not handle is read again through node:http. Throws as `get`.
   */
  async getBody(request: GetRequest): Promise<GetBody> {
    const pool = this.#pool;
    if (!pool) throw new Error('getBody needs a plain-HTTP endpoint (check readsDirect)');
    const response = await this.#retrying(request, async (idleMs) => {
      const head = await this.#signedHead(request);
      let answer: HttpBodyResponse;
      try {
        answer = await pool.send({ head, signal: request.signal, socketTimeoutMs: idleMs, connectTimeoutMs: this.#options.connectTimeoutMs });
      } catch (err) {
        if (err instanceof HttpProtocolError) return undefined;
        if (err instanceof HttpNetworkError) throw networkError(err.code, err.message);
        throw err;
      }
      if (answer.status === 200 || answer.status === 206) return answer;
      throw serviceError(answer.status, answer.body.toString('utf8'));
    });
    if (response) return { header: (name) => response.headers.get(name), body: response.body };
    // Not the subset body-connection.ts reads: the same GET through node:http.
    const res = await this.get(request);
    const length = Number(res.headers['content-length']);
    const chunks: Buffer[] = [];
    for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    if (Number.isSafeInteger(length) && body.length !== length) throw networkError('ECONNRESET', `the store sent ${body.length} of ${length} bytes`);
    return { header: (name) => headerOf(res, name), body };
  }

  /** Closes idle connections. */
  close(): void {
    this.#pool?.close();
  }

  /**
   * Sends the GET (retrying throttling, transient 5xx and dropped connections) and resolves
   * with a 200 or 206 response whose body is still to be read; any other answer rejects
   * with a GetFailure carrying S3's error code.
   */
  async get(request: GetRequest): Promise<IncomingMessage> {
    return this.#retrying(request, (idleMs) => this.#once(request, idleMs));
  }

  /**
   * Runs `once` until it succeeds, fails for good, or the attempts (or the time) are spent (the
   * SDK's standard retry, through async/retry.ts). `once` gets the silence it may wait for: the
   * full idle timeout, or HUNG_IDLE_TIMEOUT_MS while the store is taken as hung, when a silent
   * attempt is not retried. An abort during the backoff rejects with the timer's AbortError.
   */
  async #retrying<T>(request: GetRequest, once: (idleMs: number) => Promise<T>): Promise<T> {
    const { maxAttempts, socketTimeoutMs } = this.#options;
    const { signal } = request;
    const started = Date.now();
    // This request found the store silent: its retry is not the probe (another reader's GET is).
    let wentSilent = false;
    // Whether the attempt that failed last found the store hung, and went silent itself.
    let silentWhileHung = false;
    // This request holds the probe from its attempt through the backoff after it, until its next attempt or its end.
    let holdsProbe = false;
    const dropProbe = (): void => {
      if (holdsProbe) this.#probing = false;
      holdsProbe = false;
    };
    let abortedWait: unknown;
    const attempt = async (): Promise<T> => {
      dropProbe();
      const hung = this.#hungSince !== undefined;
      const probe = hung && !this.#probing && !wentSilent && Date.now() - this.#hungSince! >= HUNG_PROBE_AFTER_MS;
      if (probe) this.#probing = holdsProbe = true;
      try {
        const answer = await once(hung && !probe ? Math.min(socketTimeoutMs, HUNG_IDLE_TIMEOUT_MS) : socketTimeoutMs);
        this.#hungSince = undefined;
        return answer;
      } catch (err) {
        const silent = (err as { code?: string }).code === 'ETIMEDOUT';
        if (silent) {
          this.#hungSince = Date.now();
          wentSilent = true;
        }
        silentWhileHung = silent && hung;
        throw err;
      }
    };
    try {
      const answer = await retry(attempt, {
        backoff: GET_BACKOFF,
        // No new attempt once two socket timeouts have passed in all: one silent socket is
        // retried on a fresh connection (a keep-alive socket the server dropped without a
        // word), but a store silent that long is hung, and its reader gets the error in seconds.
        retryable: (err, n) => n < maxAttempts && Date.now() - started < 2 * socketTimeoutMs && !silentWhileHung && !signal?.aborted && retryable(err),
        onRetry: (_err, n) => this.#options.logger?.warn({ store: this.#options.storeUrl, endpoint: this.#options.endpointName, command: 'GetObject', attempt: n + 1 }, 'retrying a store request'),
        sleep: (ms) =>
          delay(ms, undefined, signal ? { signal } : {}).catch((err: unknown) => {
            abortedWait = err;
            throw err;
          }),
      });
      // retry() gives up quietly on an aborted wait; a GET rejects with the timer's AbortError, as it always has.
      if (abortedWait !== undefined) throw abortedWait;
      return answer as T;
    } finally {
      dropProbe();
    }
  }

  /** The request's path and signed headers. */
  async #sign(request: GetRequest): Promise<{ path: string; headers: Record<string, string> }> {
    request.signal?.throwIfAborted();
    const { address } = this.#options;
    const path = `${address.basePath}/${request.key.split('/').map(encodeSegment).join('/')}`;
    const headers: Record<string, string> = { host: this.#hostHeader, 'x-amz-content-sha256': EMPTY_SHA256 };
    if (request.range) headers.range = `bytes=${request.range[0]}-${request.range[1]}`;
    if (request.ifMatch !== undefined) headers['if-match'] = `"${request.ifMatch}"`;
    const signed = await this.#signer.sign({ method: 'GET', protocol: address.protocol, hostname: address.hostname, ...(address.port !== undefined ? { port: address.port } : {}), path, query: {}, headers });
    return { path, headers: signed.headers as Record<string, string> };
  }

  /** The signed request as HTTP/1.1 text (request line and headers). */
  async #signedHead(request: GetRequest): Promise<string> {
    const { path, headers } = await this.#sign(request);
    let head = `GET ${path} HTTP/1.1`;
    for (const [name, value] of Object.entries(headers)) {
      if (/[\r\n]/.test(value)) throw new GetFailure('InvalidRequest', `header ${name} holds a line break`, undefined);
      head += `\r\n${name}: ${value}`;
    }
    return head;
  }

  async #once(request: GetRequest, idleMs: number): Promise<IncomingMessage> {
    const { address } = this.#options;
    const { path, headers } = await this.#sign(request);
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = this.#send({
        method: 'GET',
        protocol: address.protocol,
        hostname: address.hostname,
        port: address.port,
        path,
        headers: headers as OutgoingHttpHeaders,
        agent: this.#options.agent as HttpAgent,
        ...(request.signal ? { signal: request.signal } : {}),
      });
      let connectTimer: NodeJS.Timeout | undefined;
      req.on('socket', (socket) => {
        // A reused keep-alive socket is already connected; a new one gets the connect deadline.
        if (socket.connecting) {
          connectTimer = setTimeout(() => req.destroy(networkError('ETIMEDOUT', `no connection to ${address.hostname} within ${this.#options.connectTimeoutMs} ms`)), this.#options.connectTimeoutMs);
          socket.once('connect', () => clearTimeout(connectTimer));
        }
      });
      req.setTimeout(idleMs, () => req.destroy(networkError('ETIMEDOUT', `no answer from ${address.hostname} within ${idleMs} ms`)));
      req.once('error', (err) => {
        clearTimeout(connectTimer);
        reject(err);
      });
      req.once('response', (res) => {
        clearTimeout(connectTimer);
        const status = res.statusCode ?? 0;
        if (status === 200 || status === 206) {
          resolve(res);
          return;
        }
        readErrorBody(res).then((text) => reject(serviceError(status, text)), reject);
      });
      req.end();
    });
  }
}

function headerOf(res: IncomingMessage, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** S3's URI encoding of one path segment: everything but unreserved characters. */
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function retryable(err: unknown): boolean {
  if (err instanceof GetFailure) {
    if (err.code !== undefined) return RETRY_NETWORK.has(err.code);
    return RETRY_STATUS.has(err.$metadata.httpStatusCode ?? 0) || err.name === 'SlowDown' || err.name === 'RequestTimeout' || err.name === 'InternalError';
  }
  const code = (err as { code?: string }).code;
  return code !== undefined && RETRY_NETWORK.has(code);
}

/** A connection that failed or went silent, as the SDK reports one: a TimeoutError with the errno-style code. */
function networkError(code: string, message: string): GetFailure {
  return new GetFailure('TimeoutError', message, undefined, code);
}

/** An error answer as an SDK-shaped failure: S3's `<Code>` as its name (or the status where there is no body). */
function serviceError(status: number, body: string): GetFailure {
  const code = /<Code>([^<]{1,100})<\/Code>/.exec(body)?.[1];
  const message = /<Message>([^<]{0,500})<\/Message>/.exec(body)?.[1];
  const name = code ?? (status === 404 ? 'NotFound' : status === 412 ? 'PreconditionFailed' : status === 403 ? 'Forbidden' : `HTTP ${status}`);
  return new GetFailure(name, message ?? `the store answered ${status}`, status);
}

/** The first 16 KiB of an error answer (S3's are a few hundred bytes of XML). */
async function readErrorBody(res: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (text.length < 16_384) text += chunk.toString('utf8');
  }
  return text;
}

/** The signer's hash: node:crypto SHA-256, or HMAC-SHA-256 when constructed with a key. */
class NodeSha256 implements Checksum {
  readonly #secret: SourceData | undefined;
  #hash: Hash | Hmac;

  constructor(secret?: SourceData) {
    this.#secret = secret;
    this.#hash = this.#fresh();
  }

  update(data: Uint8Array): void {
    this.#hash.update(data);
  }

  async digest(): Promise<Uint8Array> {
    return this.#hash.digest();
  }

  reset(): void {
    this.#hash = this.#fresh();
  }

  #fresh(): Hash | Hmac {
    if (this.#secret === undefined) return createHash('sha256');
    const key = typeof this.#secret === 'string' ? this.#secret : Buffer.from(this.#secret instanceof ArrayBuffer ? new Uint8Array(this.#secret) : new Uint8Array(this.#secret.buffer, this.#secret.byteOffset, this.#secret.byteLength));
    return createHmac('sha256', key);
  }
}
