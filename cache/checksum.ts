import { crc32 } from 'node:zlib';

/**
 * Checksum of a block as stored in every tier: CRC-32 (IEEE) from Node's bundled zlib.
 * It needs no dependency, runs as native code with hardware carry-less multiply
 * (several GB/s per core, so a 4 MiB block costs about a millisecond or less), and
 * catches the torn writes and flipped bits a cache must detect. It is not a defence
 * against deliberate tampering, and need not be: tier files are as trusted as the process.
 */
export function blockChecksum(bytes: Uint8Array): number {
  return crc32(bytes) >>> 0;
}
