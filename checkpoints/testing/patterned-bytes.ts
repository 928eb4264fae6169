import { createHash } from 'node:crypto';

/**
 * Deterministic test bytes: byte i of stream `seed` is the same in every process, so a child
 * that is killed and the test that checks the store agree on the content without sharing it.
 */
export function patternedBytes(seed: number, offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) {
    const x = offset + i;
    out[i] = (x * 31 + (x >>> 8) * 7 + (x >>> 16) * 13 + seed * 101) & 0xff;
  }
  return out;
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
