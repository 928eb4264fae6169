import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountPoint } from '../../fuse/index.js';
import { sh, shResult } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, runStrata, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const MiB = 1024 * 1024;

async function metric(base: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

async function status(base: string): Promise<{ mount: { fuse: { path: string; passthrough: boolean; kernelMetadataSeconds: number; maxRequestBytes: number } } }> {
  const result = await runStrata(['status', '--json', '--api', base.replace('http://', '')]);
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout);
}

async function syncLink(base: string, name: string): Promise<void> {
  const job = (await (await fetch(`${base}/v1/links/${name}/sync`, { method: 'POST' })).json()) as { id: string };
  const done = (await (await fetch(`${base}/v1/jobs/${job.id}?waitMs=10000`)).json()) as { state: string };
  expect(done.state).toBe('done');
}

describe('native FUSE path (own /dev/fuse session, kernel caching, passthrough)', () => {
  let source: string;
  let mountPoint: string;
  let daemon: StrataProcess;
  let base: string;

  beforeAll(async () => {
    source = await tempDir('native-src');
    mountPoint = await tempDir('native-mnt');
    await mkdir(join(source, 'data'), { recursive: true });
    await writeFile(join(source, 'data/big.bin'), randomBytes(12 * MiB + 5));
    await writeFile(join(source, 'data/grow.txt'), 'small');
    // A long metadata TTL: only invalidations can make a change visible within the test.
    daemon = await startMount(`file://${source}`, mountPoint, ['--fuse', 'native', '--metadata-ttl', '60', '--state-dir', join(source, '..', `${mountPoint.split('/').pop()}-state`)]);
    base = apiUrlOf(daemon);
  });

  afterAll(async () => {
    if (daemon) {
      expect(await daemon.stop('SIGTERM')).toBe(0);
      expect(await isMountPoint(mountPoint)).toBe(false);
    }
    await cleanupDir(mountPoint);
    await cleanupDir(source);
  });

  it('says in strata status which path serves the mount', async () => {
    const { fuse } = (await status(base)).mount;
    expect(fuse).toEqual({ path: 'native', passthrough: true, kernelMetadataSeconds: 60, maxRequestBytes: MiB });
    expect(await sh(`node bin/strata-dev.js status --api ${base.replace('http://', '')} | head -1`)).toMatch(/native FUSE threads, passthrough on; 1\.00 MiB requests/);
  });

  it('hands an open of a whole local file to the kernel: exact bytes, no read reaches the daemon', async () => {
    const before = await metric(base, 'strata_fuse_passthrough_files_total');
    const readsBefore = await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}');
    expect(await sh(`sha256sum < ${join(mountPoint, 'data/big.bin')}`)).toBe(await sh(`sha256sum < ${join(source, 'data/big.bin')}`));
    expect(await sh(`dd if=${join(mountPoint, 'data/big.bin')} bs=1 skip=${12 * MiB} count=5 status=none | od -An -tx1`)).toBe(
      await sh(`dd if=${join(source, 'data/big.bin')} bs=1 skip=${12 * MiB} count=5 status=none | od -An -tx1`),
    );
    expect(await metric(base, 'strata_fuse_passthrough_files_total')).toBeGreaterThan(before);
    expect(await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}')).toBe(readsBefore);
  });

  it('writes in 1 MiB requests and reads the file back while it is staged or after', async () => {
    const writesBefore = await metric(base, 'strata_fuse_operation_seconds_count', '{op="write"}');
    await sh(`dd if=${join(source, 'data/big.bin')} of=${join(mountPoint, 'data/copy.bin')} bs=4M status=none`);
    // 12 MiB + 5 bytes: twelve 1 MiB requests and one of 5 bytes.
    expect((await metric(base, 'strata_fuse_operation_seconds_count', '{op="write"}')) - writesBefore).toBe(13);
    expect((await sh(`cmp ${join(mountPoint, 'data/copy.bin')} ${join(source, 'data/big.bin')} && echo same`)).trim()).toBe('same');
  });

  it('lets the kernel keep names and attributes for the TTL, and drops them at once on a link sync', async () => {
    const grow = join(mountPoint, 'data/grow.txt');
    const fresh = join(mountPoint, 'data/appears.txt');
    expect((await sh(`stat -c %s ${grow}`)).trim()).toBe('5');
    expect((await shResult(`stat ${fresh}`)).code).not.toBe(0);
    const lookups = await metric(base, 'strata_fuse_operation_seconds_count', '{op="lookup"}');
    // Changed behind the daemon's back: within the TTL, neither the kernel nor the daemon asks.
    await writeFile(join(source, 'data/grow.txt'), 'a larger file now');
    await writeFile(join(source, 'data/appears.txt'), 'new');
    expect((await sh(`stat -c %s ${grow}`)).trim()).toBe('5');
    expect((await shResult(`stat ${fresh}`)).code).not.toBe(0);
    expect(await metric(base, 'strata_fuse_operation_seconds_count', '{op="lookup"}')).toBe(lookups);
    await syncLink(base, 'root');
    expect((await sh(`stat -c %s ${grow}`)).trim()).toBe('17');
    expect((await sh(`cat ${grow}`)).trim()).toBe('a larger file now');
    expect(await sh(`cat ${fresh}`)).toBe('new');
  });

  it('shows a file written through the mount to a second reader at once (the daemon invalidates on close)', async () => {
    await sh(`printf one > ${join(mountPoint, 'data/note.txt')}`);
    expect(await sh(`cat ${join(mountPoint, 'data/note.txt')}`)).toBe('one');
    await sh(`printf 'two, longer' > ${join(mountPoint, 'data/note.txt')}`);
    expect(await sh(`cat ${join(mountPoint, 'data/note.txt')}`)).toBe('two, longer');
    await sh(`mv ${join(mountPoint, 'data/note.txt')} ${join(mountPoint, 'data/moved.txt')}`);
    expect((await sh(`ls ${join(mountPoint, 'data')}`)).trim()).toBe(['appears.txt', 'big.bin', 'copy.bin', 'grow.txt', 'moved.txt'].join('\n'));
    expect(await readFile(join(source, 'data/moved.txt'), 'utf8')).toBe('two, longer');
  });
});

describe('fuse-native fallback', () => {
  it('serves the mount with fuse-native when asked, and says so', async () => {
    const source = await tempDir('fallback-src');
    const mountPoint = await tempDir('fallback-mnt');
    await writeFile(join(source, 'a.txt'), 'fallback');
    const daemon = await startMount(`file://${source}`, mountPoint, ['--fuse', 'fuse-native', '--read-only', '--state-dir', join(source, '..', `${mountPoint.split('/').pop()}-state`)]);
    try {
      const { fuse } = (await status(apiUrlOf(daemon))).mount;
      expect(fuse).toMatchObject({ path: 'fuse-native', passthrough: false });
      expect(await sh(`cat ${join(mountPoint, 'a.txt')}`)).toBe('fallback');
    } finally {
      expect(await daemon.stop('SIGTERM')).toBe(0);
      await cleanupDir(mountPoint);
      await cleanupDir(source);
    }
  });

  it('refuses a bad --fuse value with one clear line', async () => {
    const result = await runStrata(['mount', 'file:///tmp', '/tmp/nowhere', '--fuse', 'kernel']);
    expect(result.code).not.toBe(0);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/--fuse: must be auto, native or fuse-native/);
  });
});
