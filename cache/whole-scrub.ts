import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { counter } from '../telemetry/index.js';
import { blockChecksum } from './checksum.js';

const scrubbedBytes = counter('strata_cache_scrub_bytes_total', 'Bytes of whole-object files in the NVMe and pmem tiers re-read and checked by the background scrubs');
const scrubMismatches = counter('strata_cache_scrub_mismatches_total', 'Whole-object files the background scrub found damaged (a block failed its CRC-32C); each was dropped');

/**
 * With no whole file to scrub, look again this often: whole files appear as objects are read,
 * and a minute of delay before the first pass over a new one costs nothing.
 */
const IDLE_WAIT_MS = 60_000;
/**
 * The scrub reads a file in pieces of at most this size and pauses between them to keep its
 * rate: 1 MiB at the default rate is a pause of about 60 ms, short enough to stop promptly.
 */
const PIECE_BYTES = 1024 * 1024;

/** One whole-object file to scrub, as the tier describes it now. */
export interface ScrubTarget {
  readonly objectId: string;
  readonly path: string;
  readonly size: number;
  /** Bytes per block, and the CRC-32C each block had when the file was made. */
  readonly layout: { readonly blockSize: number; readonly checksums: readonly number[] };
  /** The tier's record of the file: a mismatch drops the file only if the record is still this one. */
  readonly entry: unknown;
}

/** What the scrub needs of its tier. */
export interface ScrubSource {
  /** The tier's whole files now, in a stable order (the scrub goes round them); none once the tier closes. */
  wholeFiles(): Iterable<ScrubTarget>;
  /** `target` failed a CRC: drop it. */
  mismatch(target: ScrubTarget): void;
  /** An I/O error other than a vanished file (counted and logged by the tier). */
  ioError(err: unknown): void;
}

/**
 * The background scrub of a file tier's whole-object files (the NVMe tier's, and the pmem
 * tier's on tmpfs or DAX): whole files are served by the kernel (FUSE passthrough), which
 * checks no CRC, so the scrub re-reads each in turn, round robin, block by block, at most
 * `bytesPerSecond`, and compares every block's CRC-32C with the one recorded
 * when the file was made. A file that fails is dropped: new opens then read through the block
 * path and refetch (opens already made keep the kernel's backing file until closed). Runs on
 * the event loop with one 1 MiB buffer; `stop` ends it at its next pause.
 */
export class WholeScrub {
  readonly #rate: number;
  readonly #source: ScrubSource;
  readonly #abort = new AbortController();
  readonly #done: Promise<void>;
  /** The one read buffer: a block is checked piece by piece, its CRC-32C carried across pieces. */
  readonly #piece = Buffer.allocUnsafe(PIECE_BYTES);
  /** Ends the idle wait early (a whole file was made). */
  #idle: AbortController | undefined;

  constructor(bytesPerSecond: number, source: ScrubSource) {
    this.#rate = bytesPerSecond;
    this.#source = source;
    this.#done = this.#run().catch(() => undefined);
  }

  /** A whole file was made: an idle scrub starts at once instead of at its next look. */
  wake(): void {
    this.#idle?.abort();
  }

  /** Stops the scrub; resolves once it has. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    let last: string | undefined;
    while (!signal.aborted) {
      const target = this.#next(last);
      if (target === undefined) {
        last = undefined;
        this.#idle = new AbortController();
        await this.#pause(IDLE_WAIT_MS, AbortSignal.any([signal, this.#idle.signal]));
        this.#idle = undefined;
        continue;
      }
      last = target.objectId;
      await this.#scrubFile(target);
    }
  }

  /** The whole file after the one named `after` (the first when `after` is undefined, gone or the last); undefined when there is none. */
  #next(after: string | undefined): ScrubTarget | undefined {
    let first: ScrubTarget | undefined;
    let passed = after === undefined;
    for (const target of this.#source.wholeFiles()) {
      if (passed) return target;
      first ??= target;
      if (target.objectId === after) passed = true;
    }
    return first;
  }

  /** Checks `target` block by block; a vanished file is skipped (it was evicted or dropped). */
  async #scrubFile(target: ScrubTarget): Promise<void> {
    let handle;
    try {
      handle = await open(target.path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#source.ioError(err);
      // Nothing read: wait a little, so a tier of vanishing files is not spun over.
      await this.#pause(1000);
      return;
    }
    try {
      const { blockSize, checksums } = target.layout;
      for (let index = 0; index < checksums.length; index++) {
        const start = index * blockSize;
        const length = Math.min(blockSize, target.size - start);
        let done = 0;
        let crc = 0;
        while (done < length) {
          if (this.#abort.signal.aborted) return;
          const { bytesRead } = await handle.read(this.#piece, 0, Math.min(PIECE_BYTES, length - done), start + done);
          if (bytesRead === 0) break;
          crc = blockChecksum(this.#piece.subarray(0, bytesRead), crc);
          done += bytesRead;
          scrubbedBytes.inc(bytesRead);
          await this.#pause((bytesRead / this.#rate) * 1000);
        }
        if (done < length || crc !== checksums[index]) {
          scrubMismatches.inc();
          this.#source.mismatch(target);
          return;
        }
      }
    } catch (err) {
      this.#source.ioError(err);
    } finally {
      await handle.close();
    }
  }

  async #pause(ms: number, signal = this.#abort.signal): Promise<void> {
    try {
      await sleep(ms, undefined, { signal, ref: false });
    } catch {
      // Aborted: the caller sees the signal.
    }
  }
}
