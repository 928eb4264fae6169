import { ParamsError } from './params-error.js';

/**
 * The body of `POST /v1/params/tables/:name/delta` (docs/PARAMS.md):
 *
 *   [0, 4)   magic "SPD1"
 *   [4, 8)   u32 dim (must equal the table's)
 *   [8, 16)  u64 upsert count U
 *   [16, 24) u64 delete count D
 *   then U records (u64 key, dim x float32), then D u64 keys; little-endian, nothing after.
 *
 * Deletes apply before upserts, so a key in both ends up present with the upserted values.
 */
export const DELTA_MAGIC = 'SPD1';
export const DELTA_HEADER_BYTES = 24;

export interface DeltaBody {
  readonly dim: number;
  readonly upserts: number;
  readonly deletes: number;
  /** The upsert records, `upserts` x (8 + 4*dim) bytes. */
  readonly records: Buffer;
  /** The deleted keys, `deletes` x 8 bytes. */
  readonly deleteKeys: Buffer;
}

export function decodeDelta(body: Buffer): DeltaBody {
  const bad = (why: string) => new ParamsError('PARAMS_BAD_DELTA', `delta body: ${why}`);
  if (body.length < DELTA_HEADER_BYTES) throw bad(`${body.length} bytes, shorter than its ${DELTA_HEADER_BYTES}-byte header`);
  if (body.toString('latin1', 0, 4) !== DELTA_MAGIC) throw bad(`does not start with "${DELTA_MAGIC}"`);
  const dim = body.readUInt32LE(4);
  const upserts = Number(body.readBigUInt64LE(8));
  const deletes = Number(body.readBigUInt64LE(16));
  if (dim < 1) throw bad('dim is 0');
  const recordsBytes = upserts * (8 + 4 * dim);
  const expected = DELTA_HEADER_BYTES + recordsBytes + deletes * 8;
  if (body.length !== expected) throw bad(`${body.length} bytes, but ${upserts} upserts and ${deletes} deletes of dim ${dim} make ${expected}`);
  return {
    dim,
    upserts,
    deletes,
    records: body.subarray(DELTA_HEADER_BYTES, DELTA_HEADER_BYTES + recordsBytes),
    deleteKeys: body.subarray(DELTA_HEADER_BYTES + recordsBytes),
  };
}

/** A zeroed delta body of `upserts` and `deletes` with its header written: records from DELTA_HEADER_BYTES, then the deleted keys. */
export function allocateDelta(dim: number, upserts: number, deletes: number): Buffer {
  const out = Buffer.alloc(DELTA_HEADER_BYTES + upserts * (8 + 4 * dim) + deletes * 8);
  out.write(DELTA_MAGIC, 0, 'latin1');
  out.writeUInt32LE(dim, 4);
  out.writeBigUInt64LE(BigInt(upserts), 8);
  out.writeBigUInt64LE(BigInt(deletes), 16);
  return out;
}

/** Builds a delta body from upserts (key, values) and deleted keys. */
export function encodeDelta(dim: number, upserts: ReadonlyArray<readonly [bigint, ArrayLike<number>]>, deletes: readonly bigint[]): Buffer {
  const recordBytes = 8 + 4 * dim;
  const out = allocateDelta(dim, upserts.length, deletes.length);
  let at = DELTA_HEADER_BYTES;
  for (const [key, values] of upserts) {
    if (values.length !== dim) throw new ParamsError('PARAMS_BAD_DELTA', `upsert of key ${key} has ${values.length} values, not ${dim}`);
    out.writeBigUInt64LE(key, at);
    for (let d = 0; d < dim; d++) out.writeFloatLE(values[d]!, at + 8 + 4 * d);
    at += recordBytes;
  }
  for (const key of deletes) {
    out.writeBigUInt64LE(key, at);
    at += 8;
  }
  return out;
}
