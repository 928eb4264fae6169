import { keyHash, scaleToRange } from './key-hash.js';

/** Slots per key: load 0.5, short probes (the deletes of one delta, the keys of an overlay being folded). */
const SLOTS_PER_KEY = 2;
/** Any fixed seed: the set lives only in memory. */
const SEED = 0x6b657973;

/** A set of uint64 keys (as uint32 halves) in open addressing over a typed array, no per-key objects. */
export class KeySet {
  readonly #slots: Uint32Array;
  readonly #used: Uint8Array;
  readonly #count: number;

  /** `keys` holds little-endian uint64 keys back to back; or, a number: an empty set for up to that many keys. */
  constructor(keys: Buffer | number) {
    const n = typeof keys === 'number' ? keys : keys.length / 8;
    this.#count = Math.max(1, n * SLOTS_PER_KEY);
    this.#slots = new Uint32Array(this.#count * 2);
    this.#used = new Uint8Array(this.#count);
    if (typeof keys !== 'number') for (let i = 0; i < n; i++) this.add(keys.readUInt32LE(8 * i), keys.readUInt32LE(8 * i + 4));
  }

  has(lo: number, hi: number): boolean {
    let slot = scaleToRange(keyHash(lo, hi, SEED), this.#count);
    while (this.#used[slot] === 1) {
      if (this.#slots[2 * slot] === lo && this.#slots[2 * slot + 1] === hi) return true;
      slot = slot + 1 === this.#count ? 0 : slot + 1;
    }
    return false;
  }

  /** Adds a key (at most the capacity the set was made for); answers false when it was there already. */
  add(lo: number, hi: number): boolean {
    let slot = scaleToRange(keyHash(lo, hi, SEED), this.#count);
    while (this.#used[slot] === 1) {
      if (this.#slots[2 * slot] === lo && this.#slots[2 * slot + 1] === hi) return false;
      slot = slot + 1 === this.#count ? 0 : slot + 1;
    }
    this.#used[slot] = 1;
    this.#slots[2 * slot] = lo;
    this.#slots[2 * slot + 1] = hi;
    return true;
  }
}
