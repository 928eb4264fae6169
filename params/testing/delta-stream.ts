import { encodeDelta } from '../delta-body.js';
import { prng } from '../../test/fixtures/prng.js';

/**
 * A deterministic stream of deltas for crash tests, and what the table holds after any prefix
 * of it. Delta n upserts and deletes keys chosen by a PRNG seeded with n, and sets SEQUENCE_KEY
 * to n, so a table tells which prefix it holds.
 */
export const STREAM_DIM = 4;
/** The key whose first value is the number of the last delta in the table. */
export const SEQUENCE_KEY = 2n ** 64n - 1n;
/** Keys of the stream lie in [0, KEY_SPACE); the base table holds [0, BASE_KEYS). */
export const KEY_SPACE = 30_000;
export const BASE_KEYS = 5_000;
/** Changes per delta: 3,501 records, so about 19 deltas fill half a 64Ki-key overlay's log and compaction runs too. */
const UPSERTS = 3_000;
const DELETES = 500;

/** The base table's vector of a key. */
export function baseVector(key: number): number[] {
  return [0, key, 0.5, -key];
}

interface Change {
  readonly deletes: number[];
  readonly upserts: Array<readonly [number, number[]]>;
}

function change(n: number): Change {
  const next = prng(n * 7919 + 1);
  const deletes = Array.from({ length: DELETES }, () => Math.floor(next() * KEY_SPACE));
  const upserts = Array.from({ length: UPSERTS }, () => {
    const key = Math.floor(next() * KEY_SPACE);
    return [key, [n, key, next(), -n]] as readonly [number, number[]];
  });
  return { deletes, upserts };
}

/** Delta n of the stream as an SPD1 body. */
export function streamDelta(n: number): Buffer {
  const { deletes, upserts } = change(n);
  return encodeDelta(
    STREAM_DIM,
    [...upserts.map(([k, v]) => [BigInt(k), v] as const), [SEQUENCE_KEY, [n, 0, 0, 0]] as const],
    deletes.map(BigInt),
  );
}

/** The table after deltas 1..n, grown on demand: `at(n)` answers the vector of every key (undefined: absent). */
export class StreamModel {
  readonly #states: Array<Array<number[] | undefined>> = [];

  constructor() {
    this.#states.push(Array.from({ length: KEY_SPACE }, (_, k) => (k < BASE_KEYS ? baseVector(k) : undefined)));
  }

  at(n: number): ReadonlyArray<number[] | undefined> {
    while (this.#states.length <= n) {
      const m = this.#states.length;
      const state = [...this.#states[m - 1]!];
      const { deletes, upserts } = change(m);
      for (const k of deletes) state[k] = undefined;
      for (const [k, v] of upserts) state[k] = v.map((x) => Math.fround(x));
      this.#states.push(state);
    }
    return this.#states[n]!;
  }
}
