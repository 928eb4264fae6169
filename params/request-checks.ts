import { ParamsError } from './params-error.js';

/** What a request to the params service may carry: table names and key batches, checked. */

/** Most keys one mget or lookup may ask for: 800 KB of keys, an answer of 6.4 MB at dim 16. */
export const MAX_BATCH_KEYS = 100_000;

/** The longest table name; the API's request schemas and its early mget check the same bound. */
export const MAX_TABLE_NAME_CHARS = 128;

/** Table names: a file-name-safe word, so `<name>.v<version>.params` is a plain file name. */
const TABLE_NAME = new RegExp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,${MAX_TABLE_NAME_CHARS - 1}}$`);

/** Keys in a raw batch; PARAMS_BAD_KEYS or PARAMS_BATCH_TOO_LARGE when it cannot be one. */
export function batchSize(keys: Uint8Array | BigUint64Array): number {
  const bytes = keys.byteLength;
  if (bytes % 8 !== 0) throw new ParamsError('PARAMS_BAD_KEYS', `the body is ${bytes} bytes, not a multiple of 8 (one little-endian uint64 per key)`);
  const n = bytes / 8;
  if (n > MAX_BATCH_KEYS) throw new ParamsError('PARAMS_BATCH_TOO_LARGE', `${n} keys in one request; at most ${MAX_BATCH_KEYS}`);
  return n;
}

/** The keys as uint32 halves; typed-array views need 4-byte alignment, so a body at an odd offset is copied once. */
export function keyWords(keys: Uint8Array | BigUint64Array, n: number): Uint32Array {
  if (keys.byteOffset % 4 === 0) return new Uint32Array(keys.buffer, keys.byteOffset, n * 2);
  return new Uint32Array(new Uint8Array(keys.buffer, keys.byteOffset, keys.byteLength).slice().buffer);
}

export function checkName(name: string): void {
  if (!TABLE_NAME.test(name)) throw new ParamsError('PARAMS_BAD_INPUT', `table name "${name}" must be 1-${MAX_TABLE_NAME_CHARS} of A-Z a-z 0-9 _ . - starting with a letter or digit`);
}

const UINT64_MAX = 2n ** 64n - 1n;

/** A key as the JSON routes take it: a decimal string of a uint64. */
export function parseKey(text: string): bigint {
  if (typeof text !== 'string' || !/^[0-9]{1,20}$/.test(text)) throw new ParamsError('PARAMS_BAD_KEYS', `key ${JSON.stringify(text)} is not a decimal uint64`);
  const key = BigInt(text);
  if (key > UINT64_MAX) throw new ParamsError('PARAMS_BAD_KEYS', `key ${text} is above 2^64 - 1`);
  return key;
}
