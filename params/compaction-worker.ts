import { parentPort, workerData } from 'node:worker_threads';
import { crc32cRegion } from './crc32c.js';
import { decodeDelta } from './delta-body.js';
import { ParamsError } from './params-error.js';
import { KeySet } from './key-set.js';
import { readOverlayLog, TOMBSTONE } from './overlay-format.js';
import { ServedTable } from './served-table.js';
import { defaultTableMapper } from './table-mapper.js';
import type { CompactionJob, CompactionResult } from './table-compactor.js';
import { TableWriter } from './table-writer.js';

/**
 * A compaction thread: writes the table `job.basePath` with the first `job.records` records
 * of its overlay folded in (and `job.extra`, a delta body, on top) as a new table file at
 * `job.temp`. Newest first: the extra delta, then the overlay's log backwards, then the base;
 * the first record seen of a key decides it (a tombstone drops it).
 */
const job = workerData as CompactionJob;
let reply: CompactionResult;
try {
  reply = compact(job);
} catch (err) {
  reply = { error: (err as Error).message, code: (err as { code?: string }).code };
}
parentPort!.postMessage(reply);

function compact(job: CompactionJob): CompactionResult {
  const base = ServedTable.open(job.basePath, defaultTableMapper(), { kernel: 'js', trusted: true, baseOnly: true });
  const log = job.overlayPath !== undefined && job.records > 0 ? readOverlayLog(job.overlayPath, 0, job.records) : undefined;
  if (log && crc32cRegion(log.bytes) !== job.logCrc) throw new ParamsError('PARAMS_BAD_TABLE', `${job.overlayPath}: overlay log checksum mismatch; the deltas stay where they are`);
  const extra = job.extra ? decodeDelta(Buffer.from(job.extra.buffer, job.extra.byteOffset, job.extra.byteLength)) : undefined;
  const { dim, shardCount, seed } = base.header;
  const seen = new KeySet(job.records + (extra ? extra.upserts + extra.deletes : 0));
  const writer = new TableWriter(job.temp, { dim, shards: shardCount, seed, maxRecords: base.header.keyCount + job.records + (extra?.upserts ?? 0) });
  try {
    if (extra) {
      // Within a delta, upserts come after its deletes, so they are newer.
      const recordBytes = 8 + 4 * dim;
      for (let i = extra.upserts - 1; i >= 0; i--) {
        const at = i * recordBytes;
        const lo = extra.records.readUInt32LE(at);
        const hi = extra.records.readUInt32LE(at + 4);
        if (seen.add(lo, hi)) writer.add(lo, hi, extra.records, at + 8);
      }
      for (let i = 0; i < extra.deletes; i++) seen.add(extra.deleteKeys.readUInt32LE(8 * i), extra.deleteKeys.readUInt32LE(8 * i + 4));
    }
    if (log) {
      const { bytes, recordBytes } = log;
      for (let at = (job.records - 1) * recordBytes; at >= 0; at -= recordBytes) {
        const lo = bytes.readUInt32LE(at);
        const hi = bytes.readUInt32LE(at + 4);
        if (seen.add(lo, hi) && (bytes.readUInt32LE(at + 8) & TOMBSTONE) === 0) writer.add(lo, hi, bytes, at + 16);
      }
    }
    base.forEachEntry((lo, hi, bytes, offset) => {
      if (!seen.has(lo, hi)) writer.add(lo, hi, bytes, offset);
    });
    const result = writer.finish();
    return { keys: result.keys, bytes: result.bytes };
  } catch (err) {
    writer.abort();
    throw err;
  } finally {
    base.close();
  }
}
