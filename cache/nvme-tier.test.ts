import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { putRecord } from './nvme-index-log.js';
import { NvmeTier } from './nvme-tier.js';

const logger = silentLogger();
const BLOCK = 64 * 1024;

describe('NvmeTier', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-nvme-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lays blocks out as <dir>/<2 hex>/<sha256>.blk and leaves no temporary files', async () => {
    const tier = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await tier.put('a', randomBytes(BLOCK));
    await tier.close();
    const subdirs = (await readdir(dir)).filter((name) => name !== 'index.log');
    expect(subdirs).toHaveLength(1);
    expect(subdirs[0]).toMatch(/^[0-9a-f]{2}$/);
    const files = await readdir(join(dir, subdirs[0]));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(new RegExp(`^${subdirs[0]}[0-9a-f]{62}\\.blk$`));
  });

  it('adopts block files the index missed (crash between rename and log append)', async () => {
    const bytes = randomBytes(BLOCK);
    const tier = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await tier.put('orphan', bytes);
    await tier.close();
    await writeFile(join(dir, 'index.log'), '');
    const after = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await after.scanned;
    expect(after.has('orphan')).toBe(true);
    expect((await after.get('orphan'))?.equals(bytes)).toBe(true);
    await after.close();
  });

  it('ignores a torn last index record', async () => {
    const tier = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    await tier.put('a', randomBytes(BLOCK));
    await tier.close();
    await writeFile(join(dir, 'index.log'), putRecord('a', { fileBytes: BLOCK + 27, checksum: 1 }).slice(0, 10), { flag: 'a' });
    const after = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: 0 }, logger);
    expect(after.has('a')).toBe(true);
    await after.close();
  });

  it('never fills the file system past its reserve', async () => {
    // A reserve larger than any disk: nothing may be written.
    const tier = await NvmeTier.open({ dir, capacityBytes: 1 << 30, reserveBytes: Number.MAX_SAFE_INTEGER }, logger);
    expect(await tier.put('a', randomBytes(BLOCK))).toBe(false);
    expect(tier.usedBytes).toBe(0);
    await tier.close();
  });

  it('reloads an index of 100,000 blocks in well under a second of CPU', async () => {
    const lines: string[] = [];
    for (let i = 0; i < 100_000; i += 1) {
      const id = JSON.stringify(['s3://bucket/prefix', `datasets/train/shard-${i}.tar`, `"${i.toString(16).padStart(32, '0')}"`, i % 64]);
      lines.push(putRecord(id, { fileBytes: 4 * 1024 * 1024 + 120, checksum: i }));
    }
    await writeFile(join(dir, 'index.log'), lines.join(''));
    // CPU time, not wall time: the reload's own cost, which other work on a busy machine
    // does not inflate (about 0.3 s of CPU on the development machine).
    const before = process.cpuUsage();
    const tier = await NvmeTier.open({ dir, capacityBytes: 1e15, reserveBytes: 0 }, logger);
    const used = process.cpuUsage(before);
    expect(tier.stats().blocks).toBe(100_000);
    expect((used.user + used.system) / 1000).toBeLessThan(1000);
    await tier.scanned;
    await tier.close();
  });
});
