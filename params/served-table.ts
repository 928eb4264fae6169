import { closeSync, existsSync, openSync } from 'node:fs';
import { loadMmapBinding } from '../native/index.js';
import { lookupBinding, type LookupBinding, type NativeTableHandle } from './lookup-binding.js';
import { ParamsError } from './params-error.js';
import { crc32c, crc32cRegion, REGION_THREADS } from './crc32c.js';
import { decodeDelta } from './delta-body.js';
import { KeySet } from './key-set.js';
import { EMPTY_ROW, SLOT_BYTES, SLOT_WORDS, checksumFor, decodeHeader, directoryBytes, valuesChunkShift, type TableHeader } from './table-format.js';
import { jsMgetRange, jsRegions, type JsRegions, type JsTable } from './js-lookup-kernel.js';
import { checkShardEnds, headerTag, indexChecksum, readHeaderPage } from './table-file.js';
import type { FileRegion, TableMapper } from './table-mapper.js';
import { foldToDelta, OVERLAY_SUFFIX, readOverlayLog } from './overlay-format.js';
import { TableOverlay, type OverlayState } from './table-overlay.js';

export interface OpenTableOptions {
  /** Also check the values checksum (reads every value): on a first load, not on recovery. */
  readonly verifyValues?: boolean;
  /** Skip the index checksum: for a lookup thread opening a file the main thread just validated. */
  readonly trusted?: boolean;
  /**
   * Skip the index checksum of a file read whole and found intact earlier in this boot and
   * unchanged since (check-stamp.ts); unlike `trusted`, the opener is the overlay's writer.
   */
  readonly alreadyChecked?: boolean;
  /**
   * `native` (the default when the addon is built) or `js`: which lookup kernel answers.
   * Both give the same answers; the JavaScript one is the fallback and the reference.
   */
  readonly kernel?: 'native' | 'js';
  /** Open the base file alone, leaving its in-place deltas (overlay) aside: compaction folds them itself. */
  readonly baseOnly?: boolean;
  /**
   * Fill the index mapping's page tables when mapping it (default true): for a mapping lookups
   * are answered from. False where lookup threads, which map the file themselves, answer.
   */
  readonly populate?: boolean;
}

/** The size of the answer to an mget of `n` keys: bitmap padded to 4 bytes, then n rows. */
export function mgetAnswerBytes(n: number, dim: number): number {
  return ((n + 31) >>> 5) * 4 + n * dim * 4;
}

/**
 * One table file brought into memory (mapped, normally) and checked, ready for lookups.
 * Immutable: a new version is a new ServedTable. Lookups are synchronous and touch only
 * typed arrays over the file's regions; no per-key objects.
 */
export class ServedTable {
  readonly path: string;
  readonly header: TableHeader;
  readonly mapping: TableMapper['kind'];
  /** Which lookup kernel answers this table. */
  readonly kernel: 'native' | 'js';
  readonly #shardFirst: Float64Array;
  readonly #shardSlots: Float64Array;
  readonly #chunkShift: number;
  readonly #native: NativeKernel | undefined;
  /** The regions as Buffers: given at open, or mapped on first need when the addon mapped the file. */
  #regions: JsRegions | undefined;
  readonly #mapRegions: () => Buffer[];
  /** In-place deltas over this file, when it has any (native kernel only). */
  #overlay: TableOverlay | undefined;
  /** What the JavaScript kernel reads, made at its first lookup. */
  #jsTable: JsTable | undefined;
  #closed = false;

  private constructor(init: { path: string; header: TableHeader; mapping: TableMapper['kind']; first: Float64Array; homes: Float64Array; native?: NativeKernel; buffers?: Buffer[]; mapRegions: () => Buffer[] }) {
    this.path = init.path;
    this.header = init.header;
    this.mapping = init.mapping;
    this.#chunkShift = valuesChunkShift(init.header.dim);
    this.#shardFirst = init.first;
    this.#shardSlots = init.homes;
    this.#mapRegions = init.mapRegions;
    if (init.buffers) this.#regions = jsRegions(init.buffers);
    this.#native = init.native;
    this.kernel = this.#native ? 'native' : 'js';
  }

  /**
   * Opens and validates a table file: header fields and checksum, sizes, the shard
   * directory and the index checksum (and the values checksum with `verifyValues`).
   * Throws PARAMS_BAD_TABLE naming the problem.
   *
   * With the addon, a mmap mapper and format 2, the addon maps the file itself and no
   * Buffer stands for the regions until the JavaScript side needs one (forEachEntry):
   * 800 MB of Buffers made V8 run several collections "for external memory pressure",
   * tens of milliseconds of a recovery.
   */
  static open(path: string, mapper: TableMapper, options: OpenTableOptions = {}): ServedTable {
    const { page, size } = readHeaderPage(path);
    const { header, shards } = decodeHeader(page, size, path);
    const first = Float64Array.from(shards, (s) => s.firstSlot);
    const homes = Float64Array.from(shards, (s) => s.homeSlots);
    const rowBytes = header.dim * 4;
    const chunkRows = 2 ** valuesChunkShift(header.dim);
    const regions: FileRegion[] = [{ offset: header.indexOffset, length: header.indexBytes }];
    for (let row = 0; row < header.keyCount; row += chunkRows) {
      regions.push({ offset: header.valuesOffset + row * rowBytes, length: Math.min(chunkRows, header.keyCount - row) * rowBytes });
    }
    const mapRegions = () => mapper.mapRegions(path, () => regions).buffers;
    const binding = options.kernel === 'js' ? undefined : lookupBinding();
    const bad = (why: string) => new ParamsError('PARAMS_BAD_TABLE', `${path}: ${why}`);
    const slotCount = header.indexBytes / SLOT_BYTES;

    if (binding && mapper.kind === 'mmap' && header.version >= 2) {
      const fd = openSync(path, 'r');
      let handle: NativeTableHandle;
      let indexCrc: number | undefined;
      try {
        handle = binding.mapTable(fd, header.indexOffset, header.indexBytes, header.valuesOffset, header.valuesBytes, first, homes, header.dim, header.seed, header.keyCount, options.populate ?? true);
        // Read with pread, not through the new mapping: see crc32cOfFile in strata_lookup.c.
        if (!options.trusted && !options.alreadyChecked) indexCrc = binding.crc32cOfFile(fd, header.indexOffset, header.indexBytes, 0, REGION_THREADS);
      } catch (err) {
        throw new ParamsError('PARAMS_BAD_TABLE', `${path}: cannot map or read the table: ${(err as Error).message}`, { cause: err });
      } finally {
        closeSync(fd); // a mapping outlives its descriptor
      }
      if (indexCrc !== undefined && crc32c(directoryBytes(page, header.shardCount), indexCrc) !== header.indexCrc) {
        binding.unmapTable(handle);
        throw bad('index checksum mismatch');
      }
      checkShardEnds(shards, slotCount, (slot) => binding.slotRow(handle, slot), bad);
      if (options.verifyValues && binding.crc32cOf(handle, 1, 0, REGION_THREADS) !== header.valuesCrc) throw bad('values checksum mismatch');
      const table = new ServedTable({ path, header, mapping: mapper.kind, first, homes, native: { binding, handle, mapped: true }, mapRegions });
      if (!options.baseOnly && existsSync(path + OVERLAY_SUFFIX)) {
        try {
          table.attachOverlay(TableOverlay.open(path + OVERLAY_SUFFIX, binding, handle, headerTag(page), { writer: !options.trusted }));
        } catch (err) {
          table.close();
          throw err;
        }
      }
      return table;
    }
    if (!options.baseOnly && existsSync(path + OVERLAY_SUFFIX)) throw bad('it has in-place deltas (an overlay file), which only the native kernel serves; build the addon (npm install)');

    const buffers = mapRegions();
    const index = buffers[0]!;
    const checksum = checksumFor(header.version);
    if (!options.trusted && !options.alreadyChecked && checksum(directoryBytes(page, header.shardCount), indexChecksum(path, header, index, mapper.kind)) !== header.indexCrc) throw bad('index checksum mismatch');
    checkShardEnds(shards, slotCount, (slot) => index.readUInt32LE(slot * SLOT_BYTES + 8), bad);
    if (options.verifyValues) {
      let crc = 0;
      for (const chunk of buffers.slice(1)) crc = checksumFor(header.version, true)(chunk, crc);
      if (crc !== header.valuesCrc) throw bad('values checksum mismatch');
    }
    const native = binding && { binding, handle: binding.table(index, first, homes, buffers.slice(1), valuesChunkShift(header.dim), header.dim, header.seed, header.keyCount), mapped: false };
    return new ServedTable({ path, header, mapping: mapper.kind, first, homes, ...(native ? { native } : {}), buffers, mapRegions });
  }

  /**
   * Whether the values region still matches the header's values checksum: reads every value
   * (CRC-32C on the addon's threads where it mapped the file). A recovery checks the index
   * at once and this right after, before the table answers a lookup.
   */
  valuesIntact(): boolean {
    if (this.#native?.mapped) {
      // pread of the file rather than the mapping: lookups touch only the pages of the keys
      // they ask for, and a check through the mapping would touch every page of it first.
      const fd = openSync(this.path, 'r');
      try {
        return this.#native.binding.crc32cOfFile(fd, this.header.valuesOffset, this.header.valuesBytes, 0, REGION_THREADS) === this.header.valuesCrc;
      } finally {
        closeSync(fd);
      }
    }
    let crc = 0;
    for (const chunk of this.#js().chunkBytes) crc = checksumFor(this.header.version, true)(chunk, crc);
    return crc === this.header.valuesCrc;
  }

  /** The regions as typed arrays, for the JavaScript kernel and forEachEntry. */
  #js(): JsRegions {
    this.#regions ??= jsRegions(this.#mapRegions());
    return this.#regions;
  }

  /**
   * Serves the in-place deltas of `overlay` (this file's, mapped over the native handle)
   * from now on. Only the service's writer and a lookup thread's reopen call this.
   */
  attachOverlay(overlay: TableOverlay): void {
    if (!this.#native?.mapped) throw new ParamsError('INTERNAL', `${this.path}: in-place deltas need the addon's mapping`);
    this.#overlay?.close();
    this.#overlay = overlay;
  }

  /**
   * A lookup thread's view gains the overlay made beside its file since it was opened (the
   * table's first delta), as a reader: the base mapping stays, so its pages already touched
   * stay mapped (opening the file again would map and fault in the whole table once more).
   * False when there is no overlay file or one is attached already.
   */
  attachOverlayFile(): boolean {
    if (this.#overlay || !this.#native?.mapped || !existsSync(this.path + OVERLAY_SUFFIX)) return false;
    this.attachOverlay(TableOverlay.open(this.path + OVERLAY_SUFFIX, this.#native.binding, this.#native.handle, this.overlayTag, { writer: false }));
    return true;
  }

  /** The table's in-place deltas, if it has an overlay. */
  get overlay(): TableOverlay | undefined {
    return this.#overlay;
  }

  /** The native handle of the base mapping (in-place deltas need it), when the addon mapped the file. */
  get nativeHandle(): NativeTableHandle | undefined {
    return this.#native?.mapped ? this.#native.handle : undefined;
  }

  /** The tag an overlay of this file carries: the header checksum. */
  get overlayTag(): number {
    return headerTag(readHeaderPage(this.path).page);
  }

  get dim(): number {
    return this.header.dim;
  }

  /** Keys in the table: the base file's, with the in-place deltas' changes (the writer's count). */
  get keyCount(): number {
    return this.#overlay ? this.#overlay.state().liveKeys : this.header.keyCount;
  }

  /** The committed in-place state, when the table has an overlay. */
  overlayState(): OverlayState | undefined {
    return this.#overlay?.state();
  }

  /**
   * Looks up `n` keys given as uint32 halves (`keys[2i]` low, `keys[2i+1]` high) and
   * writes the mget answer into `out` from word 0: found-bitmap words, then n rows of dim
   * float32 (bit-exact copies; zeros for missing keys). `out` holds at least
   * mgetAnswerBytes(n, dim) / 4 words. Answers how many keys were found.
   */
  mgetInto(keys: Uint32Array, n: number, out: Uint32Array): number {
    return this.mgetRange(keys, n, 0, n, out);
  }

  /**
   * The part of mgetInto for keys [from, to) of an n-key batch: their bitmap words and
   * rows. `from` is a multiple of 32 (and `to` too, unless it is n), so that threads
   * answering different ranges of one batch write disjoint words.
   */
  mgetRange(keys: Uint32Array, n: number, from: number, to: number, out: Uint32Array): number {
    if (this.#closed) throw new ParamsError('INTERNAL', `${this.path}: lookup in a closed table version`);
    if (this.#native) return this.#native.binding.mget(this.#native.handle, keys, n, from, to, out, this.#overlay?.handle);
    this.#jsTable ??= { header: this.header, shardFirst: this.#shardFirst, shardSlots: this.#shardSlots, chunkShift: this.#chunkShift, regions: this.#js() };
    return jsMgetRange(this.#jsTable, keys, n, from, to, out);
  }

  /**
   * Releases the addon's mappings now instead of at a garbage collection, so a replaced
   * version's memory (on tmpfs: the unlinked file's pages) is freed at once. Only for a
   * version no lookup can reach any more; lookups after this throw. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#overlay?.close();
    if (this.#native) this.#native.binding.unmapTable(this.#native.handle);
    this.#regions = undefined;
    this.#jsTable = undefined;
  }

  /** Bytes of the table's regions in memory now: what the page cache holds of a mapped file. */
  residentBytes(): number {
    if (this.mapping === 'read') return this.header.fileBytes;
    if (this.#native?.mapped) return this.#native.binding.resident(this.#native.handle);
    const binding = loadMmapBinding();
    const { indexBytes, chunkBytes } = this.#js();
    let bytes = binding.resident(indexBytes);
    for (const chunk of chunkBytes) bytes += binding.resident(chunk);
    return bytes;
  }

  /**
   * The committed in-place deltas as one delta body (each key once, its newest change), or
   * undefined when the table has none. Applied to a copy of the base file, it gives that
   * copy the rows this table serves. PARAMS_BAD_TABLE when the overlay's log fails its checksum.
   */
  inPlaceDeltas(): Buffer | undefined {
    const overlay = this.#overlay;
    const state = overlay?.state();
    if (!overlay || !state || state.records === 0) return undefined;
    // Records below the committed count never change, so a delta being applied meanwhile does not disturb the read.
    const log = readOverlayLog(overlay.path, 0, state.records);
    if (crc32cRegion(log.bytes) !== state.logCrc) throw new ParamsError('PARAMS_BAD_TABLE', `${overlay.path}: overlay log checksum mismatch`);
    return foldToDelta(log);
  }

  /**
   * Calls `visit` for every key the table serves now with its values (`bytes` at `offset`,
   * dim x 4 bytes): the in-place deltas' upserts first, then the base file's rows they
   * neither replace nor delete. What a copy of the table's rows must hold.
   */
  forEachLiveEntry(visit: (lo: number, hi: number, bytes: Buffer, offset: number) => void): void {
    const folded = this.inPlaceDeltas();
    if (!folded) return this.forEachEntry(visit);
    const delta = decodeDelta(folded);
    const changed = new KeySet(delta.upserts + delta.deletes);
    const recordBytes = 8 + 4 * delta.dim;
    for (let at = 0; at < delta.records.length; at += recordBytes) {
      const lo = delta.records.readUInt32LE(at);
      const hi = delta.records.readUInt32LE(at + 4);
      changed.add(lo, hi);
      visit(lo, hi, delta.records, at + 8);
    }
    for (let at = 0; at < delta.deleteKeys.length; at += 8) changed.add(delta.deleteKeys.readUInt32LE(at), delta.deleteKeys.readUInt32LE(at + 4));
    this.forEachEntry((lo, hi, bytes, offset) => {
      if (!changed.has(lo, hi)) visit(lo, hi, bytes, offset);
    });
  }

  /**
   * Calls `visit` for every key of the base file with its row's values (`bytes` at `offset`,
   * dim x 4 bytes), in slot order. In-place deltas are not included (compaction folds them
   * itself); forEachLiveEntry includes them.
   */
  forEachEntry(visit: (lo: number, hi: number, bytes: Buffer, offset: number) => void): void {
    const { index, chunkBytes } = this.#js();
    const rowBytes = this.header.dim * 4;
    const shift = this.#chunkShift;
    const mask = 2 ** shift - 1;
    for (let p = 0; p < index.length; p += SLOT_WORDS) {
      const row = index[p + 2]!;
      if (row === EMPTY_ROW) continue;
      visit(index[p]!, index[p + 1]!, chunkBytes[row >>> shift]!, (row & mask) * rowBytes);
    }
  }
}

/** The addon's table handle; `mapped` when the addon made the mappings itself (mapTable). */
interface NativeKernel {
  readonly binding: LookupBinding;
  readonly handle: NativeTableHandle;
  readonly mapped: boolean;
}
