import { connect, type Socket } from 'node:net';
import { ERROR_CATALOGUE, StrataError, type ErrorCode } from '../errors/index.js';
import { ParamsError } from './params-error.js';
import { FrameError, FrameReader, MAX_RESPONSE_BYTES, requestHeader, RESPONSE_HEADER_BYTES, WIRE_OPS, type WireOp } from './wire-frames.js';
import type { ParamsWireAddress } from './wire-server.js';

interface Waiting {
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
}

/**
 * A client of the params binary protocol (docs/PARAMS.md, "Binary protocol"): one
 * persistent connection, any number of requests in flight (pipelined), each answered by
 * its id. Errors the server answers come back as StrataError with their code; a lost
 * connection fails every request in flight (code INTERNAL).
 */
export class ParamsWireClient {
  readonly #socket: Socket;
  readonly #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #failed: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    const reader = new FrameReader(RESPONSE_HEADER_BYTES, MAX_RESPONSE_BYTES);
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, (frame) => this.#onFrame(frame));
      } catch (err) {
        if (!(err instanceof FrameError)) throw err;
        this.#failAll(new ParamsError('INTERNAL', `the server sent ${err.message}`));
        socket.destroy();
      }
    });
    socket.on('error', (err) => this.#failAll(new ParamsError('INTERNAL', `params binary protocol connection failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.#failAll(new ParamsError('INTERNAL', 'the params binary protocol connection closed')));
  }

  /** Connects, and authenticates with `token` when one is given (STRATA_TOKEN of the daemon). */
  static async connect(address: ParamsWireAddress, token?: string): Promise<ParamsWireClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = 'path' in address ? connect(address.path) : connect({ host: address.host, port: address.port, noDelay: true });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    const client = new ParamsWireClient(socket);
    if (token !== undefined) {
      try {
        await client.#request(WIRE_OPS.auth, Buffer.alloc(0), Buffer.from(token));
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
   */
  mget(name: string, keys: Uint8Array): Promise<Buffer> {
    const nameBytes = Buffer.from(name);
    if (nameBytes.length > 255) return Promise.reject(new ParamsError('PARAMS_BAD_INPUT', `table name of ${nameBytes.length} bytes; at most 255`));
    return this.#request(WIRE_OPS.mget, nameBytes, keys);
  }

  /** Requests sent and not answered yet. */
  get inFlight(): number {
    return this.#waiting.size;
  }

  close(): void {
    this.#socket.destroy();
  }

  #request(op: WireOp, name: Buffer, payload: Uint8Array): Promise<Buffer> {
    if (this.#failed) return Promise.reject(this.#failed);
    const id = this.#nextId;
    this.#nextId = (this.#nextId % 0xffffffff) + 1;
    return new Promise<Buffer>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#socket.cork();
      this.#socket.write(requestHeader(id, op, name, payload.byteLength));
      this.#socket.write(payload);
      this.#socket.uncork();
    });
  }

  #onFrame(frame: Buffer): void {
    const id = frame.readUInt32LE(4);
    const status = frame.readUInt16LE(8);
    const payload = frame.subarray(RESPONSE_HEADER_BYTES);
    const waiting = this.#waiting.get(id);
    if (status !== 0 && id === 0) {
      // A framing error the server could not tie to a request: the connection is going.
      this.#failAll(toError(payload));
      return;
    }
    if (!waiting) return;
    this.#waiting.delete(id);
    if (status === 0) waiting.resolve(payload);
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
