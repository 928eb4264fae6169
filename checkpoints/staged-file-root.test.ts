import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StagedFile } from './staged-file.js';

// Mounts a small tmpfs to fill it: needs root, so it runs in the integration project.
const KiB = 1024;
const MiB = 1024 * KiB;

describe('StagedFile on a full file system', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-staged-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reports a full staging file system as CHECKPOINT_STAGING_FULL, also for a write behind the writer', async () => {
    const small = join(dir, 'small');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small]);
    try {
      const file = await StagedFile.create(join(small, 'big.data'));
      const chunk = randomBytes(128 * KiB);
      let failure: unknown;
      // Appends are answered before their spill: the spill that finds the disk full fails a later call.
      try {
        for (let offset = 0; offset < 4 * MiB; offset += chunk.length) await file.write(offset, chunk);
        await file.flush();
      } catch (err) {
        failure = err;
      }
      expect(failure).toMatchObject({ code: 'CHECKPOINT_STAGING_FULL', message: expect.stringContaining('no space left') });
      await file.close();
    } finally {
      execFileSync('umount', [small]);
    }
  });
});
