import { connect, type Socket } from 'node:net';
import { ERROR_CATALOGUE, StrataError, type ErrorCode } from '../errors/index.js';
import { ParamsError } from './params-error.js';
import { MAX_RESPONSE_BYTES, requestHeader, RESPONSE_HEADER_BYTES, WIRE_OPS, type WireOp } from './wire-frames.js';
import type { ParamsWireAddress } from './wire-server.js';

interface Waiting {
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
  /** Where the caller wants the answer's payload written (mget's `into`), if it fits. */
  into: Uint8Array | undefined;
}

/**
 * Bytes one socket read lands in: the kernel copies into this buffer, reused for every read,
 * and the client copies from it into the answer's buffer. 256 KiB takes a loopback read
 * whole (they come in up to 64 KiB-256 KiB pieces) and is allocated once per connection.
 */
const READ_BUFFER_BYTES = 256 * 1024;

/**
 * A client of the params binary protocol (docs/PARAMS.md, "Binary protocol"): one
 * persistent connection, any number of requests in flight (pipelined), each answered by
 * its id. Errors the server answers come back as StrataError with their code; a lost
 * connection fails every request in flight (code INTERNAL).
 *
 * Reading allocates nothing per answer when the caller gives mget a buffer to answer into:
 * socket reads land in one buffer per connection (node:net's `onread`) and each answer's
 * payload is copied from there straight into the caller's buffer, so a client reading
 * 1.28 MB answers at 10 answers a millisecond makes no garbage for V8 to collect.
 */
export class ParamsWireClient {
  #socket: Socket | undefined;
  readonly #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #failed: Error | undefined;
  /** The response header being read (12 bytes, reused) and how much of it is in. */
  readonly #header = Buffer.alloc(RESPONSE_HEADER_BYTES);
  #headerFilled = 0;
  /** The answer being read: its id, status, where its payload goes, and how much of it is in. */
  #id = 0;
  #status = 0;
  #payload: Buffer | undefined;
  #payloadFilled = 0;

  private constructor() {}

  /** Connects, and authenticates with `token` when one is given (STRATA_TOKEN of the daemon). */
  static async connect(address: ParamsWireAddress, token?: string): Promise<ParamsWireClient> {
    const client = new ParamsWireClient();
    const onread = {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (bytes: number, buffer: Uint8Array) => {
        client.#onRead(buffer, bytes);
        return true;
      },
    };
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = 'path' in address ? connect({ path: address.path, onread }) : connect({ host: address.host, port: address.port, noDelay: true, onread });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    client.#socket = socket;
    socket.on('error', (err) => client.#failAll(new ParamsError('INTERNAL', `params binary protocol connection failed: ${err.message}`, { cause: err })));
    socket.on('close', () => client.#failAll(new ParamsError('INTERNAL', 'the params binary protocol connection closed')));
    if (token !== undefined) {
      try {
        await client.#request(WIRE_OPS.auth, Buffer.alloc(0), Buffer.from(token), undefined);
      } catch (err) {
        client.close();
        throw err;
      }
    }
    return client;
  }

  /**
   * The mget answer for `keys` (N little-endian u64) from table `name`, as
   * `POST /v1/params/:name/mget` answers it: found-bitmap padded to 4 bytes, then N rows.
   *
   * With `into`, the answer is written there and the promise gives a view of its first
   * bytes (`mgetAnswerBytes(N, dim)` of them): nothing is allocated for it, and the caller
   * may reuse `into` for its next request once it is done with this answer. An `into` too
   * small for the answer is left alone and the answer gets a buffer of its own. `keys` may
   * be reused as soon as this returns (it is written to the socket's queue).
   */
  mget(name: string, keys: Uint8Array, into?: Uint8Array): Promise<Buffer> {
    const nameBytes = Buffer.from(name);
    if (nameBytes.length > 255) return Promise.reject(new ParamsError('PARAMS_BAD_INPUT', `table name of ${nameBytes.length} bytes; at most 255`));
    return this.#request(WIRE_OPS.mget, nameBytes, keys, into);
  }

  /** Requests sent and not answered yet. */
  get inFlight(): number {
    return this.#waiting.size;
  }

  close(): void {
    this.#socket?.destroy();
  }

  #request(op: WireOp, name: Buffer, payload: Uint8Array, into: Uint8Array | undefined): Promise<Buffer> {
    if (this.#failed) return Promise.reject(this.#failed);
    const socket = this.#socket!;
    const id = this.#nextId;
    this.#nextId = (this.#nextId % 0xffffffff) + 1;
    return new Promise<Buffer>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject, into });
      socket.cork();
      socket.write(requestHeader(id, op, name, payload.byteLength));
      socket.write(payload);
      socket.uncork();
    });
  }

  /** Bytes `[0, bytes)` of `buffer` arrived (the read buffer, overwritten by the next read). */
  #onRead(buffer: Uint8Array, bytes: number): void {
    let at = 0;
    while (at < bytes && !this.#failed) {
      if (this.#payload === undefined) {
        const take = Math.min(RESPONSE_HEADER_BYTES - this.#headerFilled, bytes - at);
        this.#header.set(buffer.subarray(at, at + take), this.#headerFilled);
        this.#headerFilled += take;
        at += take;
        if (this.#headerFilled < RESPONSE_HEADER_BYTES) return;
        if (!this.#startAnswer()) return;
        if (this.#payload === undefined) continue; // an empty payload, answered already
      }
      const payload = this.#payload!;
      const take = Math.min(payload.length - this.#payloadFilled, bytes - at);
      payload.set(buffer.subarray(at, at + take), this.#payloadFilled);
      this.#payloadFilled += take;
      at += take;
      if (this.#payloadFilled === payload.length) this.#finishAnswer();
    }
  }

  /** A whole header is in: checks its length and picks where the payload goes. False when the connection is failed. */
  #startAnswer(): boolean {
    const frameBytes = this.#header.readUInt32LE(0);
    if (frameBytes < RESPONSE_HEADER_BYTES || frameBytes > MAX_RESPONSE_BYTES) {
      this.#failAll(new ParamsError('INTERNAL', `the server sent a frame of ${frameBytes} bytes (${RESPONSE_HEADER_BYTES}-${MAX_RESPONSE_BYTES} allowed)`));
      this.#socket?.destroy();
      return false;
    }
    this.#id = this.#header.readUInt32LE(4);
    this.#status = this.#header.readUInt16LE(8);
    const payloadBytes = frameBytes - RESPONSE_HEADER_BYTES;
    const into = this.#status === 0 ? this.#waiting.get(this.#id)?.into : undefined;
    this.#payload = into && into.byteLength >= payloadBytes ? Buffer.from(into.buffer, into.byteOffset, payloadBytes) : Buffer.allocUnsafe(payloadBytes);
    this.#payloadFilled = 0;
    this.#headerFilled = 0;
    if (payloadBytes === 0) this.#finishAnswer();
    return true;
  }

  #finishAnswer(): void {
    const payload = this.#payload!;
    this.#payload = undefined;
    const id = this.#id;
    if (this.#status !== 0 && id === 0) {
      // A framing error the server could not tie to a request: the connection is going.
      this.#failAll(toError(payload));
      return;
    }
    const waiting = this.#waiting.get(id);
    if (!waiting) return;
    this.#waiting.delete(id);
    if (this.#status === 0) waiting.resolve(payload);
    else waiting.reject(toError(payload));
  }

  #failAll(err: Error): void {
    this.#failed ??= err;
    for (const waiting of this.#waiting.values()) waiting.reject(err);
    this.#waiting.clear();
  }
}

/** An error frame's payload (`{statusCode, code, message}`) as the StrataError it stands for. */
function toError(payload: Buffer): Error {
  try {
    const { code, message } = JSON.parse(payload.toString('utf8')) as { code: string; message: string };
    if (code in ERROR_CATALOGUE) return new StrataError(code as ErrorCode, message);
    return new ParamsError('INTERNAL', `${code}: ${message}`);
  } catch {
    return new ParamsError('INTERNAL', 'the server answered an error that is not JSON');
  }
}
