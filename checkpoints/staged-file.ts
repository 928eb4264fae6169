import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';

/**
 * Writes at the end are gathered in memory up to this size before one `pwrite`: libfuse 2
 * delivers 4 KiB writes (FACTS.md), and one syscall per 1 MiB instead of per 4 KiB is what
 * lets staging keep up with a local disk.
 */
const APPEND_BUFFER_BYTES = 1024 * 1024;

/** Node refuses single reads of 2 GiB or more; larger ranges are read in 1 GiB steps. */
const MAX_READ_BYTES = 1024 * 1024 * 1024;

/**
 * The staged bytes of one file version, in a file on a local tier. Appends are buffered
 * (see above); reads see buffered bytes too. Not durable until `sync` resolves.
 * Calls that change the file must not overlap (the write path serializes them per
 * handle); `read` may run at any time.
 */
export class StagedFile {
  readonly path: string;
  readonly #handle: FileHandle;
  /** Logical size, buffered bytes included. */
  #size: number;
  /** Bytes [#bufferStart, #bufferStart + #bufferLength) are in #buffer, not yet in the file. */
  #buffer: Buffer | undefined;
  #bufferStart = 0;
  #bufferLength = 0;
  #closed = false;

  private constructor(path: string, handle: FileHandle, size: number) {
    this.path = path;
    this.#handle = handle;
    this.#size = size;
    this.#bufferStart = size;
  }

  /** Creates (or empties) the file at `path`. */
  static async create(path: string): Promise<StagedFile> {
    return new StagedFile(path, await open(path, 'w+'), 0);
  }

  /** Opens an existing staged file (after a restart) to read and upload it. */
  static async reopen(path: string): Promise<StagedFile> {
    const handle = await open(path, 'r+');
    const { size } = await handle.stat();
    return new StagedFile(path, handle, size);
  }

  get size(): number {
    return this.#size;
  }

  /** Writes all of `data` at `offset`, extending the file (with a hole of zeros) as needed. */
  async write(offset: number, data: Buffer): Promise<void> {
    const end = offset + data.length;
    if (offset === this.#bufferStart + this.#bufferLength && data.length < APPEND_BUFFER_BYTES && offset === this.#size) {
      this.#buffer ??= Buffer.allocUnsafe(APPEND_BUFFER_BYTES);
      if (this.#bufferLength + data.length > APPEND_BUFFER_BYTES) await this.flush();
      data.copy(this.#buffer, this.#bufferLength);
      this.#bufferLength += data.length;
      this.#size = end;
      return;
    }
    await this.flush();
    await this.#writeAll(data, offset);
    this.#size = Math.max(this.#size, end);
    this.#bufferStart = this.#size;
  }

  /** Bytes [offset, min(offset + length, size)), buffered ones included. */
  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.#size);
    if (end <= offset) return Buffer.alloc(0);
    return this.readInto(Buffer.allocUnsafe(end - offset), offset);
  }

  /** Fills `out` (or its first `size - offset` bytes) from `offset`; answers the filled part. */
  async readInto(out: Buffer, offset: number): Promise<Buffer> {
    const end = Math.min(offset + out.length, this.#size);
    if (end <= offset) return out.subarray(0, 0);
    if (end - offset < out.length) out = out.subarray(0, end - offset);
    // Copy the buffered part first and synchronously: a flush may move it to the file meanwhile.
    const bufferStart = this.#bufferStart;
    const bufferEnd = bufferStart + this.#bufferLength;
    const fromBuffer = Math.max(offset, bufferStart);
    if (this.#buffer && fromBuffer < Math.min(end, bufferEnd)) {
      this.#buffer.copy(out, fromBuffer - offset, fromBuffer - bufferStart, Math.min(end, bufferEnd) - bufferStart);
    }
    const diskEnd = Math.min(end, this.#bufferLength > 0 ? bufferStart : end);
    let done = 0;
    while (offset + done < diskEnd) {
      const { bytesRead } = await this.#handle.read(out, done, Math.min(diskEnd - offset - done, MAX_READ_BYTES), offset + done);
      if (bytesRead === 0) {
        out.fill(0, done, diskEnd - offset); // a hole past the file's written end reads as zeros
        break;
      }
      done += bytesRead;
    }
    return out;
  }

  /** Cuts or extends (with zeros) the file to `size`. */
  async truncate(size: number): Promise<void> {
    await this.flush();
    await this.#handle.truncate(size);
    this.#size = size;
    this.#bufferStart = size;
  }

  /** Moves buffered bytes to the file (not yet durable). */
  async flush(): Promise<void> {
    if (this.#bufferLength === 0 || !this.#buffer) return;
    await this.#writeAll(this.#buffer.subarray(0, this.#bufferLength), this.#bufferStart);
    this.#bufferStart += this.#bufferLength;
    this.#bufferLength = 0;
  }

  /** Makes every byte written so far durable (flush, then fdatasync). */
  async sync(): Promise<void> {
    await this.flush();
    await this.#handle.datasync();
  }

  /** MD5 of all the bytes, hex: what S3 and RGW answer as the ETag of a single-PUT object. */
  async md5(): Promise<string> {
    const hash = createHash('md5');
    // 8 MiB reads: few calls, bounded memory.
    const chunk = 8 * 1024 * 1024;
    for (let offset = 0; offset < this.#size; offset += chunk) hash.update(await this.read(offset, chunk));
    return hash.digest('hex');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close();
  }

  async #writeAll(data: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.#handle.write(data, done, data.length - done, position + done);
      done += bytesWritten;
    }
  }
}
