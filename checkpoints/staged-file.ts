import { createHash } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { WritePathError } from './write-path-error.js';

/**
 * Writes at the end are gathered in memory up to this size before one `pwrite`: FUSE delivers
 * 128 KiB writes at most (4 KiB without big_writes, as fuse-native mounts by default), and one syscall per 1 MiB instead
 * of per request is what lets staging keep up with a local disk.
 */
const APPEND_BUFFER_BYTES = 1024 * 1024;

/**
 * While a file is appended to, an `fdatasync` is started in the background after every 64 MiB
 * handed to the kernel, so that the disk writes the staged bytes while the writer is still
 * writing and the `sync` at close has at most about this much left to flush. 64 MiB is a tenth
 * of a second of a local NVMe disk or of the development machine's virtual one (800 MB/s with O_DIRECT),
 * and 32 calls for a 2 GiB checkpoint.
 */
const BACKGROUND_SYNC_BYTES = 64 * 1024 * 1024;

/** Node refuses single reads of 2 GiB or more; larger ranges are read in 1 GiB steps. */
const MAX_READ_BYTES = 1024 * 1024 * 1024;

/** One full append buffer being written to the file in the background. */
interface Spill {
  readonly buffer: Buffer;
  readonly start: number;
  readonly length: number;
  readonly done: Promise<void>;
}

/**
 * The staged bytes of one file version, in a file on a local tier. Appends are buffered and
 * written behind the writer: a full buffer goes to the file in the background while the next
 * one fills (two buffers per file at most), and the kernel is asked to write the file to disk
 * as it grows (see above). A failed background write or sync is kept and thrown by the next
 * `write`, `flush`, `truncate` or `sync`, so it reaches the caller by `close()` at the latest.
 * Reads see buffered bytes too. Not durable until `sync` resolves.
 *
 * `write` never keeps a reference to its `data` once its promise settles (the FUSE adapter
 * passes the kernel's buffer, which is reused after the answer). Calls that change the file
 * must not overlap (the write path serializes them per handle); `read` may run at any time.
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
  /** The previous buffer on its way to the file; everything before its start is in the file. */
  #spill: Spill | undefined;
  /** A buffer whose spill finished, reused for the next one. */
  #spare: Buffer | undefined;
  /** Bytes handed to the kernel since the last background sync started. */
  #unsynced = 0;
  #backgroundSync: Promise<void> | undefined;
  /** The first failure of a background write or sync, thrown by the next call that changes the file. */
  #failure: unknown;
  #closed = false;
  /**
   * Written by someone else too (the kernel, through FUSE passthrough): nothing is buffered,
   * and the size is the file's own (`fstat`), not what passed through here.
   */
  #external = false;

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

  /** The file's size, buffered bytes included (written by the kernel too: see `shareWrites`). */
  get size(): number {
    if (this.#external && !this.#closed) this.#size = fstatSync(this.#handle.fd).size;
    return this.#size;
  }

  /**
   * Hands the file to another writer (the kernel, through FUSE passthrough): buffered bytes
   * go to the file first, later writes here go straight to it, and `size` and `changeStamp`
   * read the file itself. Answers a new read-write descriptor of the file for that writer
   * (the caller closes it).
   */
  async shareWrites(): Promise<FileHandle> {
    await this.flush();
    this.#external = true;
    return open(this.path, 'r+');
  }

  /** Written by another writer too (`shareWrites`). */
  get external(): boolean {
    return this.#external;
  }

  /**
   * What changes whenever the file is written, by anyone: its size and modification time to
   * the nanosecond, as `fstat` tells them. Only for a shared file (`shareWrites`).
   */
  changeStamp(): string {
    if (this.#closed) return '';
    const stat = fstatSync(this.#handle.fd, { bigint: true });
    this.#size = Number(stat.size);
    return `${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
  }

  /**
   * Another writer added `bytes` to the file: a background sync starts every
   * BACKGROUND_SYNC_BYTES, as for appends made here, so a sync at close has little left.
   */
  grewExternally(bytes: number): void {
    this.#unsynced += bytes;
    if (this.#unsynced >= BACKGROUND_SYNC_BYTES && !this.#backgroundSync) this.#startBackgroundSync();
  }

  /** Writes all of `data` at `offset`, extending the file (with a hole of zeros) as needed. */
  async write(offset: number, data: Buffer): Promise<void> {
    this.#throwFailure();
    const end = offset + data.length;
    if (this.#external) {
      await this.#writeAll(data, offset);
      this.#size = Math.max(this.size, end);
      return;
    }
    if (offset === this.#bufferStart + this.#bufferLength && data.length < APPEND_BUFFER_BYTES && offset === this.#size) {
      if (this.#bufferLength + data.length > APPEND_BUFFER_BYTES) await this.#spillBuffer();
      this.#buffer ??= this.#spare ?? Buffer.allocUnsafe(APPEND_BUFFER_BYTES);
      if (this.#buffer === this.#spare) this.#spare = undefined;
      data.copy(this.#buffer, this.#bufferLength);
      this.#bufferLength += data.length;
      this.#size = end;
      // A full buffer starts on its way at once, so the pwrite overlaps the next requests.
      if (this.#bufferLength === APPEND_BUFFER_BYTES) await this.#spillBuffer();
      return;
    }
    await this.flush();
    await this.#writeAll(data, offset);
    this.#size = Math.max(this.#size, end);
    this.#bufferStart = this.#size;
  }

  /** Bytes [offset, min(offset + length, size)), buffered ones included. */
  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.size);
    if (end <= offset) return Buffer.alloc(0);
    return this.readInto(Buffer.allocUnsafe(end - offset), offset);
  }

  /** Fills `out` (or its first `size - offset` bytes) from `offset`; answers the filled part. */
  async readInto(out: Buffer, offset: number): Promise<Buffer> {
    const end = Math.min(offset + out.length, this.size);
    if (end <= offset) return out.subarray(0, 0);
    if (end - offset < out.length) out = out.subarray(0, end - offset);
    // Copy the buffered parts first and synchronously: a spill may move them to the file
    // (and the buffers be reused) meanwhile. Everything before the first buffered byte is in the file.
    let diskEnd = end;
    for (const held of [this.#spill, { buffer: this.#buffer, start: this.#bufferStart, length: this.#bufferLength }]) {
      if (!held?.buffer || held.length === 0) continue;
      const from = Math.max(offset, held.start);
      const to = Math.min(end, held.start + held.length);
      if (from < to) held.buffer.copy(out, from - offset, from - held.start, to - held.start);
      diskEnd = Math.min(diskEnd, Math.max(offset, held.start));
    }
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

  /** Moves buffered bytes to the file (not yet durable); throws a failed background write. */
  async flush(): Promise<void> {
    await this.#spillBuffer();
    await this.#spill?.done;
    this.#throwFailure();
  }

  /** Makes every byte written so far durable (flush, then fdatasync). */
  async sync(): Promise<void> {
    await this.flush();
    await this.#backgroundSync;
    this.#unsynced = 0;
    await this.#datasync();
    this.#throwFailure();
  }

  /** MD5 of all the bytes, hex: what S3 and RGW answer as the ETag of a single-PUT object. */
  async md5(): Promise<string> {
    const hash = createHash('md5');
    // 8 MiB reads: few calls, bounded memory.
    const chunk = 8 * 1024 * 1024;
    for (let offset = 0; offset < this.size; offset += chunk) hash.update(await this.read(offset, chunk));
    return hash.digest('hex');
  }

  /** Closes the file; buffered bytes not yet flushed are dropped (callers `sync` what they keep). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#spill?.done;
    await this.#backgroundSync;
    await this.#handle.close();
  }

  /**
   * Starts writing the buffer to the file in the background, once the previous spill is done
   * (at most one in flight: two buffers per file), and a background sync every
   * BACKGROUND_SYNC_BYTES. Failures are kept for `#throwFailure`.
   */
  async #spillBuffer(): Promise<void> {
    if (this.#bufferLength === 0 || !this.#buffer) return;
    await this.#spill?.done;
    this.#throwFailure();
    const spill = { buffer: this.#buffer, start: this.#bufferStart, length: this.#bufferLength };
    const done = this.#writeAll(spill.buffer.subarray(0, spill.length), spill.start).then(
      () => {
        if (this.#spill?.buffer === spill.buffer) this.#spill = undefined;
        this.#spare = spill.buffer;
        this.#unsynced += spill.length;
        if (this.#unsynced >= BACKGROUND_SYNC_BYTES && !this.#backgroundSync) this.#startBackgroundSync();
      },
      (err: unknown) => {
        this.#failure ??= err;
      },
    );
    this.#spill = { ...spill, done };
    this.#buffer = undefined;
    this.#bufferStart += this.#bufferLength;
    this.#bufferLength = 0;
  }

  #startBackgroundSync(): void {
    this.#unsynced = 0;
    this.#backgroundSync = this.#datasync().then(
      () => {
        this.#backgroundSync = undefined;
      },
      (err: unknown) => {
        this.#failure ??= err;
        this.#backgroundSync = undefined;
      },
    );
  }

  #throwFailure(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  async #writeAll(data: Buffer, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.#handle.write(data, done, data.length - done, position + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw this.#fullOr(err);
    }
  }

  async #datasync(): Promise<void> {
    await this.#handle.datasync().catch((err: unknown) => {
      throw this.#fullOr(err);
    });
  }

  /**
   * A full (or over-quota) staging file system as CHECKPOINT_STAGING_FULL, which the FUSE edge
   * answers with ENOSPC: the writer learns it is out of space, not that a disk failed. A write
   * behind the writer fails the same way at the next write, flush or close.
   */
  #fullOr(err: unknown): unknown {
    const code = (err as { code?: string }).code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
    return new WritePathError('CHECKPOINT_STAGING_FULL', `no space left for ${this.path} in the staging folder (${code})`, { cause: err });
  }
}
