import { closeSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { keyHash, scaleToRange, shardOf } from './key-hash.js';
import { ParamsError } from './params-error.js';
import {
  DEFAULT_SEED,
  EMPTY_ROW,
  FORMAT_VERSION,
  MAX_DIM,
  MAX_INDEX_BYTES,
  MAX_SHARDS,
  READABLE_VERSIONS,
  REGION_ALIGN,
  SLOT_BYTES,
  SLOT_WORDS,
  alignUp,
  checksumFor,
  directoryBytes,
  encodeHeader,
  homeSlotsFor,
  valuesOffsetFor,
  type Checksum,
  type ShardEntry,
} from './table-format.js';

export interface TableWriterOptions {
  readonly dim: number;
  readonly shards: number;
  /** Upper bound of the records `add` will see (distinct keys are at most this many). */
  readonly maxRecords: number;
  /** A repeated key throws PARAMS_DUPLICATE_KEY instead of replacing the earlier record. */
  readonly strict?: boolean;
  readonly seed?: number;
  /** The format version to write (default: the current one); older versions only for tests of reading them. */
  readonly version?: number;
  /**
   * Leave the rows in first-seen order instead of grouping them by shard, as builders before
   * the grouping did: only for tests and benchmarks of reading such files.
   */
  readonly firstSeenOrder?: boolean;
}

/** Where each row goes: see TableWriter's #groupByShard. */
interface ShardLayout {
  readonly hashes: Uint32Array;
  readonly shardOfRow: Uint16Array;
  readonly starts: Float64Array;
  readonly byShard: Uint32Array;
  /** The rows were added shard after shard: the values are in shard order already. */
  readonly grouped: boolean;
}

export interface TableWriterResult {
  readonly keys: number;
  readonly duplicates: number;
  readonly bytes: number;
}

/** Rows are written out in batches of this many bytes: large sequential writes, bounded memory. */
const WRITE_BATCH_BYTES = 8 * 1024 * 1024;
/**
 * Bytes of the per-shard buffers that regroup rows by shard, all shards together: 2.7 MiB
 * a shard at 12 shards, 8 KiB (128 dim-16 rows) at the 4096 most; rows above a shard's
 * share are written one by one.
 */
const REORDER_BUFFER_BYTES = 32 * 1024 * 1024;
/** Slots per record of the dedupe table: load 0.5 keeps the build-time probes short. */
const DEDUPE_SLOTS_PER_RECORD = 2;

/**
 * Writes one table file: `add` records in any order, then `finish`. Values stream out as
 * rows in first-seen key order; a repeated key overwrites its row (the last record wins)
 * and is counted, or fails with `strict`. At `finish` the rows are regrouped by shard
 * (all of shard 0, then shard 1, ...; first-seen order within a shard), so that a shard's
 * rows are one contiguous range a cluster member reads alone, and the index is built in
 * memory. Regrouping is skipped when the rows came shard after shard; otherwise the file
 * briefly holds the values twice.
 * Memory: about 12 bytes per record for deduplication, plus the index (12 bytes per slot).
 * Synchronous file I/O on an fd the writer owns; the caller renames the file when done.
 */
export class TableWriter {
  readonly #fd: number;
  readonly #dim: number;
  readonly #shards: number;
  readonly #maxRecords: number;
  readonly #strict: boolean;
  readonly #seed: number;
  readonly #version: number;
  readonly #firstSeenOrder: boolean;
  readonly #checksum: Checksum;
  readonly #rowBytes: number;
  readonly #valuesOffset: number;
  /** Dedupe table: row + 1 per slot, 0 for empty. */
  readonly #dedupe: Uint32Array;
  /** Key halves by row: [lo, hi, lo, hi, ...]. */
  readonly #keys: Uint32Array;
  readonly #batch: Buffer;
  readonly #batchRows: number;
  #batchStart = 0;
  #rows = 0;
  #duplicates = 0;
  #valuesCrc = 0;
  /** A duplicate rewrote a row already written out, so the streamed checksum is stale. */
  #crcStale = false;

  constructor(path: string, options: TableWriterOptions) {
    const { dim, shards, maxRecords } = options;
    if (!Number.isInteger(dim) || dim < 1 || dim > MAX_DIM) throw new ParamsError('PARAMS_BAD_INPUT', `dim must be an integer in 1..${MAX_DIM}, got ${dim}`);
    if (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) throw new ParamsError('PARAMS_BAD_INPUT', `shards must be an integer in 1..${MAX_SHARDS}, got ${shards}`);
    // Rows are uint32 with one value reserved for "empty".
    if (!Number.isInteger(maxRecords) || maxRecords < 0 || maxRecords >= EMPTY_ROW) throw new ParamsError('PARAMS_BAD_INPUT', `a table holds fewer than ${EMPTY_ROW} keys`);
    this.#dim = dim;
    this.#shards = shards;
    this.#maxRecords = maxRecords;
    this.#strict = options.strict === true;
    this.#seed = (options.seed ?? DEFAULT_SEED) >>> 0;
    this.#version = options.version ?? FORMAT_VERSION;
    this.#firstSeenOrder = options.firstSeenOrder === true;
    if (!READABLE_VERSIONS.includes(this.#version)) throw new ParamsError('PARAMS_BAD_INPUT', `cannot write table format version ${this.#version}; versions: ${READABLE_VERSIONS.join(', ')}`);
    this.#checksum = checksumFor(this.#version);
    this.#rowBytes = dim * 4;
    this.#valuesOffset = valuesOffsetFor(shards);
    this.#dedupe = new Uint32Array(Math.max(1, maxRecords * DEDUPE_SLOTS_PER_RECORD));
    this.#keys = new Uint32Array(maxRecords * 2);
    this.#batchRows = Math.max(1, Math.floor(WRITE_BATCH_BYTES / this.#rowBytes));
    this.#batch = Buffer.allocUnsafeSlow(this.#batchRows * this.#rowBytes);
    this.#fd = openSync(path, 'w+');
  }

  get rows(): number {
    return this.#rows;
  }

  /**
   * Adds the record for key (`lo`, `hi`) whose dim float32 values are the bytes of
   * `source` at `offset`. Answers false when the key was already present (its row replaced).
   */
  add(lo: number, hi: number, source: Uint8Array, offset: number): boolean {
    const dedupe = this.#dedupe;
    const keys = this.#keys;
    const slots = dedupe.length;
    let slot = scaleToRange(keyHash(lo, hi, this.#seed), slots);
    for (;;) {
      const entry = dedupe[slot]!;
      if (entry === 0) break;
      const row = entry - 1;
      if (keys[2 * row] === lo >>> 0 && keys[2 * row + 1] === hi >>> 0) {
        if (this.#strict) {
          const key = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
          throw new ParamsError('PARAMS_DUPLICATE_KEY', `key ${key} appears more than once (--strict)`);
        }
        this.#duplicates++;
        this.#writeRow(row, source, offset);
        return false;
      }
      slot = slot + 1 === slots ? 0 : slot + 1;
    }
    if (this.#rows === this.#maxRecords) throw new ParamsError('INTERNAL', 'more records than the writer was sized for');
    const row = this.#rows++;
    dedupe[slot] = row + 1;
    keys[2 * row] = lo;
    keys[2 * row + 1] = hi;
    this.#writeRow(row, source, offset);
    return true;
  }

  #writeRow(row: number, source: Uint8Array, offset: number): void {
    const bytes = this.#rowBytes;
    if (row >= this.#batchStart) {
      const at = (row - this.#batchStart) * bytes;
      this.#batch.set(source.subarray(offset, offset + bytes), at);
      if (row - this.#batchStart + 1 === this.#batchRows) this.#flush();
      return;
    }
    writeSync(this.#fd, source, offset, bytes, this.#valuesOffset + row * bytes);
    this.#crcStale = true;
  }

  #flush(): void {
    const count = this.#rows - this.#batchStart;
    if (count === 0) return;
    const chunk = this.#batch.subarray(0, count * this.#rowBytes);
    writeAll(this.#fd, chunk, this.#valuesOffset + this.#batchStart * this.#rowBytes);
    this.#valuesCrc = this.#checksum(chunk, this.#valuesCrc);
    this.#batchStart = this.#rows;
  }

  /** Writes the index and header, fsyncs and closes the file. The writer is done after this. */
  finish(): TableWriterResult {
    try {
      this.#flush();
      const rows = this.#rows;
      const valuesBytes = rows * this.#rowBytes;
      const indexOffset = alignUp(this.#valuesOffset + valuesBytes, REGION_ALIGN);
      const layout = this.#groupByShard();
      // Rows added shard after shard (a shard loader's, a compaction's) are in place already.
      const valuesCrc = layout.grouped || this.#firstSeenOrder ? (this.#crcStale ? this.#rereadValuesCrc(valuesBytes) : this.#valuesCrc) : this.#reorderValues(layout, indexOffset);
      const { shards, totalSlots, crc } = this.#writeIndex(indexOffset, layout);
      const indexBytes = totalSlots * SLOT_BYTES;
      const header = { version: this.#version, dim: this.#dim, keyCount: rows, shardCount: this.#shards, seed: this.#seed, valuesOffset: this.#valuesOffset, valuesBytes, indexOffset, indexBytes, fileBytes: indexOffset + indexBytes, duplicates: this.#duplicates };
      const draft = encodeHeader({ ...header, indexCrc: 0, valuesCrc: 0 }, shards);
      const indexCrc = this.#checksum(directoryBytes(draft, this.#shards), crc);
      writeAll(this.#fd, encodeHeader({ ...header, indexCrc, valuesCrc }, shards), 0);
      ftruncateSync(this.#fd, indexOffset + indexBytes);
      fsyncSync(this.#fd);
      return { keys: rows, duplicates: this.#duplicates, bytes: indexOffset + indexBytes };
    } finally {
      closeSync(this.#fd);
    }
  }

  /** Closes the file without finishing it (the caller removes it). */
  abort(): void {
    try {
      closeSync(this.#fd);
    } catch {
      // already closed by finish
    }
  }

  /**
   * The rows grouped by shard (a counting sort, stable: a shard's rows keep the order they
   * were added in). Row `byShard[k]` as added is row k of the file; shard s owns rows
   * [starts[s], starts[s + 1]).
   */
  #groupByShard(): ShardLayout {
    const rows = this.#rows;
    const keys = this.#keys;
    const shardCount = this.#shards;
    const hashes = new Uint32Array(rows);
    const shardOfRow = new Uint16Array(rows);
    const counts = new Uint32Array(shardCount + 1);
    let grouped = true;
    for (let r = 0; r < rows; r++) {
      const h = keyHash(keys[2 * r]!, keys[2 * r + 1]!, this.#seed);
      const s = shardOf(h, shardCount);
      hashes[r] = h;
      shardOfRow[r] = s;
      counts[s + 1]!++;
      if (r > 0 && s < shardOfRow[r - 1]!) grouped = false;
    }
    const starts = new Float64Array(shardCount + 1);
    for (let s = 0; s < shardCount; s++) starts[s + 1] = starts[s]! + counts[s + 1]!;
    const fill = Float64Array.from(starts);
    const byShard = new Uint32Array(rows);
    for (let r = 0; r < rows; r++) byShard[fill[shardOfRow[r]!]!++] = r;
    return { hashes, shardOfRow, starts, byShard, grouped };
  }

  /**
   * Moves the rows, written in the order they were added, into shard order: pass 1 reads
   * them in sequence and scatters each into its place in a scratch region at `scratchOffset`
   * (where the index goes afterwards), through one buffer per shard; pass 2 copies the
   * scratch back over the values region in sequence, checksumming it. Answers the values
   * checksum. The file holds the values twice meanwhile.
   */
  #reorderValues(layout: ShardLayout, scratchOffset: number): number {
    const rows = this.#rows;
    const rowBytes = this.#rowBytes;
    const shardCount = this.#shards;
    const { shardOfRow, starts } = layout;
    const perShard = Math.floor(REORDER_BUFFER_BYTES / shardCount / rowBytes); // rows buffered per shard; 0: written one by one
    const buffers = perShard > 0 ? Buffer.allocUnsafeSlow(perShard * rowBytes * shardCount) : undefined;
    const buffered = new Uint32Array(shardCount);
    const written = Float64Array.from(starts.subarray(0, shardCount)); // next file row of each shard
    const drain = (s: number) => {
      const n = buffered[s]!;
      if (n === 0) return;
      const at = s * perShard * rowBytes;
      writeAll(this.#fd, buffers!.subarray(at, at + n * rowBytes), scratchOffset + written[s]! * rowBytes);
      written[s] = written[s]! + n;
      buffered[s] = 0;
    };
    const batch = this.#batch;
    for (let first = 0; first < rows; first += this.#batchRows) {
      const count = Math.min(this.#batchRows, rows - first);
      readAll(this.#fd, batch.subarray(0, count * rowBytes), this.#valuesOffset + first * rowBytes);
      for (let i = 0; i < count; i++) {
        const s = shardOfRow[first + i]!;
        const row = batch.subarray(i * rowBytes, (i + 1) * rowBytes);
        if (!buffers) {
          writeAll(this.#fd, row, scratchOffset + written[s]! * rowBytes);
          written[s] = written[s]! + 1;
          continue;
        }
        buffers.set(row, (s * perShard + buffered[s]!) * rowBytes);
        if (++buffered[s]! === perShard) drain(s);
      }
    }
    for (let s = 0; s < shardCount; s++) drain(s);
    let crc = 0;
    for (let first = 0; first < rows; first += this.#batchRows) {
      const chunk = batch.subarray(0, Math.min(this.#batchRows, rows - first) * rowBytes);
      readAll(this.#fd, chunk, scratchOffset + first * rowBytes);
      writeAll(this.#fd, chunk, this.#valuesOffset + first * rowBytes);
      crc = this.#checksum(chunk, crc);
    }
    return crc;
  }

  /**
   * Builds and writes each shard's index region in turn (one region in memory at a
   * time), naming each key's row by its place in the shard-ordered values. Answers the
   * directory, the slot total and the checksum of the index region.
   */
  #writeIndex(indexOffset: number, layout: ShardLayout): { shards: ShardEntry[]; totalSlots: number; crc: number } {
    const rows = this.#rows;
    const keys = this.#keys;
    const shardCount = this.#shards;
    const { hashes, starts, byShard } = layout;
    const shards: ShardEntry[] = [];
    let firstSlot = 0;
    let crc = 0;
    for (let s = 0; s < shardCount; s++) {
      const keyCount = starts[s + 1]! - starts[s]!;
      const homeSlots = homeSlotsFor(keyCount);
      let region: Uint32Array = new Uint32Array((homeSlots + 1 + (homeSlots >>> 6)) * SLOT_WORDS);
      for (let i = 2; i < region.length; i += SLOT_WORDS) region[i] = EMPTY_ROW;
      let last = homeSlots - 1; // the last slot in use or home
      for (let k = starts[s]!; k < starts[s + 1]!; k++) {
        const r = byShard[k]!;
        let slot = scaleToRange(hashes[r]!, homeSlots);
        for (;;) {
          // Keep room for this slot and the empty one after it.
          if ((slot + 2) * SLOT_WORDS > region.length) region = grow(region);
          if (region[slot * SLOT_WORDS + 2] === EMPTY_ROW) break;
          slot++;
        }
        region[slot * SLOT_WORDS] = keys[2 * r]!;
        region[slot * SLOT_WORDS + 1] = keys[2 * r + 1]!;
        region[slot * SLOT_WORDS + 2] = this.#firstSeenOrder ? r : k;
        if (slot > last) last = slot;
      }
      const slots = last + 2; // one empty slot ends every probe
      const bytes = Buffer.from(region.buffer, 0, slots * SLOT_BYTES);
      if ((firstSlot + slots) * SLOT_BYTES > MAX_INDEX_BYTES) throw new ParamsError('PARAMS_BAD_INPUT', `${rows} keys need an index above 4 GiB; split the table`);
      writeAll(this.#fd, bytes, indexOffset + firstSlot * SLOT_BYTES);
      crc = this.#checksum(bytes, crc);
      shards.push({ firstSlot, homeSlots, keyCount });
      firstSlot += slots;
    }
    return { shards, totalSlots: firstSlot, crc };
  }

  #rereadValuesCrc(valuesBytes: number): number {
    let crc = 0;
    for (let done = 0; done < valuesBytes; ) {
      const chunk = this.#batch.subarray(0, Math.min(this.#batch.length, valuesBytes - done));
      readAll(this.#fd, chunk, this.#valuesOffset + done);
      crc = this.#checksum(chunk, crc);
      done += chunk.length;
    }
    return crc;
  }
}

/** Fills `into` from `position` (readSync may read less than asked). */
function readAll(fd: number, into: Uint8Array, position: number): void {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) throw new ParamsError('INTERNAL', 'table file shorter than the rows written');
    done += n;
  }
}

/** Writes all of `data` at `position` (writeSync may write less than asked). */
export function writeAll(fd: number, data: Uint8Array, position: number): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, position + done);
}

/** The region with twice the overflow room, new slots empty. */
function grow(region: Uint32Array): Uint32Array {
  const bigger = new Uint32Array(region.length * 2);
  bigger.set(region);
  for (let i = region.length + 2; i < bigger.length; i += SLOT_WORDS) bigger[i] = EMPTY_ROW;
  return bigger;
}
