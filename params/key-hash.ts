/**
 * The hash that places a uint64 key in a shard and a slot. Both the builder and the
 * lookup call these, so they are the format: changing them is a new format version.
 *
 * A key is handled as two uint32 halves (`lo`, `hi`: its little-endian bytes 0-3 and
 * 4-7), which is how it sits in a request body read through a Uint32Array.
 */

/** MurmurHash3 x86_32 of the 8 key bytes with a 32-bit seed (public-domain algorithm). */
export function keyHash(lo: number, hi: number, seed: number): number {
  let h = seed | 0;
  let k = Math.imul(lo, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  k = Math.imul(hi, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  h ^= 8; // the input length, as murmur3's finaliser wants it
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * floor(h * n / 2^32) for a uint32 `h`, exactly, for any n below 2^37: maps a hash onto
 * [0, n) without a modulo and without powers of two. Split in 16-bit halves so that every
 * product stays below 2^53 and doubles compute it exactly.
 */
export function scaleToRange(h: number, n: number): number {
  return Math.floor(((h >>> 16) * n + Math.floor(((h & 0xffff) * n) / 65536)) / 65536);
}

/** The shard of a key hash: a second multiplicative mix, so shard and slot use independent bits. */
export function shardOf(h: number, shards: number): number {
  return scaleToRange(Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0, shards);
}
