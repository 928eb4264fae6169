import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, ftruncateSync, openSync, readSync, rmSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { loadMmapBinding } from '../native/index.js';
import { syncDir, TEMP_PREFIX } from '../durable/index.js';
import { crc32c } from './crc32c.js';
import { allocateDelta, DELTA_HEADER_BYTES } from './delta-body.js';
import { KeySet } from './key-set.js';
import { ParamsError } from './params-error.js';
import { alignUp, REGION_ALIGN } from './table-format.js';
import { writeAll } from './table-writer.js';

/**
 * The overlay file of in-place deltas, `<table file>.overlay` (docs/PARAMS.md, "In-place
 * deltas", has it byte by byte; native/src/strata_overlay.c reads and writes it):
 *
 *   [0, 4096)       superblock, CRC-32C at 124; the published epoch (u32) at 2048
 *   [4096, 12288)   commit records, epoch e at 4096 + 4096 * (e & 1)
 *   [12288, 16384)  intent record
 *   [16384, ...)    a CRC-32C per block of 64 index slots
 *   index           2^k slots of (key lo, key hi, ref), page-aligned
 *   log             records (key lo, key hi, epoch | tombstone bit 31, prev ref, dim float32)
 *
 * A new overlay is all zeros but its superblock, commit record 0 and block checksums:
 * an index of zeros is an empty one.
 */
export const OVERLAY_SUFFIX = '.overlay';
const MAGIC = 'STRATAOV';
const VERSION = 1;
const HEAD_BYTES = 16384;
const COMMIT_AT = 4096;
const COMMIT_MAGIC = 0x434f5053; // "SPOC"
/** Where a commit record's own checksum sits (it covers the bytes before it). */
const COMMIT_CRC_AT = 48;
const BLOCK_SLOTS = 64;
const RECORD_HEAD_BYTES = 16;
/** The overlay keeps slots at most 7 in 10 in use (strata_overlay.c), so it is sized for that. */
const MAX_LOAD = 0.7;
/** The smallest overlay holds this many keys: 64Ki keys is an index of 1.5 MiB. */
const MIN_KEY_CAPACITY = 65_536;
/**
 * Keys an overlay holds at most, as a share of the base table's: 1 in 4, so a 10M-key table takes
 * 2.5M keys of deltas (compaction starts at half of that) before its overlay is full.
 */
const KEY_SHARE = 0.25;
/** Records per key of capacity: a key updated twice between compactions costs two records. */
export const RECORDS_PER_KEY = 2;

export interface OverlayLayout {
  readonly dim: number;
  readonly seed: number;
  /** Ties the overlay to one table file: the base's header checksum. */
  readonly baseTag: number;
  /** Keys of the base table: the table's key count at epoch 0. */
  readonly baseKeys: number;
  readonly keyCapacity: number;
  readonly slots: number;
  readonly recordCapacity: number;
  readonly sumsOffset: number;
  readonly indexOffset: number;
  readonly logOffset: number;
  readonly fileBytes: number;
}

/** The layout of a new overlay for a base table of `baseKeys` keys. */
export function overlayLayout(dim: number, baseKeys: number, baseTag: number): OverlayLayout {
  const keyCapacity = Math.max(MIN_KEY_CAPACITY, Math.ceil(baseKeys * KEY_SHARE));
  const slots = 2 ** Math.ceil(Math.log2(keyCapacity / MAX_LOAD));
  const recordCapacity = keyCapacity * RECORDS_PER_KEY;
  const sumsOffset = HEAD_BYTES;
  const indexOffset = alignUp(sumsOffset + (slots / BLOCK_SLOTS) * 4, REGION_ALIGN);
  const logOffset = alignUp(indexOffset + slots * 12, REGION_ALIGN);
  const fileBytes = logOffset + recordCapacity * (RECORD_HEAD_BYTES + 4 * dim);
  return { dim, seed: (baseTag ^ 0x4f56524c) >>> 0, baseTag: baseTag >>> 0, baseKeys, keyCapacity, slots, recordCapacity, sumsOffset, indexOffset, logOffset, fileBytes };
}

/** Bytes a new overlay allocates at once (head, checksums, index); the log is allocated per delta. */
export function overlayInitialBytes(layout: OverlayLayout): number {
  return layout.logOffset;
}

/**
 * Creates `<tablePath>.overlay` holding no delta: a temp file, sized (the log sparse), its
 * fixed part allocated so stores through the mapping never meet a full tmpfs, fsynced and
 * renamed into place. ENOSPC becomes PARAMS_NO_SPACE.
 */
export async function createOverlay(tablePath: string, layout: OverlayLayout): Promise<string> {
  const path = `${tablePath}${OVERLAY_SUFFIX}`;
  const temp = join(dirname(path), `${TEMP_PREFIX}${basename(path)}-${randomBytes(4).toString('hex')}`);
  const fd = openSync(temp, 'w+');
  try {
    ftruncateSync(fd, layout.fileBytes);
    loadMmapBinding().allocate(fd, overlayInitialBytes(layout));
    const head = Buffer.alloc(HEAD_BYTES);
    head.write(MAGIC, 0, 'latin1');
    head.writeUInt32LE(VERSION, 8);
    head.writeUInt32LE(layout.dim, 12);
    head.writeUInt32LE(layout.seed, 16);
    head.writeUInt32LE(layout.baseTag, 20);
    head.writeBigUInt64LE(BigInt(layout.slots), 24);
    head.writeBigUInt64LE(BigInt(layout.recordCapacity), 32);
    head.writeBigUInt64LE(BigInt(layout.sumsOffset), 40);
    head.writeBigUInt64LE(BigInt(layout.indexOffset), 48);
    head.writeBigUInt64LE(BigInt(layout.logOffset), 56);
    head.writeBigUInt64LE(BigInt(layout.fileBytes), 64);
    head.writeUInt32LE(crc32c(head.subarray(0, 124)), 124);
    // Commit record of epoch 0: no records, no slots used, the base's keys, the CRC of an empty log.
    head.writeUInt32LE(COMMIT_MAGIC, COMMIT_AT);
    head.writeBigUInt64LE(BigInt(layout.baseKeys), COMMIT_AT + 24);
    head.writeUInt32LE(crc32c(head.subarray(COMMIT_AT, COMMIT_AT + COMMIT_CRC_AT)), COMMIT_AT + COMMIT_CRC_AT);
    writeAll(fd, head, 0);
    const sums = Buffer.alloc((layout.slots / BLOCK_SLOTS) * 4);
    const emptyBlock = crc32c(Buffer.alloc(BLOCK_SLOTS * 12));
    for (let at = 0; at < sums.length; at += 4) sums.writeUInt32LE(emptyBlock, at);
    writeAll(fd, sums, layout.sumsOffset);
    fsyncSync(fd);
    closeSync(fd);
    await rename(temp, path);
    await syncDir(dirname(path));
    return path;
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // closed already
    }
    rmSync(temp, { force: true });
    const code = (err as { code?: string }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw new ParamsError('PARAMS_NO_SPACE', `no room for the overlay of ${basename(tablePath)} (${(overlayInitialBytes(layout) / 2 ** 20).toFixed(1)} MiB) on its tier; the served version is unchanged`, { cause: err });
    throw err;
  }
}

/** Records of an overlay's log, read from the file (records below the commit never change). */
export interface OverlayLog {
  readonly dim: number;
  readonly recordBytes: number;
  /** Records [from, to) back to back: key lo, key hi, epoch | TOMBSTONE, prev ref, dim float32. */
  readonly bytes: Buffer;
}

/** Bit 31 of a record's epoch word: the record deletes its key. */
export const TOMBSTONE = 0x80000000;

/** Reads records [from, to) of the overlay at `path`. */
export function readOverlayLog(path: string, from: number, to: number): OverlayLog {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(128);
    readFully(fd, head, 0);
    if (head.toString('latin1', 0, 8) !== MAGIC || head.readUInt32LE(124) !== crc32c(head.subarray(0, 124))) throw new ParamsError('PARAMS_BAD_TABLE', `${path}: not an overlay file`);
    const dim = head.readUInt32LE(12);
    const recordBytes = RECORD_HEAD_BYTES + 4 * dim;
    const logOffset = Number(head.readBigUInt64LE(56));
    const bytes = Buffer.allocUnsafeSlow((to - from) * recordBytes);
    readFully(fd, bytes, logOffset + from * recordBytes);
    return { dim, recordBytes, bytes };
  } finally {
    closeSync(fd);
  }
}

function readFully(fd: number, into: Buffer, position: number): void {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) throw new ParamsError('PARAMS_BAD_TABLE', 'overlay file shorter than its layout');
    done += n;
  }
}

/**
 * The net effect of overlay records as one SPD1 delta body: each key once, with its newest
 * record (an upsert, or a delete for a tombstone). Used to carry the deltas committed while a
 * compaction ran over to the new version.
 */
export function foldToDelta(log: OverlayLog): Buffer {
  const { dim, recordBytes, bytes } = log;
  const count = bytes.length / recordBytes;
  const seen = new KeySet(count);
  const upserts: number[] = [];
  const deletes: number[] = [];
  for (let r = count - 1; r >= 0; r--) {
    const at = r * recordBytes;
    if (!seen.add(bytes.readUInt32LE(at), bytes.readUInt32LE(at + 4))) continue;
    ((bytes.readUInt32LE(at + 8) & TOMBSTONE) !== 0 ? deletes : upserts).push(at);
  }
  const upsertBytes = 8 + 4 * dim;
  const body = allocateDelta(dim, upserts.length, deletes.length);
  let out = DELTA_HEADER_BYTES;
  for (const at of upserts) {
    bytes.copy(body, out, at, at + 8);
    bytes.copy(body, out + 8, at + RECORD_HEAD_BYTES, at + recordBytes);
    out += upsertBytes;
  }
  for (const at of deletes) {
    bytes.copy(body, out, at, at + 8);
    out += 8;
  }
  return body;
}
