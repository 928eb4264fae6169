import type { DeltaBody } from './delta-body.js';
import { KeySet } from './key-set.js';
import type { ServedTable } from './served-table.js';
import { TableWriter } from './table-writer.js';

/**
 * Writes `table`'s base rows with `delta` applied to a new table file at `temp` (same
 * dim, shards and seed): the copy-on-write path of a delta, without the addon or when a
 * table has no overlay yet and the delta is larger than one. The caller renames `temp`
 * into place, or removes it when this throws.
 */
export function writeRewritten(table: ServedTable, delta: DeltaBody, temp: string): void {
  const { header } = table;
  const writer = new TableWriter(temp, { dim: header.dim, shards: header.shardCount, seed: header.seed, maxRecords: header.keyCount + delta.upserts });
  try {
    const deleted = delta.deletes > 0 ? new KeySet(delta.deleteKeys) : undefined;
    table.forEachEntry((lo, hi, bytes, offset) => {
      if (!deleted?.has(lo, hi)) writer.add(lo, hi, bytes, offset);
    });
    const recordBytes = 8 + 4 * header.dim;
    for (let at = 0; at < delta.records.length; at += recordBytes) {
      writer.add(delta.records.readUInt32LE(at), delta.records.readUInt32LE(at + 4), delta.records, at + 8);
    }
    writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  }
}
