import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { MAX_PART_BYTES, MAX_PARTS, partRange, partsOf } from './part-layout.js';
import { StagedFile } from './staged-file.js';
import { StagingSpace } from './staging-space.js';
import { UploadJournal } from './upload-journal.js';
import type { UploadRecord } from './upload-record.js';
import { realSleep } from './write-path-config.js';

const MiB = 1024 * 1024;
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'strata-ckpt-unit-'));
  dirs.push(d);
  return d;
}

describe('part layout', () => {
  it('cuts a file into contiguous parts, all full but the last', () => {
    const parts = partsOf(5 * MiB, 12 * MiB + 1);
    expect(parts.map((p) => [p.partNumber, p.start, p.end])).toEqual([
      [1, 0, 5 * MiB],
      [2, 5 * MiB, 10 * MiB],
      [3, 10 * MiB, 12 * MiB + 1],
    ]);
    expect(partsOf(5 * MiB, 0)).toEqual([]);
  });

  it('doubles the part size every 1,000 parts up to 512 MiB, so 10,000 parts of a 16 MiB base cover about 3 TiB', () => {
    expect(partRange(16 * MiB, 1000).end).toBe(partRange(16 * MiB, 1001).start);
    expect(partRange(16 * MiB, 1001).end - partRange(16 * MiB, 1001).start).toBe(32 * MiB);
    const last = partRange(16 * MiB, MAX_PARTS);
    expect(last.end - last.start).toBe(MAX_PART_BYTES);
    expect(last.end).toBe(1000 * MiB * (16 + 32 + 64 + 128 + 256 + 512 * 5));
    for (let n = 2; n <= MAX_PARTS; n += 997) expect(partRange(16 * MiB, n).start).toBe(partRange(16 * MiB, n - 1).end);
  });
});

describe('StagedFile', () => {
  it('buffers small appends, reads them back before and after a flush, and writes holes as zeros', async () => {
    const dir = await tempDir();
    const file = await StagedFile.create(join(dir, 'a.data'));
    await file.write(0, Buffer.from('hello '));
    await file.write(6, Buffer.from('world'));
    expect(await file.read(3, 6)).toEqual(Buffer.from('lo wor'));
    expect((await readFile(file.path)).length).toBe(0); // still buffered
    await file.write(20, Buffer.from('!'));
    expect(await file.read(0, 100)).toEqual(Buffer.concat([Buffer.from('hello world'), Buffer.alloc(9), Buffer.from('!')]));
    await file.write(0, Buffer.from('J'));
    await file.sync();
    expect(await readFile(file.path)).toEqual(Buffer.concat([Buffer.from('Jello world'), Buffer.alloc(9), Buffer.from('!')]));
    await file.truncate(5);
    expect(file.size).toBe(5);
    expect(await file.read(0, 100)).toEqual(Buffer.from('Jello'));
    await file.close();
  });
});

describe('StagingSpace', () => {
  it('lets a reservation wait for freed space, and refuses it with ENOSPC when none comes', async () => {
    const space = new StagingSpace({ limitBytes: 100, stallMs: 50, sleep: realSleep });
    await space.reserve(80);
    const waiting = space.reserve(40);
    space.free(30);
    await waiting;
    expect(space.usedBytes).toBe(90);
    await expect(space.reserve(20)).rejects.toMatchObject({ code: 'CHECKPOINT_STAGING_FULL', message: expect.stringContaining('no progress') });
    await expect(space.reserve(101)).rejects.toMatchObject({ code: 'CHECKPOINT_STAGING_FULL' });
  });

  it('waits as long as uploads make progress, logging the wait once, and fails at once when nothing can free space', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line).msg as string) });
    const space = new StagingSpace({ limitBytes: 100, stallMs: 60, sleep: realSleep, logger });
    await space.reserve(100);
    const waiting = space.reserve(10);
    // Progress every 30 ms for 150 ms: more than twice the stall time, and the write still waits.
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 30));
      space.progress();
    }
    space.free(10);
    await waiting;
    expect(lines).toEqual(['staging is full: writes wait for uploads to free space', 'staging has room again: writes go on']);
    await expect(space.reserve(1, () => false)).rejects.toMatchObject({ code: 'CHECKPOINT_STAGING_FULL', message: expect.stringContaining('files still open') });
  });
});

describe('UploadJournal', () => {
  const record = (id: string, size: number): UploadRecord => ({
    version: 1,
    id,
    storeId: 's',
    key: `k/${id}`,
    stagedFile: `/x/${id}.data`,
    size,
    partSizeBytes: 5 * MiB,
    parts: [],
    state: 'closed',
    order: [1, size],
    mtimeMs: 0,
  });

  it('keeps the newest contents of each record durably, coalescing queued writes, and removes them', async () => {
    const dir = await tempDir();
    const journal = await UploadJournal.open(dir, silentLogger());
    const writes = [1, 2, 3, 4, 5].map((n) => journal.write(record('aa', n)));
    await journal.write(record('bb', 7));
    await Promise.all(writes);
    expect((await journal.list()).map((r) => [r.id, r.size]).sort()).toEqual([
      ['aa', 5],
      ['bb', 7],
    ]);
    await journal.remove('aa');
    expect((await readdir(dir)).sort()).toEqual(['bb.json']);
  });

  it('skips unreadable records and deletes leftover temp files', async () => {
    const dir = await tempDir();
    const journal = await UploadJournal.open(dir, silentLogger());
    await journal.write(record('ok', 1));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'torn.json'), '{"version":1,"id":"to');
    await writeFile(join(dir, '.tmp-ok.json-1234'), 'partial');
    expect((await journal.list()).map((r) => r.id)).toEqual(['ok']);
    expect((await readdir(dir)).sort()).toEqual(['ok.json', 'torn.json']);
  });
});
