import { DELTA_HEADER_BYTES, DELTA_MAGIC, type DeltaBody } from '../delta-body.js';
import { keyHash, shardOf } from '../key-hash.js';
import type { ServedTable } from '../served-table.js';
import { TableWriter } from '../table-writer.js';

/**
 * Rows of some shards as records: `(u64 key, dim x float32)` back to back, little-endian,
 * the builder's input format and a delta's upsert format. What a member sends a new
 * replica of its shards, and how deltas are cut per member.
 */

/** The shard of key (lo, hi) in a table of `shards` shards hashed with `seed`. */
export function shardOfKey(lo: number, hi: number, shards: number, seed: number): number {
  return shards === 1 ? 0 : shardOf(keyHash(lo, hi, seed), shards);
}

/** The records of `table`'s keys that fall in `wanted` shards, as it serves them (its in-place deltas included). */
export function recordsOfShards(table: ServedTable, wanted: ReadonlySet<number>): Buffer {
  const { dim, shardCount, seed } = table.header;
  const recordBytes = 8 + 4 * dim;
  const parts: Buffer[] = [];
  let current = Buffer.allocUnsafe(recordBytes * 4096);
  let at = 0;
  table.forEachLiveEntry((lo, hi, bytes, offset) => {
    if (!wanted.has(shardOfKey(lo, hi, shardCount, seed))) return;
    if (at + recordBytes > current.length) {
      parts.push(current.subarray(0, at));
      current = Buffer.allocUnsafe(current.length * 2);
      at = 0;
    }
    current.writeUInt32LE(lo >>> 0, at);
    current.writeUInt32LE(hi >>> 0, at + 4);
    bytes.copy(current, at + 8, offset, offset + dim * 4);
    at += recordBytes;
  });
  parts.push(current.subarray(0, at));
  return Buffer.concat(parts);
}

/** Writes a table of the given shape holding `records` (chunks of whole records) to `dest`. */
export function writeRecordsTable(dest: string, shape: { dim: number; shards: number; seed: number }, chunks: readonly Buffer[]): number {
  const recordBytes = 8 + 4 * shape.dim;
  const total = chunks.reduce((n, c) => n + c.length / recordBytes, 0);
  const writer = new TableWriter(dest, { dim: shape.dim, shards: shape.shards, seed: shape.seed, maxRecords: total });
  try {
    for (const chunk of chunks) {
      for (let at = 0; at < chunk.length; at += recordBytes) writer.add(chunk.readUInt32LE(at), chunk.readUInt32LE(at + 4), chunk, at + 8);
    }
    return writer.finish().keys;
  } catch (err) {
    writer.abort();
    throw err;
  }
}

/** The shards a delta's upserts and deletes touch. */
export function shardsTouched(delta: DeltaBody, shards: number, seed: number): number[] {
  const touched = new Set<number>();
  const recordBytes = 8 + 4 * delta.dim;
  for (let at = 0; at < delta.records.length; at += recordBytes) touched.add(shardOfKey(delta.records.readUInt32LE(at), delta.records.readUInt32LE(at + 4), shards, seed));
  for (let at = 0; at < delta.deleteKeys.length; at += 8) touched.add(shardOfKey(delta.deleteKeys.readUInt32LE(at), delta.deleteKeys.readUInt32LE(at + 4), shards, seed));
  return [...touched].sort((a, b) => a - b);
}

/** The part of a delta that falls in `wanted` shards, as a delta body of its own. */
export function deltaForShards(delta: DeltaBody, wanted: ReadonlySet<number>, shards: number, seed: number): Buffer {
  const recordBytes = 8 + 4 * delta.dim;
  const upserts: Buffer[] = [];
  const deletes: Buffer[] = [];
  for (let at = 0; at < delta.records.length; at += recordBytes) {
    if (wanted.has(shardOfKey(delta.records.readUInt32LE(at), delta.records.readUInt32LE(at + 4), shards, seed))) upserts.push(delta.records.subarray(at, at + recordBytes));
  }
  for (let at = 0; at < delta.deleteKeys.length; at += 8) {
    if (wanted.has(shardOfKey(delta.deleteKeys.readUInt32LE(at), delta.deleteKeys.readUInt32LE(at + 4), shards, seed))) deletes.push(delta.deleteKeys.subarray(at, at + 8));
  }
  const header = Buffer.alloc(DELTA_HEADER_BYTES);
  header.write(DELTA_MAGIC, 0, 'latin1');
  header.writeUInt32LE(delta.dim, 4);
  header.writeBigUInt64LE(BigInt(upserts.length), 8);
  header.writeBigUInt64LE(BigInt(deletes.length), 16);
  return Buffer.concat([header, ...upserts, ...deletes]);
}
