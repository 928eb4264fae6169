import { writeFile } from 'node:fs/promises';

/** Test helper: the deterministic vector of a key, so any answer can be checked without a copy of the input. */
export function vectorOf(key: bigint, dim: number, salt = 0): Float32Array {
  const v = new Float32Array(dim);
  const base = Number(key % 1_000_003n);
  for (let d = 0; d < dim; d++) v[d] = base + d / 16 + salt;
  return v;
}

/** Builder input bytes for `keys` (each with vectorOf(key, dim, salt)). */
export function encodeRecords(keys: readonly bigint[], dim: number, salt = 0): Buffer {
  const recordBytes = 8 + 4 * dim;
  const out = Buffer.alloc(keys.length * recordBytes);
  keys.forEach((key, i) => {
    out.writeBigUInt64LE(key, i * recordBytes);
    Buffer.from(vectorOf(key, dim, salt).buffer).copy(out, i * recordBytes + 8);
  });
  return out;
}

export async function writeRecords(path: string, keys: readonly bigint[], dim: number, salt = 0): Promise<void> {
  await writeFile(path, encodeRecords(keys, dim, salt));
}

/** Decodes an mget answer into per-key (found, vector). */
export function decodeAnswer(answer: Buffer, n: number, dim: number): Array<Float32Array | undefined> {
  const bitmapBytes = Math.ceil(n / 32) * 4;
  const aligned = Buffer.from(answer); // copy: Float32Array needs 4-byte alignment
  const out: Array<Float32Array | undefined> = [];
  for (let i = 0; i < n; i++) {
    const found = (aligned[i >> 3]! >> (i & 7)) & 1;
    out.push(found ? new Float32Array(aligned.buffer, aligned.byteOffset + bitmapBytes + i * dim * 4, dim) : undefined);
  }
  return out;
}

export function keysBody(keys: readonly bigint[]): Buffer {
  const out = Buffer.alloc(keys.length * 8);
  keys.forEach((k, i) => out.writeBigUInt64LE(k, i * 8));
  return out;
}
