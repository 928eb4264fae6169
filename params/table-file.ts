import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { lookupBinding } from './lookup-binding.js';
import { ParamsError } from './params-error.js';
import { EMPTY_ROW, HEADER_BYTES, MAX_SHARDS, checksumFor, valuesOffsetFor, type ShardEntry, type TableHeader } from './table-format.js';
import type { TableMapper } from './table-mapper.js';

/** Reads and checks of a table file's parts that opening it needs: the header page, the index checksum, shard ends. */

/** Probes run forward until an empty slot: the slot before each next shard (and the last) must be one. */
export function checkShardEnds(shards: readonly ShardEntry[], slotCount: number, rowAt: (slot: number) => number, bad: (why: string) => Error): void {
  for (let s = 0; s < shards.length; s++) {
    const end = s + 1 < shards.length ? shards[s + 1]!.firstSlot : slotCount;
    if (rowAt(end - 1) !== EMPTY_ROW) throw bad(`shard ${s} of the index does not end with an empty slot`);
  }
}

/** Checksums are computed over reads of this size: the buffer stays in L2 between read and CRC. */
const CRC_READ_BYTES = 1024 * 1024;

/**
 * The checksum of the index region. With the native CRC-32C (version 2 and the addon) it
 * runs over the mapping itself; otherwise over reads into one small buffer, which measured
 * 35 ms for a 150 MB index against 46 ms through a fresh mapping with zlib's CRC-32.
 */
export function indexChecksum(path: string, header: TableHeader, index: Buffer, mapping: TableMapper['kind']): number {
  if (mapping === 'read' || (header.version >= 2 && lookupBinding())) return checksumFor(header.version, true)(index);
  return fileChecksum(path, header.indexOffset, header.indexBytes, checksumFor(header.version));
}

export function fileChecksum(path: string, offset: number, length: number, checksum: (data: Uint8Array, crc?: number) => number): number {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.allocUnsafeSlow(Math.min(CRC_READ_BYTES, Math.max(1, length)));
    let crc = 0;
    for (let done = 0; done < length; ) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, length - done), offset + done);
      if (n === 0) throw new ParamsError('PARAMS_BAD_TABLE', `${path}: shorter than its header says`);
      crc = checksum(buffer.subarray(0, n), crc);
      done += n;
    }
    return crc;
  } finally {
    closeSync(fd);
  }
}

/** The header checksum of a header page: what ties an overlay file to its table file. */
export function headerTag(page: Buffer): number {
  return page.readUInt32LE(124);
}

/** The header and shard directory, read plainly (a few KiB), and the file's size. */
export function readHeaderPage(path: string): { page: Buffer; size: number } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new ParamsError('PARAMS_BAD_TABLE', `cannot open table file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, HEADER_BYTES));
    readSync(fd, head, 0, head.length, 0);
    const shards = head.length >= HEADER_BYTES ? head.readUInt32LE(24) : 1;
    const want = Math.min(size, valuesOffsetFor(Math.min(Math.max(shards, 1), MAX_SHARDS)));
    const page = Buffer.alloc(want);
    readSync(fd, page, 0, want, 0);
    return { page, size };
  } finally {
    closeSync(fd);
  }
}
