import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StagedFile } from './staged-file.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('StagedFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-staged-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads back appends written behind the writer at every moment, and syncs them all', async () => {
    // 128 KiB appends, as FUSE delivers them: buffers fill, spill in the background and are reused.
    const body = randomBytes(5 * MiB + 3 * KiB);
    const file = await StagedFile.create(join(dir, 'a.data'));
    const pending: Array<Promise<void>> = [];
    for (let offset = 0; offset < body.length; offset += 128 * KiB) {
      const chunk = Buffer.from(body.subarray(offset, offset + 128 * KiB));
      await file.write(offset, chunk);
      chunk.fill(0xee); // the caller reuses its buffer once the write resolved (the kernel's does)
      const end = offset + chunk.length;
      // Reads racing the spills: buffered, spilling and written bytes alike.
      const from = Math.max(0, end - 1536 * KiB);
      pending.push(file.read(from, end - from).then((got) => expect(got.equals(body.subarray(from, end))).toBe(true)));
    }
    await Promise.all(pending);
    expect(file.size).toBe(body.length);
    await file.sync();
    await file.close();
    expect((await readFile(join(dir, 'a.data'))).equals(body)).toBe(true);
  });

  it('mixes appends with writes elsewhere and truncation', async () => {
    const file = await StagedFile.create(join(dir, 'b.data'));
    await file.write(0, Buffer.alloc(1536 * KiB, 1)); // larger than a buffer: written directly
    await file.write(1536 * KiB, Buffer.alloc(700 * KiB, 2));
    await file.write(10, Buffer.from('middle')); // not at the end: buffered bytes are flushed first
    await file.truncate(2 * MiB);
    await file.write(2 * MiB, Buffer.from('end'));
    expect((await file.read(8, 10)).toString('latin1')).toBe('\x01\x01middle\x01\x01');
    expect((await file.read(2 * MiB - 2, 10)).toString('latin1')).toBe('\x02\x02end');
    await file.sync();
    await file.close();
    const reopened = await StagedFile.reopen(join(dir, 'b.data'));
    expect(reopened.size).toBe(2 * MiB + 3);
    expect((await reopened.read(2 * MiB, 3)).toString()).toBe('end');
    await reopened.close();
  });
});
