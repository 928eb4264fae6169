import { crc32 } from 'node:zlib';
import { crc32c, crc32cRegion } from './crc32c.js';
import { ParamsError } from './params-error.js';

/**
 * The served table format, version 2 (docs/PARAMS.md documents it byte by byte). Version 1
 * is the same layout with CRC-32 (zlib) checksums instead of CRC-32C; it is still read.
 *
 *   [0, 128)                 header (fields below), little-endian
 *   [128, 128 + 16 * shards) shard directory: per shard u64 firstSlot, u32 homeSlots, u32 keyCount
 *   [valuesOffset, ...)      values: keyCount rows of dim float32, row r at valuesOffset + r * dim * 4;
 *                            the writer groups them by shard (shard 0's, then shard 1's, ...), but
 *                            readers reach rows only through the index and accept any order
 *                            (files written before the grouping are the same version)
 *   [indexOffset, ...)       index: totalSlots slots of 3 uint32 (key lo, key hi, row);
 *                            row 0xFFFFFFFF marks an empty slot, so every uint64 is a valid key.
 *                            A shard's region runs from its firstSlot to the next shard's; a key's
 *                            home slot is in the first homeSlots of it and probing goes forward
 *                            without wrapping: the region always ends with an empty slot.
 *
 * Values come before the index so the builder can stream rows out before it knows how
 * many distinct keys there are. Both regions start on a 4096-byte boundary so each can
 * be mapped on its own (mmap offsets are page multiples).
 */

export const MAGIC = 'STRATAPT';
/** The version the builder writes. */
export const FORMAT_VERSION = 2;
/** Versions this code serves: 1 differs only in its checksum function. */
export const READABLE_VERSIONS: readonly number[] = [1, 2];
export const HEADER_BYTES = 128;
export const SHARD_ENTRY_BYTES = 16;
/** Three uint32 per slot: key low half, key high half, row. */
export const SLOT_WORDS = 3;
export const SLOT_BYTES = SLOT_WORDS * 4;
/** The row value that marks an empty slot; rows are therefore below 2^32 - 1. */
export const EMPTY_ROW = 0xffffffff;
/** Page size the regions are aligned to (x86-64 and arm64 with 4 KiB pages; larger pages would need a new version). */
export const REGION_ALIGN = 4096;
/** Keys per home slot: linear probing at 0.8 averages about 3 slots per hit (one cache line, mostly) and 13 per miss; the index checksum at recovery reads 12/0.8 = 15 bytes per key. */
export const LOAD_FACTOR = 0.8;
/** Most values per float32 row; keeps a row under 256 KiB and a values chunk page-aligned (see valuesChunkShift). */
export const MAX_DIM = 65536;
/** Shards are a directory entry each in the header region; 4096 keeps that region at 64 KiB. */
export const MAX_SHARDS = 4096;
/** The seed the builder uses unless told otherwise; any uint32 works, it is stored in the header. */
export const DEFAULT_SEED = 0x5354_5241;
/** Node 20's largest Buffer is 4 GiB, so one mapping (the index) must stay below it. */
export const MAX_INDEX_BYTES = 2 ** 32 - REGION_ALIGN;

export interface ShardEntry {
  readonly firstSlot: number;
  /** Home slots: a key's probe starts at firstSlot + scaleToRange(hash, homeSlots). */
  readonly homeSlots: number;
  readonly keyCount: number;
}

/** A checksum over bytes, continuing an earlier value (0 to start). */
export type Checksum = (data: Uint8Array, crc?: number) => number;

/**
 * The checksum of a format version: CRC-32 (zlib) for version 1, CRC-32C from version 2.
 * `region`: for whole index or values regions, which may run on several threads.
 */
export function checksumFor(version: number, region = false): Checksum {
  if (version === 1) return (data, crc) => crc32(data, crc);
  return region ? crc32cRegion : crc32c;
}

export interface TableHeader {
  readonly version: number;
  readonly dim: number;
  readonly keyCount: number;
  readonly shardCount: number;
  readonly seed: number;
  readonly valuesOffset: number;
  readonly valuesBytes: number;
  readonly indexOffset: number;
  readonly indexBytes: number;
  readonly fileBytes: number;
  readonly indexCrc: number;
  readonly valuesCrc: number;
  readonly duplicates: number;
}

export function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Where the values start: after the header and directory, on a page. */
export function valuesOffsetFor(shards: number): number {
  return alignUp(HEADER_BYTES + SHARD_ENTRY_BYTES * shards, REGION_ALIGN);
}

/** Home slots of a shard of `keys` keys (its region adds the overflow past the last one). */
export function homeSlotsFor(keys: number): number {
  return Math.max(1, Math.ceil(keys / LOAD_FACTOR));
}

/**
 * Rows per values chunk as a power of two: chunks of 512 MiB to 1 GiB (each its own
 * mapping, below Node's 4 GiB Buffer limit) and at least 1024 rows, so that with
 * 4-byte floats every chunk starts on a 4096-byte page.
 */
export function valuesChunkShift(dim: number): number {
  const rowBytes = dim * 4;
  return Math.max(10, Math.floor(Math.log2(2 ** 30 / rowBytes)));
}

/** The header page of `h` (its `version` says which checksum seals it) and shard directory. */
export function encodeHeader(h: TableHeader, shards: readonly ShardEntry[]): Buffer {
  const out = Buffer.alloc(HEADER_BYTES + SHARD_ENTRY_BYTES * shards.length);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt32LE(h.version, 8);
  out.writeUInt32LE(h.dim, 12);
  out.writeBigUInt64LE(BigInt(h.keyCount), 16);
  out.writeUInt32LE(h.shardCount, 24);
  out.writeUInt32LE(SLOT_BYTES, 28);
  out.writeBigUInt64LE(BigInt(h.seed >>> 0), 32);
  out.writeBigUInt64LE(BigInt(h.valuesOffset), 40);
  out.writeBigUInt64LE(BigInt(h.valuesBytes), 48);
  out.writeBigUInt64LE(BigInt(h.indexOffset), 56);
  out.writeBigUInt64LE(BigInt(h.indexBytes), 64);
  out.writeBigUInt64LE(BigInt(h.fileBytes), 72);
  out.writeUInt32LE(h.indexCrc >>> 0, 80);
  out.writeUInt32LE(h.valuesCrc >>> 0, 84);
  out.writeBigUInt64LE(BigInt(h.duplicates), 88);
  shards.forEach((s, i) => {
    const at = HEADER_BYTES + SHARD_ENTRY_BYTES * i;
    out.writeBigUInt64LE(BigInt(s.firstSlot), at);
    out.writeUInt32LE(s.homeSlots, at + 8);
    out.writeUInt32LE(s.keyCount, at + 12);
  });
  out.writeUInt32LE(checksumFor(h.version)(out.subarray(0, 124)), 124);
  return out;
}

/** The shard directory bytes of an encoded header page (the index checksum starts with them). */
export function directoryBytes(page: Buffer, shards: number): Buffer {
  return page.subarray(HEADER_BYTES, HEADER_BYTES + SHARD_ENTRY_BYTES * shards);
}

/**
 * Reads and checks the header and directory of a table. `page` holds at least the first
 * `valuesOffsetFor(shards)` bytes (the first 128 are enough to learn `shards`).
 * `actualBytes` is the file's size. Throws PARAMS_BAD_TABLE naming the first problem.
 */
export function decodeHeader(page: Buffer, actualBytes: number, what: string): { header: TableHeader; shards: ShardEntry[] } {
  const bad = (why: string) => new ParamsError('PARAMS_BAD_TABLE', `${what}: ${why}`);
  if (page.length < HEADER_BYTES) throw bad(`only ${page.length} bytes, shorter than the ${HEADER_BYTES}-byte header`);
  if (page.toString('latin1', 0, 8) !== MAGIC) throw bad('not a Strata parameter table (bad magic)');
  const version = page.readUInt32LE(8);
  if (!READABLE_VERSIONS.includes(version)) throw bad(`format version ${version}; this Strata reads versions ${READABLE_VERSIONS.join(' and ')}`);
  if (page.readUInt32LE(124) !== checksumFor(version)(page.subarray(0, 124))) throw bad('header checksum mismatch');
  const num = (at: number) => Number(page.readBigUInt64LE(at));
  const header: TableHeader = {
    version,
    dim: page.readUInt32LE(12),
    keyCount: num(16),
    shardCount: page.readUInt32LE(24),
    seed: Number(page.readBigUInt64LE(32) & 0xffffffffn),
    valuesOffset: num(40),
    valuesBytes: num(48),
    indexOffset: num(56),
    indexBytes: num(64),
    fileBytes: num(72),
    indexCrc: page.readUInt32LE(80),
    valuesCrc: page.readUInt32LE(84),
    duplicates: num(88),
  };
  const { dim, keyCount, shardCount } = header;
  if (page.readUInt32LE(28) !== SLOT_BYTES) throw bad('unexpected slot size');
  if (dim < 1 || dim > MAX_DIM) throw bad(`dim ${dim} is outside 1..${MAX_DIM}`);
  if (shardCount < 1 || shardCount > MAX_SHARDS) throw bad(`shard count ${shardCount} is outside 1..${MAX_SHARDS}`);
  if (header.valuesOffset !== valuesOffsetFor(shardCount)) throw bad('values offset does not follow the directory');
  if (header.valuesBytes !== keyCount * dim * 4) throw bad('values size does not match keys x dim');
  if (header.indexOffset !== alignUp(header.valuesOffset + header.valuesBytes, REGION_ALIGN)) throw bad('index offset does not follow the values');
  if (header.fileBytes !== header.indexOffset + header.indexBytes) throw bad('file size in the header does not match its regions');
  if (actualBytes !== header.fileBytes) throw bad(`file is ${actualBytes} bytes, header says ${header.fileBytes} (truncated or padded)`);
  if (page.length < HEADER_BYTES + SHARD_ENTRY_BYTES * shardCount) throw bad('shard directory missing');
  const totalSlots = header.indexBytes / SLOT_BYTES;
  if (!Number.isInteger(totalSlots)) throw bad('index size is not a whole number of slots');
  const shards: ShardEntry[] = [];
  let keys = 0;
  for (let i = 0; i < shardCount; i++) {
    const at = HEADER_BYTES + SHARD_ENTRY_BYTES * i;
    const entry = { firstSlot: num(at), homeSlots: page.readUInt32LE(at + 8), keyCount: page.readUInt32LE(at + 12) };
    const end = i + 1 < shardCount ? num(at + SHARD_ENTRY_BYTES) : totalSlots;
    if (i === 0 && entry.firstSlot !== 0) throw bad('shard 0 does not start the index');
    // The region holds the home slots and every key, plus the empty slot that ends it.
    if (entry.homeSlots < 1 || end - entry.firstSlot <= Math.max(entry.homeSlots, entry.keyCount)) throw bad(`shard ${i} directory entry is inconsistent`);
    keys += entry.keyCount;
    shards.push(entry);
  }
  if (keys !== keyCount) throw bad('shard key counts do not add up to the key count');
  return { header, shards };
}
