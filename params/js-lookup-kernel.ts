import { keyHash, scaleToRange, shardOf } from './key-hash.js';
import { EMPTY_ROW, SLOT_WORDS, type TableHeader } from './table-format.js';

/**
 * The JavaScript lookup kernel: the fallback when the addon is not built, and the
 * reference the native kernel is tested against (lookup-kernel.test.ts). Lookups touch only
 * typed arrays over the file's regions; no per-key objects.
 */

/** A table file's regions as typed arrays: the index, then the values in chunks. */
export interface JsRegions {
  readonly index: Uint32Array;
  readonly indexBytes: Buffer;
  readonly chunks: Uint32Array[];
  readonly chunkBytes: Buffer[];
}

/** What the kernel reads of one table. */
export interface JsTable {
  readonly header: TableHeader;
  /** First slot and home slots of each shard of the index. */
  readonly shardFirst: Float64Array;
  readonly shardSlots: Float64Array;
  /** log2 of the rows per values chunk. */
  readonly chunkShift: number;
  readonly regions: JsRegions;
}

/** Per-key working space of jsMgetRange, shared by every table of this thread (lookups are synchronous). */
let scratch = new Uint32Array(1024);
/**
 * Keys looked up together: the cache lines one block touches (an index and a values line
 * per key, 128 KiB) stay in L2 between the passes; 20,000 keys at once ran 40% slower.
 * A multiple of 32, so blocks write whole bitmap words.
 */
const BLOCK_KEYS = 1024;
/** Where jsMgetRange leaves the result of its cache-warming loads, so they are not dead code. */
let sink = 0;

/**
 * Looks up keys [from, to) of an n-key batch (uint32 halves, low first) and writes their
 * bitmap words and rows of the mget answer into `out`; answers how many were found.
 */
export function jsMgetRange(table: JsTable, keys: Uint32Array, n: number, from: number, to: number, out: Uint32Array): number {
  let found = 0;
  for (let start = from; start < to; start += BLOCK_KEYS) found += mgetBlock(table, keys, n, start, Math.min(to, start + BLOCK_KEYS), out);
  return found;
}

function mgetBlock(table: JsTable, keys: Uint32Array, n: number, from: number, to: number, out: Uint32Array): number {
  const dim = table.header.dim;
  const seed = table.header.seed;
  const shardCount = table.header.shardCount;
  const { index, chunks } = table.regions;
  const shardFirst = table.shardFirst;
  const shardSlots = table.shardSlots;
  const shift = table.chunkShift;
  const mask = 2 ** shift - 1;
  const count = to - from;
  if (scratch.length < count) scratch = new Uint32Array(Math.max(count, scratch.length * 2));
  const rows = scratch; // rows[i - from] for key i
  // Passes, each a short loop whose iterations do not depend on one another, so
  // the CPU overlaps the cache misses of many keys (one loop per key measured about
  // half as fast on a table much larger than the caches).
  // 1: the home slot of every key, and a first touch of it so its cache line is on the way.
  let touched = 0;
  for (let i = from; i < to; i++) {
    const h = keyHash(keys[2 * i]!, keys[2 * i + 1]!, seed);
    const s = shardCount === 1 ? 0 : shardOf(h, shardCount);
    const slot = shardFirst[s]! + scaleToRange(h, shardSlots[s]!);
    rows[i - from] = slot;
    touched ^= index[slot * SLOT_WORDS + 2]!;
  }
  // 2: probe the index; rows[i] becomes the key's row or EMPTY_ROW.
  for (let i = from; i < to; i++) {
    const lo = keys[2 * i]!;
    const hi = keys[2 * i + 1]!;
    let slot = rows[i - from]!;
    let row = EMPTY_ROW;
    for (;;) {
      const p = slot * SLOT_WORDS;
      const r = index[p + 2]!;
      if (r === EMPTY_ROW) break;
      if (index[p] === lo && index[p + 1] === hi) {
        row = r;
        break;
      }
      slot++; // never past the region: it ends with an empty slot (checked at open)
    }
    rows[i - from] = row;
  }
  // 3: touch every found row, then copy (the same trick as in 1: short loops overlap misses).
  for (let i = 0; i < count; i++) {
    const row = rows[i]!;
    if (row !== EMPTY_ROW) touched ^= chunks[row >>> shift]![(row & mask) * dim]!;
  }
  sink = touched; // keeps the touching loads from being optimised away
  // 4: bitmap and values.
  const bitmapWords = (n + 31) >>> 5;
  out.fill(0, from >>> 5, (to + 31) >>> 5);
  let found = 0;
  for (let i = from, o = bitmapWords + from * dim; i < to; i++, o += dim) {
    const row = rows[i - from]!;
    if (row === EMPTY_ROW) {
      for (let d = 0; d < dim; d++) out[o + d] = 0;
      continue;
    }
    found++;
    out[i >>> 5] |= 1 << (i & 31);
    const chunk = chunks[row >>> shift]!;
    const base = (row & mask) * dim;
    for (let d = 0; d < dim; d++) out[o + d] = chunk[base + d]!;
  }
  return found;
}

/** The typed arrays over a table's region Buffers (index first). */
export function jsRegions(buffers: Buffer[]): JsRegions {
  const [index, ...chunkBytes] = buffers;
  return { index: new Uint32Array(index!.buffer, index!.byteOffset, index!.length / 4), indexBytes: index!, chunks: chunkBytes.map((c) => new Uint32Array(c.buffer, c.byteOffset, c.length / 4)), chunkBytes };
}
