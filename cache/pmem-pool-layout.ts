import { blockChecksum } from './checksum.js';

/**
 * On-media layout of a pmem pool file (all integers little-endian):
 *
 *   [0, 4096)            header: magic "STRPOOL1", version, block size, slot count, CRC
 *   [4096, dataStart)    slot table: one 64-byte record per slot, padded to a page
 *   [dataStart, end)     data: slot i at dataStart + i × blockSize
 *
 * A record says which block a slot holds: a state word (SLOT_VALID or 0 = free), the
 * data length and CRC, a sequence number (higher = written later), the SHA-256 of the
 * block id, and a CRC of the record itself, so a record torn by a crash is detected.
 */
export const POOL_MAGIC = Buffer.from('STRPOOL1', 'latin1');
/** Version 2: checksums are CRC-32C (version 1 pools, with CRC-32, are re-initialised at open). */
export const POOL_VERSION = 2;
/** The header gets a page of its own so flushing it never touches slot records. */
export const HEADER_BYTES = 4096;
/** 60 bytes of fields rounded to 64: records never straddle a cache line or a page. */
export const RECORD_BYTES = 64;
/** "SLOT" as a little-endian uint32: a slot whose record starts with it may hold a block. */
export const SLOT_VALID = 0x544f4c53;
/** Data regions start on this boundary (the page size of x86-64 and of DAX mappings). */
export const PAGE_BYTES = 4096;

export interface PoolGeometry {
  readonly blockSize: number;
  readonly slotCount: number;
  readonly tableBytes: number;
  readonly dataStart: number;
  readonly fileBytes: number;
}

export function poolGeometry(blockSize: number, slotCount: number): PoolGeometry {
  const tableBytes = roundUp(slotCount * RECORD_BYTES, PAGE_BYTES);
  const dataStart = HEADER_BYTES + tableBytes;
  return { blockSize, slotCount, tableBytes, dataStart, fileBytes: dataStart + slotCount * blockSize };
}

export function writePoolHeader(target: Buffer, geometry: PoolGeometry): void {
  target.fill(0, 0, HEADER_BYTES);
  POOL_MAGIC.copy(target, 0);
  target.writeUInt32LE(POOL_VERSION, 8);
  target.writeUInt32LE(geometry.blockSize, 12);
  target.writeUInt32LE(geometry.slotCount, 16);
  target.writeUInt32LE(blockChecksum(target.subarray(0, 20)), 20);
}

/** Block size and slot count from a valid header, else `undefined`. */
export function readPoolHeader(source: Buffer): { blockSize: number; slotCount: number } | undefined {
  if (source.length < HEADER_BYTES || !source.subarray(0, 8).equals(POOL_MAGIC)) return undefined;
  if (source.readUInt32LE(8) !== POOL_VERSION) return undefined;
  if (blockChecksum(source.subarray(0, 20)) !== source.readUInt32LE(20)) return undefined;
  return { blockSize: source.readUInt32LE(12), slotCount: source.readUInt32LE(16) };
}

export interface SlotRecord {
  readonly length: number;
  readonly checksum: number;
  readonly sequence: bigint;
  /** SHA-256 of the block id, hex. */
  readonly idHash: string;
}

/** Offset of slot `slot`'s record within the table (which starts at HEADER_BYTES). */
export function recordOffset(slot: number): number {
  return HEADER_BYTES + slot * RECORD_BYTES;
}

export function writeSlotRecord(table: Buffer, offset: number, record: SlotRecord): void {
  const view = table.subarray(offset, offset + RECORD_BYTES);
  view.fill(0);
  view.writeUInt32LE(record.length, 4);
  view.writeUInt32LE(record.checksum, 8);
  view.writeBigUInt64LE(record.sequence, 16);
  view.write(record.idHash, 24, 32, 'hex');
  view.writeUInt32LE(SLOT_VALID, 0);
  view.writeUInt32LE(blockChecksum(view.subarray(0, 56)), 56);
}

/** The record at `offset` if it is valid and its length fits `blockSize`, else `undefined` (free). */
export function readSlotRecord(table: Buffer, offset: number, blockSize: number): SlotRecord | undefined {
  const view = table.subarray(offset, offset + RECORD_BYTES);
  if (view.readUInt32LE(0) !== SLOT_VALID) return undefined;
  if (blockChecksum(view.subarray(0, 56)) !== view.readUInt32LE(56)) return undefined;
  const length = view.readUInt32LE(4);
  if (length > blockSize) return undefined;
  return {
    length,
    checksum: view.readUInt32LE(8),
    sequence: view.readBigUInt64LE(16),
    idHash: view.toString('hex', 24, 56),
  };
}

/** Marks a slot free (zeroes the state word, which invalidates the record). */
export function clearSlotRecord(table: Buffer, offset: number): void {
  table.writeUInt32LE(0, offset);
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}
