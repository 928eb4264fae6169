import { connect, type Socket } from 'node:net';
import { blockMemory } from './block-memory.js';

/**
 * Plain-HTTP GETs whose body the kernel copies straight into the buffer that keeps it: the
 * socket reads into memory the caller will hold (`net.Socket`'s `onread` with a buffer chosen
 * per read), so no per-chunk Buffer is allocated, no chunk is copied into place, and no stream
 * or HTTP parser callback runs per chunk. Measured in the daemon's CPU profile of a cold 1 GiB
 * read through node:http: 29% of its main thread copying chunks into blocks, 24% in the
 * garbage collector (a 64 KiB Buffer per socket read) and 19% in the HTTP client and promise
 * ticks of async iteration (bench/cold-read.ts). Reading through this instead (with the other
 * changes of that bench's commit), the daemon's CPU per cold GiB went from 8.7 s to 4.0 s. Most
 * of that copy's time was the first touch of fresh block memory; those page faults remain, in
 * the kernel's copy now (1.4 s of system time per GiB).
 *
 * The protocol is the subset a GET to an S3 endpoint needs: HTTP/1.1, keep-alive, a response
 * head of at most HEAD_BYTES, and a 2xx body with Content-Length. Error answers (small XML)
 * are read whole, then the connection is closed. Anything else (a 2xx without Content-Length,
 * a head too long) fails with `HttpProtocolError`, and the caller uses node:http for it.
 */

/** A response head larger than this is refused: S3's are under 1 KiB (a dozen headers). */
const HEAD_BYTES = 16 * 1024;
/** Error bodies are read up to this; S3's are a few hundred bytes of XML. */
const ERROR_BODY_BYTES = 16 * 1024;

export interface HttpTarget {
  readonly hostname: string;
  readonly port: number;
}

/** A response: status, headers (names in lower case; the last of repeated ones), the body. */
export interface HttpBodyResponse {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  /** A 2xx body in memory of its own (exactly Content-Length bytes); an error body as received. */
  readonly body: Buffer;
}

export interface HttpExchange {
  /** Request line and headers, without the blank line that ends them. */
  readonly head: string;
  readonly signal?: AbortSignal | undefined;
  readonly socketTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

/** The server answered something this client does not read (it is not a store error). */
export class HttpProtocolError extends Error {
  override name = 'HttpProtocolError';
}

/** A network failure, with the errno-style code the retry policy looks at. */
export class HttpNetworkError extends Error {
  override name = 'HttpNetworkError';
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

interface Pending {
  resolve(response: HttpBodyResponse): void;
  reject(err: unknown): void;
}

/** One keep-alive connection; one exchange at a time. */
class BodyConnection {
  readonly socket: Socket;
  /** Response heads (and error bodies) land here; a 2xx body goes to its own buffer. */
  readonly #scratch = Buffer.allocUnsafe(HEAD_BYTES + ERROR_BODY_BYTES);
  #scratchUsed = 0;
  #pending: Pending | undefined;
  #status = 0;
  #headers: Map<string, string> | undefined;
  #body: Buffer | undefined;
  #filled = 0;
  /** The error body's end in the scratch buffer, once the head is parsed. */
  #errorEnd = 0;
  #keepAlive = true;
  /** Set once any byte of the current response arrived: a failure before it may be retried at once. */
  #answered = false;
  #connected = false;
  #failure: Error | undefined;
  readonly #onGone: (connection: BodyConnection) => void;

  constructor(target: HttpTarget, onGone: (connection: BodyConnection) => void) {
    this.#onGone = onGone;
    this.socket = connect({
      host: target.hostname,
      port: target.port,
      noDelay: true,
      onread: { buffer: () => this.#nextBuffer(), callback: (bytes: number) => (this.#onRead(bytes), true) },
    });
    this.socket.once('connect', () => (this.#connected = true));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.#fail(new HttpNetworkError(err.code ?? 'ECONNRESET', err.message)));
    this.socket.on('timeout', () => this.socket.destroy(new HttpNetworkError('ETIMEDOUT', 'the store went silent')));
    this.socket.on('end', () => this.#fail(new HttpNetworkError('ECONNRESET', 'the store closed the connection')));
    this.socket.on('close', () => {
      this.#fail(new HttpNetworkError('ECONNRESET', 'the connection closed'));
      this.#onGone(this);
    });
  }

  get reusable(): boolean {
    return !this.socket.destroyed && this.#failure === undefined && this.#keepAlive;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Whether the current exchange failed before the store answered anything (safe to resend). */
  get unanswered(): boolean {
    return !this.#answered;
  }

  exchange(request: HttpExchange): Promise<HttpBodyResponse> {
    this.#scratchUsed = 0;
    this.#status = 0;
    this.#headers = undefined;
    this.#body = undefined;
    this.#filled = 0;
    this.#answered = false;
    return new Promise<HttpBodyResponse>((resolve, reject) => {
      const signal = request.signal;
      let connectTimer: NodeJS.Timeout | undefined;
      const onAbort = () => this.#fail(signal!.reason as Error);
      const done = () => {
        clearTimeout(connectTimer);
        signal?.removeEventListener('abort', onAbort);
        this.socket.setTimeout(0);
        this.#pending = undefined;
      };
      this.#pending = {
        resolve: (response) => (done(), resolve(response)),
        reject: (err) => (done(), reject(err)),
      };
      if (signal?.aborted) return this.#fail(signal.reason as Error);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (!this.#connected) {
        connectTimer = setTimeout(() => this.socket.destroy(new HttpNetworkError('ETIMEDOUT', `no connection within ${request.connectTimeoutMs} ms`)), request.connectTimeoutMs);
        this.socket.once('connect', () => clearTimeout(connectTimer));
      }
      this.socket.setTimeout(request.socketTimeoutMs);
      this.socket.write(`${request.head}\r\n\r\n`, 'latin1');
    });
  }

  /** Where the next socket read goes: the rest of the body's own buffer, else the scratch buffer. */
  #nextBuffer(): Buffer {
    if (this.#body !== undefined && this.#filled < this.#body.length) return this.#body.subarray(this.#filled);
    // A full scratch buffer still needs somewhere to read: the overflow is refused in #onRead.
    return this.#scratchUsed < this.#scratch.length ? this.#scratch.subarray(this.#scratchUsed) : this.#scratch;
  }

  #onRead(bytes: number): void {
    if (!this.#pending) {
      // Bytes nobody asked for: the connection is out of step; drop it.
      this.socket.destroy();
      return;
    }
    this.#answered = true;
    if (this.#body !== undefined && this.#filled < this.#body.length) {
      this.#filled += bytes;
      if (this.#filled === this.#body.length) this.#complete();
      return;
    }
    if (this.#scratchUsed + bytes > this.#scratch.length || this.#body !== undefined) {
      this.#fail(new HttpProtocolError(this.#body !== undefined ? 'the store sent more than the Content-Length it announced' : 'the response head is too long'));
      return;
    }
    this.#scratchUsed += bytes;
    if (this.#headers === undefined) this.#parseHead();
    else if (this.#errorBodyDone()) this.#complete();
  }

  /** Whether the error body is all here: its Content-Length, the cap, or (chunked) the last chunk. */
  #errorBodyDone(): boolean {
    if (this.#scratchUsed >= this.#errorEnd) return true;
    return !this.#headers!.has('content-length') && this.#scratch.subarray(0, this.#scratchUsed).includes('0\r\n\r\n', 0, 'latin1');
  }

  #parseHead(): void {
    const end = this.#scratch.subarray(0, Math.min(this.#scratchUsed, HEAD_BYTES)).indexOf('\r\n\r\n', 0, 'latin1');
    if (end < 0) {
      if (this.#scratchUsed >= HEAD_BYTES) this.#fail(new HttpProtocolError('the response head is too long'));
      return;
    }
    const lines = this.#scratch.toString('latin1', 0, end).split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!status) return this.#fail(new HttpProtocolError(`not an HTTP/1.1 response: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`));
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i]!.indexOf(':');
      if (colon > 0) headers.set(lines[i]!.slice(0, colon).trim().toLowerCase(), lines[i]!.slice(colon + 1).trim());
    }
    this.#status = Number(status[1]);
    this.#headers = headers;
    this.#keepAlive = !/\bclose\b/i.test(headers.get('connection') ?? '');
    const bodyStart = end + 4;
    const length = headers.has('content-length') ? Number(headers.get('content-length')) : undefined;
    if (this.#status >= 200 && this.#status < 300) {
      if (length === undefined || !Number.isSafeInteger(length) || length < 0 || headers.has('transfer-encoding')) {
        return this.#fail(new HttpProtocolError('a 2xx answer without a Content-Length'));
      }
      const early = this.#scratchUsed - bodyStart;
      if (early > length) return this.#fail(new HttpProtocolError('the store sent more than the Content-Length it announced'));
      this.#body = blockMemory(length);
      this.#scratch.copy(this.#body, 0, bodyStart, this.#scratchUsed);
      this.#filled = early;
      this.#scratchUsed = 0;
      if (this.#filled === length) this.#complete();
      return;
    }
    // An error answer: read its body (Content-Length, else until the chunked terminator or the cap), then close.
    this.#keepAlive = false;
    this.#scratch.copyWithin(0, bodyStart, this.#scratchUsed);
    this.#scratchUsed -= bodyStart;
    this.#errorEnd = length !== undefined && Number.isSafeInteger(length) ? Math.min(length, ERROR_BODY_BYTES) : ERROR_BODY_BYTES;
    if (this.#errorBodyDone()) this.#complete();
  }

  #complete(): void {
    const pending = this.#pending;
    if (!pending) return;
    const body = this.#body ?? Buffer.from(this.#scratch.subarray(0, Math.min(this.#scratchUsed, this.#errorEnd)));
    const response = { status: this.#status, headers: this.#headers!, body };
    this.#body = undefined;
    this.#scratchUsed = 0;
    if (!this.#keepAlive) this.socket.destroy();
    pending.resolve(response);
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    const pending = this.#pending;
    if (!this.socket.destroyed) this.socket.destroy();
    pending?.reject(err);
  }
}

/**
 * Keep-alive connections to one endpoint. Idle connections are reused newest first and at most
 * `maxIdle` are kept; the number in use is bounded by the caller (the block cache's memory pool).
 */
export class BodyConnectionPool {
  readonly #target: HttpTarget;
  readonly #maxIdle: number;
  readonly #idle: BodyConnection[] = [];

  constructor(target: HttpTarget, maxIdle: number) {
    this.#target = target;
    this.#maxIdle = maxIdle;
  }

  /**
   * Sends one request and reads its answer. A reused connection the store had closed meanwhile
   * (it fails before any byte of an answer) is replaced by a new one and the request resent once.
   */
  async send(request: HttpExchange): Promise<HttpBodyResponse> {
    for (;;) {
      const reused = this.#idle.pop();
      const connection = reused ?? new BodyConnection(this.#target, (gone) => this.#forget(gone));
      try {
        const response = await connection.exchange(request);
        if (connection.reusable && this.#idle.length < this.#maxIdle) this.#idle.push(connection);
        else connection.socket.destroy();
        return response;
      } catch (err) {
        connection.socket.destroy();
        if (reused && connection.unanswered && !request.signal?.aborted && err instanceof HttpNetworkError) continue;
        throw err;
      }
    }
  }

  /** Closes every idle connection. */
  close(): void {
    for (const connection of this.#idle.splice(0)) connection.socket.destroy();
  }

  #forget(connection: BodyConnection): void {
    const at = this.#idle.indexOf(connection);
    if (at >= 0) this.#idle.splice(at, 1);
  }
}
