import { randomBytes } from 'node:crypto';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountPoint } from '../../fuse/index.js';
import { sh, shResult } from '../fixtures/shell.js';
import { cleanupDir, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const GiB = 1024 ** 3;
/** Past 4 GiB so 32-bit offset bugs anywhere in the read path show. */
const SPARSE_SIZE = 5 * GiB + 12345;
const MARKERS = [0, 2 * GiB - 7, 4 * GiB + 1, SPARSE_SIZE - 16];

describe('strata mount file:// (read path over a local directory)', () => {
  let source: string;
  let mountPoint: string;
  let daemon: StrataProcess;

  beforeAll(async () => {
    source = await tempDir('local-src');
    mountPoint = await tempDir('local-mnt');
    await mkdir(join(source, 'train/class_a'), { recursive: true });
    await mkdir(join(source, 'train/class_b'), { recursive: true });
    await mkdir(join(source, 'dir with space'), { recursive: true });
    await mkdir(join(source, 'only-folders/inner/deeper'), { recursive: true });
    await writeFile(join(source, 'only-folders/inner/deeper/leaf.txt'), 'leaf\n');
    await writeFile(join(source, 'hello.txt'), 'hello, strata\n');
    await writeFile(join(source, 'empty.bin'), Buffer.alloc(0));
    await writeFile(join(source, 'dir with space/a+b ü 漢字.txt'), 'unicode name\n');
    await writeFile(join(source, 'train/class_a/img1.bin'), randomBytes(300 * 1024));
    await writeFile(join(source, 'train/class_b/img2.bin'), randomBytes(77_777));
    await writeFile(join(source, 'big.bin'), randomBytes(20 * 1024 * 1024 + 13));
    const sparse = await open(join(source, 'sparse.bin'), 'w');
    await sparse.truncate(SPARSE_SIZE);
    for (const offset of MARKERS) await sparse.write(Buffer.from(`marker@${offset}`.padEnd(16, '.').slice(0, 16)), 0, 16, offset);
    await sparse.close();
    daemon = await startMount(`file://${source}`, mountPoint, ['--read-only', '--state-dir', `${mountPoint}-state`]);
  });

  afterAll(async () => {
    if (daemon) {
      const code = await daemon.stop('SIGTERM');
      expect(code).toBe(0);
      expect(await isMountPoint(mountPoint)).toBe(false);
    }
    await cleanupDir(mountPoint);
    await cleanupDir(source);
    await cleanupDir(`${mountPoint}-state`);
  });

  it('shows the same tree as the directory (find, ls -lR)', async () => {
    const expected = await sh('find . | LC_ALL=C sort', { cwd: source });
    const actual = await sh('find . | LC_ALL=C sort', { cwd: mountPoint });
    expect(actual).toBe(expected);
    expect(actual).toContain('./only-folders/inner/deeper/leaf.txt');
    const listing = await sh(`ls -lR ${JSON.stringify(mountPoint)}`);
    expect(listing).toContain('a+b ü 漢字.txt');
  });

  it('reports sizes and types with stat', async () => {
    const sizes = await sh(`stat -c '%n %s %F' hello.txt empty.bin big.bin sparse.bin train`, { cwd: mountPoint });
    expect(sizes.trim().split('\n')).toEqual([
      'hello.txt 14 regular file',
      'empty.bin 0 regular empty file',
      `big.bin ${20 * 1024 * 1024 + 13} regular file`,
      `sparse.bin ${SPARSE_SIZE} regular file`,
      'train 0 directory',
    ]);
  });

  it('returns exactly the stored bytes (sha256sum, cat)', async () => {
    const files = `hello.txt empty.bin big.bin train/class_a/img1.bin train/class_b/img2.bin 'dir with space/a+b ü 漢字.txt'`;
    expect(await sh(`sha256sum ${files}`, { cwd: mountPoint })).toBe(await sh(`sha256sum ${files}`, { cwd: source }));
    expect(await sh(`cat hello.txt`, { cwd: mountPoint })).toBe('hello, strata\n');
  });

  it('serves dd at any offset and block size, past 4 GiB too', async () => {
    for (const [bs, skip, count] of [[1, 12_345_678, 100], [4096, 17, 3], [1_000_003, 3, 5], [65536, 300, 100]] as const) {
      const cmd = (root: string) => `dd if=${JSON.stringify(join(root, 'big.bin'))} bs=${bs} skip=${skip} count=${count} status=none | sha256sum`;
      expect(await sh(cmd(mountPoint))).toBe(await sh(cmd(source)));
    }
    for (const offset of MARKERS) {
      const marker = await sh(`dd if=sparse.bin bs=1 skip=${offset} count=16 iflag=skip_bytes status=none`, { cwd: mountPoint });
      expect(marker).toBe(`marker@${offset}`.padEnd(16, '.').slice(0, 16));
    }
  });

  it('copies folders with cp -r', async () => {
    const target = await tempDir('local-copy');
    try {
      await sh(`cp -r ${JSON.stringify(join(mountPoint, 'train'))} ${JSON.stringify(target)}/`);
      expect(await shResult(`diff -r ${JSON.stringify(join(source, 'train'))} ${JSON.stringify(join(target, 'train'))}`)).toMatchObject({ code: 0 });
    } finally {
      await cleanupDir(target);
    }
  });

  it('refuses writes with EROFS when mounted --read-only, and answers missing paths clearly', async () => {
    const touch = await shResult('touch new-file', { cwd: mountPoint });
    expect(touch.code).not.toBe(0);
    expect(touch.stderr).toMatch(/Read-only file system/);
    const mkdirResult = await shResult('mkdir new-dir', { cwd: mountPoint });
    expect(mkdirResult.stderr).toMatch(/Read-only file system/);
    const missing = await shResult('cat does-not-exist', { cwd: mountPoint });
    expect(missing.stderr).toMatch(/No such file or directory/);
  });
});
