import { blockChecksum } from './checksum.js';

/**
 * "STRBLK" + format version: the first bytes of every NVMe block file. Version 2 checksums with
 * CRC-32C; files of version 1 (CRC-32) no longer decode, so they are dropped as misses.
 */
const MAGIC = Buffer.from('STRBLK02', 'latin1');
/** magic (8) + id length, data length, data CRC, header CRC (4 × uint32 LE). */
export const FIXED_HEADER_BYTES = 24;

/** What the header of a block file says. */
export interface BlockFileHeader {
  readonly id: string;
  readonly dataLength: number;
  readonly checksum: number;
  /** Offset of the first data byte in the file. */
  readonly dataOffset: number;
}

/** Total file size of a block file holding `dataLength` bytes for `id`. */
export function blockFileSize(id: string, dataLength: number): number {
  return FIXED_HEADER_BYTES + Buffer.byteLength(id, 'utf8') + dataLength;
}

/**
 * The header of a block file: the magic, the sizes, the CRC of the data and a CRC of
 * the header itself (over the first 20 bytes and the id), followed by the block id in
 * UTF-8. The data follows the id.
 */
export function encodeBlockHeader(id: string, data: Buffer, checksum = blockChecksum(data)): Buffer {
  const idBytes = Buffer.from(id, 'utf8');
  const header = Buffer.alloc(FIXED_HEADER_BYTES + idBytes.length);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(idBytes.length, 8);
  header.writeUInt32LE(data.length, 12);
  header.writeUInt32LE(checksum, 16);
  idBytes.copy(header, FIXED_HEADER_BYTES);
  header.writeUInt32LE(headerChecksum(header), 20);
  return header;
}

/** Parses a header from the start of `file`; `undefined` if it is not a valid one. */
export function decodeBlockHeader(file: Buffer): BlockFileHeader | undefined {
  if (file.length < FIXED_HEADER_BYTES || !file.subarray(0, 8).equals(MAGIC)) return undefined;
  const idLength = file.readUInt32LE(8);
  if (file.length < FIXED_HEADER_BYTES + idLength) return undefined;
  const header = file.subarray(0, FIXED_HEADER_BYTES + idLength);
  if (headerChecksum(header) !== file.readUInt32LE(20)) return undefined;
  return {
    id: header.toString('utf8', FIXED_HEADER_BYTES),
    dataLength: file.readUInt32LE(12),
    checksum: file.readUInt32LE(16),
    dataOffset: FIXED_HEADER_BYTES + idLength,
  };
}

function headerChecksum(header: Buffer): number {
  const scratch = Buffer.concat([header.subarray(0, 20), header.subarray(FIXED_HEADER_BYTES)]);
  return blockChecksum(scratch);
}
