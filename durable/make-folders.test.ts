import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeFolders, makeFoldersSync } from './index.js';

describe('makeFolders', () => {
  let work: string;
  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-folders-'));
  });
  afterEach(() => rm(work, { recursive: true, force: true }));

  for (const [name, make] of [
    ['async', makeFolders],
    ['sync', async (path: string, mode?: number) => makeFoldersSync(path, mode)],
  ] as const) {
    it(`${name}: makes missing folders, accepts existing ones, refuses a file in the way`, async () => {
      await make(join(work, 'a/b/c'));
      expect((await stat(join(work, 'a/b/c'))).isDirectory()).toBe(true);
      await make(join(work, 'a/b/c')); // exists: fine
      await make(join(work, 'a/b/./c/')); // the same folder, spelt otherwise
      await Promise.all([1, 2, 3].map(() => make(join(work, 'x/y')))); // at once: fine
      await make(join(work, 'mode'), 0o700);
      expect((await stat(join(work, 'mode'))).mode & 0o777).toBe(0o700 & ~process.umask());
      await writeFile(join(work, 'file'), '');
      await expect(make(join(work, 'file'))).rejects.toMatchObject({ code: 'EEXIST' });
      await expect(make(join(work, 'file/under'))).rejects.toMatchObject({ code: 'ENOTDIR' });
    });

    it(`${name}: answers where mkdir says ENOENT inside an existing folder (Node's recursive mkdir loops there)`, async () => {
      await expect(make('/proc/strata-no-such-folder/x')).rejects.toMatchObject({ code: 'ENOENT' });
    });
  }
});
