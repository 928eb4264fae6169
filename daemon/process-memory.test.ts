import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadMmapBinding } from '../native/index.js';
import { processMemory } from './process-memory.js';

const MiB = 1024 * 1024;

describe('processMemory', () => {
  it('leaves out shared memory mapped from tmpfs (a pmem pool), which the tier accounts for', async () => {
    const dir = await mkdtemp(join('/dev/shm', 'strata-process-memory-'));
    try {
      const fd = openSync(join(dir, 'pool'), 'w+');
      ftruncateSync(fd, 64 * MiB);
      const mapping = loadMmapBinding().map(fd, 0, 64 * MiB);
      closeSync(fd);
      const rssBefore = process.memoryUsage().rss;
      const countedBefore = processMemory().rssBytes;
      mapping.fill(7); // every page touched: resident, and shared with the file
      expect(process.memoryUsage().rss - rssBefore).toBeGreaterThanOrEqual(60 * MiB);
      expect(processMemory().rssBytes - countedBefore).toBeLessThan(16 * MiB);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
