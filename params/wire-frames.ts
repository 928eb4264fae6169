import { MAX_BATCH_KEYS } from './request-checks.js';

/**
 * Frames of the params wire protocol (docs/PARAMS.md, "Binary protocol"): mget over one
 * persistent connection, requests pipelined, each frame length-prefixed. All integers are
 * little-endian.
 *
 * Request:  u32 frame bytes (this field included), u32 id, u8 op, u8 name bytes, u16 0,
 *           name (UTF-8), payload (MGET: N u64 keys; AUTH: the token, UTF-8).
 * Response: u32 frame bytes, u32 id, u16 status (0: ok), u16 0, payload (MGET: the mget
 *           answer as the REST route gives it; an error: JSON `{statusCode, code, message}`).
 */

export const REQUEST_HEADER_BYTES = 12;
export const RESPONSE_HEADER_BYTES = 12;

export const WIRE_OPS = { auth: 1, mget: 2 } as const;
export type WireOp = (typeof WIRE_OPS)[keyof typeof WIRE_OPS];

/** The largest request: a header, a name of 255 bytes and the most keys one mget may carry. */
export const MAX_REQUEST_BYTES = REQUEST_HEADER_BYTES + 255 + MAX_BATCH_KEYS * 8;
/** The largest answer a client takes: the bitmap and rows of MAX_BATCH_KEYS keys up to dim 1024, or an error. */
export const MAX_RESPONSE_BYTES = RESPONSE_HEADER_BYTES + MAX_BATCH_KEYS * 4 * 1025 + 64 * 1024;

/** The header of a request frame (its name and payload follow). */
export function requestHeader(id: number, op: WireOp, name: Buffer, payloadBytes: number): Buffer {
  const header = Buffer.allocUnsafe(REQUEST_HEADER_BYTES + name.length);
  header.writeUInt32LE(REQUEST_HEADER_BYTES + name.length + payloadBytes, 0);
  header.writeUInt32LE(id >>> 0, 4);
  header.writeUInt8(op, 8);
  header.writeUInt8(name.length, 9);
  header.writeUInt16LE(0, 10);
  name.copy(header, REQUEST_HEADER_BYTES);
  return header;
}

/** The header of a response frame of `payloadBytes`. */
export function responseHeader(id: number, status: number, payloadBytes: number): Buffer {
  const header = Buffer.allocUnsafe(RESPONSE_HEADER_BYTES);
  header.writeUInt32LE(RESPONSE_HEADER_BYTES + payloadBytes, 0);
  header.writeUInt32LE(id >>> 0, 4);
  header.writeUInt16LE(status, 8);
  header.writeUInt16LE(0, 10);
  return header;
}

/** Why a byte stream cannot be framed: the peer is answered (when it can be) and the connection closed. */
export class FrameError extends Error {
  constructor(
    message: string,
    /** The frame's length field: too large, or too small for a header. */
    readonly frameBytes: number,
  ) {
    super(message);
  }
}

/**
 * Cuts a byte stream into frames. A frame inside one chunk is a view of it (no copy); one
 * spread over chunks is gathered into a buffer of its exact size once. A length field
 * below `minBytes` or above `maxBytes` throws FrameError before any of the frame is kept,
 * so a peer cannot make this hold more than one frame of at most `maxBytes`.
 */
export class FrameReader {
  readonly #minBytes: number;
  readonly #maxBytes: number;
  /** With `reuse`: the buffer frames spread over chunks are gathered into, kept for the next one. */
  readonly #reuse: boolean;
  #gather: Buffer | undefined;
  /** Bytes received past the last whole frame (at most one frame's worth plus a header). */
  #rest: Buffer = Buffer.alloc(0);
  /** The frame being gathered across chunks, and how much of it is in. */
  #partial: Buffer | undefined;
  #filled = 0;

  /**
   * With `reuse`, a frame gathered from several chunks is a view of one buffer this reader
   * keeps (grown to the largest such frame, at most `maxBytes`) and overwrites with the next:
   * the `frame` callback must be done with the bytes when it returns. Without it each such
   * frame gets a buffer of its own, which the callback may keep.
   */
  constructor(minBytes: number, maxBytes: number, options: { reuse?: boolean } = {}) {
    this.#minBytes = minBytes;
    this.#maxBytes = maxBytes;
    this.#reuse = options.reuse ?? false;
  }

  /** Bytes held for a frame not complete yet. */
  get heldBytes(): number {
    return this.#partial ? this.#filled : this.#rest.length;
  }

  /** Feeds `chunk` and calls `frame` for every frame it completes, in order. */
  push(chunk: Buffer, frame: (bytes: Buffer) => void): void {
    let data = chunk;
    if (this.#partial) {
      const take = Math.min(this.#partial.length - this.#filled, data.length);
      data.copy(this.#partial, this.#filled, 0, take);
      this.#filled += take;
      data = data.subarray(take);
      if (this.#filled < this.#partial.length) return;
      const whole = this.#partial;
      this.#partial = undefined;
      frame(whole);
    } else if (this.#rest.length > 0) {
      data = Buffer.concat([this.#rest, data]);
      this.#rest = Buffer.alloc(0);
    }
    let at = 0;
    while (data.length - at >= 4) {
      const bytes = data.readUInt32LE(at);
      if (bytes < this.#minBytes || bytes > this.#maxBytes) throw new FrameError(`a frame of ${bytes} bytes (${this.#minBytes}-${this.#maxBytes} allowed)`, bytes);
      if (data.length - at >= bytes) {
        frame(data.subarray(at, at + bytes));
        at += bytes;
        continue;
      }
      if (data.length - at >= this.#minBytes) {
        // The header is in: gather the rest of this frame into its own buffer (or the reused one).
        this.#partial = this.#gatherBuffer(bytes);
        this.#filled = data.copy(this.#partial, 0, at);
        return;
      }
      break;
    }
    if (at < data.length) this.#rest = Buffer.from(data.subarray(at));
  }

  #gatherBuffer(bytes: number): Buffer {
    if (!this.#reuse) return Buffer.allocUnsafe(bytes);
    if (!this.#gather || this.#gather.length < bytes) this.#gather = Buffer.allocUnsafe(bytes);
    return this.#gather.subarray(0, bytes);
  }
}
