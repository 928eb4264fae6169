import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32c, crc32cPortable } from './crc32c.js';
import { lookupBinding } from './lookup-binding.js';
import { mgetAnswerBytes, ServedTable } from './served-table.js';
import { MmapTableMapper } from './table-mapper.js';
import { TableWriter } from './table-writer.js';
import { decodeAnswer, encodeRecords, keysBody, vectorOf } from './testing/records.js';

const DIM = 7; // odd on purpose: rows are not a multiple of any vector width
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp('/dev/shm/params-kernel-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a table of `keys` with TableWriter directly (the builder always writes the current version). */
function writeTable(path: string, keys: readonly bigint[], options: { shards: number; version?: number }): void {
  const records = encodeRecords(keys, DIM);
  const writer = new TableWriter(path, { dim: DIM, shards: options.shards, maxRecords: keys.length, version: options.version });
  const recordBytes = 8 + 4 * DIM;
  for (let at = 0; at < records.length; at += recordBytes) writer.add(records.readUInt32LE(at), records.readUInt32LE(at + 4), records, at + 8);
  writer.finish();
}

function answer(table: ServedTable, keys: readonly bigint[], split?: number): Buffer {
  const body = keysBody(keys);
  const words = new Uint32Array(body.buffer, body.byteOffset, keys.length * 2);
  const out = Buffer.alloc(mgetAnswerBytes(keys.length, table.dim), 0xee); // garbage that must be overwritten
  const view = new Uint32Array(out.buffer, out.byteOffset, out.length / 4);
  if (split === undefined) table.mgetInto(words, keys.length, view);
  else for (let from = 0; from < keys.length; from += split) table.mgetRange(words, keys.length, from, Math.min(keys.length, from + split), view);
  return out;
}

describe('CRC-32C', () => {
  it('gives the check value and the same results natively and in JavaScript, continued or whole', () => {
    expect(crc32cPortable(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    // Sizes around the native code's 3 x 8 KiB stripes and odd alignments.
    for (const size of [0, 1, 7, 8, 4095, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 9, 200_003]) {
      const data = randomBytes(size + 3).subarray(3);
      expect(crc32c(data), `size ${size}`).toBe(crc32cPortable(data));
      const cut = size >> 1;
      expect(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut)))).toBe(crc32cPortable(data));
    }
  });

  it('is native here (the addon is built by npm install), so recovery and lookups use it', () => {
    expect(lookupBinding()).toBeDefined();
  });
});

describe('CRC-32C of a file range read with pread (crc32cOfFile)', () => {
  it('equals the CRC of the same bytes, from any offset, on 1-4 threads, continued or not, and fails past the end of the file', async () => {
    const binding = lookupBinding()!;
    // Past 4 MiB, so the range is split over threads.
    const data = randomBytes(9 * 1024 * 1024 + 12_345);
    const path = join(dir, 'crc-file.bin');
    await writeFile(path, data);
    const { openSync, closeSync } = await import('node:fs');
    const fd = openSync(path, 'r');
    try {
      for (const [offset, length] of [[0, data.length], [7, data.length - 7], [4096, 5 * 1024 * 1024 + 3], [100, 0], [1, 10]] as const) {
        for (const threads of [1, 2, 4]) {
          for (const crc of [0, 0xdeadbeef]) expect(binding.crc32cOfFile(fd, offset, length, crc, threads)).toBe(crc32c(data.subarray(offset, offset + length), crc));
        }
      }
      expect(() => binding.crc32cOfFile(fd, data.length - 10, 100, 0, 2)).toThrow(/read for a checksum failed/);
    } finally {
      closeSync(fd);
    }
  });
});

describe('lookup kernels', () => {
  const keys = Array.from({ length: 30_000 }, (_, i) => (BigInt(i) * 0x9e3779b97f4a7c15n) & (2n ** 64n - 1n));
  const misses = Array.from({ length: 3000 }, (_, i) => BigInt(i) * 2n + 1n);
  let path: string;
  beforeAll(() => {
    path = join(dir, 'k.params');
    writeTable(path, keys, { shards: 5 });
  });

  it('answer every batch byte for byte alike, hits and misses, whole or in ranges', () => {
    const native = ServedTable.open(path, new MmapTableMapper(), { verifyValues: true });
    const js = ServedTable.open(path, new MmapTableMapper(), { kernel: 'js' });
    expect(native.kernel).toBe('native');
    expect(js.kernel).toBe('js');
    const batch = [...keys.slice(0, 9000), ...misses, 0n, 2n ** 64n - 1n].sort(() => Math.random() - 0.5);
    const expected = answer(js, batch);
    expect(answer(native, batch).equals(expected)).toBe(true);
    expect(answer(native, batch, 1024).equals(expected)).toBe(true);
    // A mapping whose index is not populated ahead (the service's own when lookup threads answer) answers alike.
    const lazy = ServedTable.open(path, new MmapTableMapper(), { populate: false });
    expect(answer(lazy, batch).equals(expected)).toBe(true);
    lazy.close();
    expect(answer(js, batch, 96).equals(expected)).toBe(true);
    const decoded = decodeAnswer(expected, batch.length, DIM);
    const inTable = new Set(keys);
    batch.forEach((k, i) => (inTable.has(k) ? expect(decoded[i]).toEqual(vectorOf(k, DIM)) : expect(decoded[i]).toBeUndefined()));
    for (const n of [0, 1, 31, 33]) expect(answer(native, batch.slice(0, n)).equals(answer(js, batch.slice(0, n)))).toBe(true);
  });

  it('refuses arguments that do not fit instead of reading or writing outside them', () => {
    const native = lookupBinding()!;
    const table = ServedTable.open(path, new MmapTableMapper());
    const handle = native.table(Buffer.alloc(12 * 4), new Float64Array([0]), new Float64Array([2]), [], 10, DIM, 1, 0);
    const keysWords = new Uint32Array(2 * 40).fill(1);
    expect(() => native.mget(handle, keysWords, 40, 0, 40, new Uint32Array(10))).toThrow(/do not fit/);
    expect(() => native.mget(handle, keysWords, 40, 8, 40, new Uint32Array(2 + 40 * DIM))).toThrow(/do not fit/);
    expect(() => native.mget(handle, keysWords, 41, 0, 41, new Uint32Array(2 + 41 * DIM))).toThrow(/do not fit/);
    expect(() => native.table(Buffer.alloc(24), new Float64Array([0]), new Float64Array([5]), [], 10, DIM, 1, 0)).toThrow(/outside the index/);
    // An index of zeros has no empty slot to end a probe: the probe still stops at its end.
    expect(native.mget(handle, keysWords, 40, 0, 40, new Uint32Array(2 + 40 * DIM))).toBe(0);
    expect(table.keyCount).toBe(keys.length);
  });
});

describe('format versions', () => {
  it('reads version 1 tables (CRC-32) and writes version 2 (CRC-32C); other versions are refused', async () => {
    const some = Array.from({ length: 500 }, (_, i) => BigInt(i) * 31n);
    writeTable(join(dir, 'v1.params'), some, { shards: 2, version: 1 });
    writeTable(join(dir, 'v2.params'), some, { shards: 2 });
    const v1 = ServedTable.open(join(dir, 'v1.params'), new MmapTableMapper(), { verifyValues: true });
    const v2 = ServedTable.open(join(dir, 'v2.params'), new MmapTableMapper(), { verifyValues: true });
    expect([v1.header.version, v2.header.version]).toEqual([1, 2]);
    expect(v1.header.indexCrc).not.toBe(v2.header.indexCrc);
    expect(answer(v1, some).equals(answer(v2, some))).toBe(true);
    expect(() => writeTable(join(dir, 'v3.params'), some, { shards: 1, version: 3 })).toThrow(expect.objectContaining({ code: 'PARAMS_BAD_INPUT' }));
    const v3 = Buffer.from(await readFile(join(dir, 'v2.params')));
    v3.writeUInt32LE(3, 8);
    v3.writeUInt32LE(crc32c(v3.subarray(0, 124)), 124);
    await writeFile(join(dir, 'v3.params'), v3);
    expect(() => ServedTable.open(join(dir, 'v3.params'), new MmapTableMapper())).toThrow(expect.objectContaining({ code: 'PARAMS_BAD_TABLE', message: expect.stringContaining('format version 3') }));
  });
});
