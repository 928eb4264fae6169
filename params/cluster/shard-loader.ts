import { open, rm } from 'node:fs/promises';
import { openStore, StoreError, type OpenStoreOptions } from '../../store/index.js';
import { ParamsError } from '../params-error.js';
import { parseTableLocation } from '../table-destination.js';
import { EMPTY_ROW, HEADER_BYTES, MAX_SHARDS, SLOT_BYTES, decodeHeader, valuesOffsetFor, type ShardEntry, type TableHeader } from '../table-format.js';
import { TableWriter } from '../table-writer.js';
import { inParallel } from '../../async/index.js';

/** Ranged reads of the source are at most this long: one GET each, retried whole by the store client. */
const MAX_READ_BYTES = 16 * 1024 * 1024;
/**
 * Rows closer than this are fetched in one read, the gap included: a ranged GET costs a
 * round trip (about a millisecond on a LAN), which 128 KiB at store speed also costs.
 * This is the only slack a load reads beyond its shards' rows: at most this much per gap
 * between two runs of wanted rows.
 */
export const ROW_GAP_BYTES = 128 * 1024;
/** Ranged reads in flight at once, as the table loader's store reads use. */
const READS_IN_FLIGHT = 8;

/** A table file at its source, read by byte ranges. */
export interface RangedTable {
  readonly header: TableHeader;
  readonly shards: readonly ShardEntry[];
  /** The ETag of a store object (every later read is pinned to it); undefined for a local file. */
  readonly etag: string | undefined;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Opens the table at `source` (a path, file:// or s3:// URL) for ranged reads and reads
 * its header and shard directory (the first page or so). With `etag`, a store object
 * must still be that version (STORE_PRECONDITION_FAILED otherwise).
 */
export async function openRangedTable(source: string, storeOptions: OpenStoreOptions, etag?: string): Promise<RangedTable> {
  const location = parseTableLocation(source);
  let size: number;
  let read: (offset: number, length: number) => Promise<Buffer>;
  let close = async () => {};
  let seenEtag: string | undefined;
  if (location.kind === 'local') {
    let handle;
    try {
      handle = await open(location.path, 'r');
    } catch (err) {
      throw new ParamsError('PARAMS_BAD_INPUT', `cannot read table ${location.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
    }
    const file = handle;
    size = (await file.stat()).size;
    read = async (offset, length) => {
      const out = Buffer.allocUnsafe(length);
      const { bytesRead } = await file.read(out, 0, length, offset);
      if (bytesRead !== length) throw new ParamsError('PARAMS_BAD_TABLE', `${source}: short read at ${offset}`);
      return out;
    };
    close = () => file.close();
  } else {
    const store = openStore(location.storeUrl, storeOptions);
    const info = await store.head(location.key);
    if (!info) throw new StoreError('STORE_NOT_FOUND', `${source}: no such object`);
    if (etag !== undefined && info.etag !== etag) throw new StoreError('STORE_PRECONDITION_FAILED', `${source} changed in the store since the switch began (ETag ${info.etag}, expected ${etag})`);
    size = info.size;
    seenEtag = info.etag;
    read = async (offset, length) => {
      const { body } = await store.getRange(location.key, offset, length, { ifMatch: info.etag, objectSize: info.size });
      if (body.length !== length) throw new StoreError('STORE_IO', `${source}: asked for ${length} bytes at ${offset}, got ${body.length}`);
      return body;
    };
  }
  try {
    const first = await read(0, Math.min(size, HEADER_BYTES));
    const shardCount = first.length >= HEADER_BYTES ? Math.min(Math.max(first.readUInt32LE(24), 1), MAX_SHARDS) : 1;
    const page = await read(0, Math.min(size, valuesOffsetFor(shardCount)));
    const { header, shards } = decodeHeader(page, size, source);
    return { header, shards, etag: seenEtag, read, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface ShardLoadReport {
  readonly keys: number;
  /** Bytes read from the source: header, the index regions of the shards and the rows' ranges. */
  readonly bytesRead: number;
}

/**
 * Writes to `dest` a table of the same dim, shard count and seed as `table` holding only
 * the keys of `wanted` shards (the others are empty), so that every key lands in the same
 * shard and a lookup of a held key answers exactly what the whole table would.
 *
 * Reads only byte ranges: the index regions of the wanted shards, then the rows their
 * slots name, rows closer than ROW_GAP_BYTES fetched together. The table writer groups
 * rows by shard, so the rows of a run of adjacent wanted shards are one contiguous range
 * (read in MAX_READ_BYTES pieces); tables written before it did (rows in first-seen
 * order) load the same way, reading more of the values region.
 */
export async function writeShardTable(table: RangedTable, wanted: readonly number[], dest: string): Promise<ShardLoadReport> {
  const { header, shards } = table;
  const totalSlots = header.indexBytes / SLOT_BYTES;
  const endSlot = (s: number) => (s + 1 < shards.length ? shards[s + 1]!.firstSlot : totalSlots);
  let bytesRead = valuesOffsetFor(header.shardCount);
  // 1: index regions, adjacent wanted shards read as one range.
  const sorted = [...new Set(wanted)].sort((a, b) => a - b);
  const entries: number[] = []; // lo, hi, row triples
  const runs: Array<[number, number]> = [];
  for (const s of sorted) {
    const last = runs[runs.length - 1];
    if (last && last[1] === s) last[1] = s + 1;
    else runs.push([s, s + 1]);
  }
  for (const [from, to] of runs) {
    const first = shards[from]!.firstSlot;
    const slots = endSlot(to - 1) - first;
    for (let at = 0; at < slots; ) {
      const count = Math.min(slots - at, Math.floor(MAX_READ_BYTES / SLOT_BYTES));
      const bytes = await table.read(header.indexOffset + (first + at) * SLOT_BYTES, count * SLOT_BYTES);
      bytesRead += bytes.length;
      for (let p = 0; p < bytes.length; p += SLOT_BYTES) {
        const row = bytes.readUInt32LE(p + 8);
        if (row !== EMPTY_ROW) entries.push(bytes.readUInt32LE(p), bytes.readUInt32LE(p + 4), row);
      }
      at += count;
    }
  }
  const keys = entries.length / 3;
  // 2: rows in file order, grouped into reads.
  // (row << 32 | entry) sorted as integers: a native sort, where a comparator over 1M
  // entries held the event loop for seconds on a busy machine.
  const packed = new BigUint64Array(keys);
  for (let i = 0; i < keys; i++) packed[i] = (BigInt(entries[3 * i + 2]!) << 32n) | BigInt(i);
  packed.sort();
  const order = Array.from(packed, (p) => Number(p & 0xffffffffn));
  const rowBytes = header.dim * 4;
  const reads: Array<{ offset: number; length: number; members: number[] }> = [];
  for (const i of order) {
    const offset = header.valuesOffset + entries[3 * i + 2]! * rowBytes;
    const last = reads[reads.length - 1];
    if (last && offset - (last.offset + last.length) <= ROW_GAP_BYTES && offset + rowBytes - last.offset <= MAX_READ_BYTES) {
      last.length = offset + rowBytes - last.offset;
      last.members.push(i);
    } else {
      reads.push({ offset, length: rowBytes, members: [i] });
    }
  }
  const writer = new TableWriter(dest, { dim: header.dim, shards: header.shardCount, seed: header.seed, maxRecords: keys });
  try {
    // A failed read stops the others before the writer is aborted below.
    await inParallel(reads, READS_IN_FLIGHT, async (r) => {
      const bytes = await table.read(r.offset, r.length);
      bytesRead += bytes.length;
      for (const i of r.members) {
        writer.add(entries[3 * i]!, entries[3 * i + 1]!, bytes, header.valuesOffset + entries[3 * i + 2]! * rowBytes - r.offset);
      }
    });
    writer.finish();
  } catch (err) {
    writer.abort();
    await rm(dest, { force: true });
    throw err;
  }
  return { keys, bytesRead };
}
