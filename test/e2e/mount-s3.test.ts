import { randomBytes, createHash } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountPoint } from '../../fuse/index.js';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh, shResult } from '../fixtures/shell.js';
import { metric } from '../fixtures/metrics.js';
import { apiUrlOf, cleanupDir, runStrata, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const MiB = 1024 * 1024;

describe('strata mount s3:// over Ceph RGW', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  let mnt: string;
  let daemon: StrataProcess;
  const big = randomBytes(48 * MiB + 4321);
  const objects: Record<string, Buffer> = {
    'data/train/class_a/img 1+2 ü.bin': randomBytes(300_000),
    'data/train/class_b/x.bin': randomBytes(1000),
    'data/empty.bin': Buffer.alloc(0),
    'data/only/folders/deep/leaf.txt': Buffer.from('leaf\n'),
    'data/漢字/名前.txt': Buffer.from('unicode\n'),
    'elsewhere/not-under-prefix.txt': Buffer.from('hidden'),
  };

  const mountArgs = () => ['--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--log-level', 'warn'];

  beforeAll(async () => {
    testS3();
    client = testS3Client();
    bucket = await createTestBucket('mount-s3');
    for (const [key, body] of Object.entries(objects)) await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'data/marker-only/', Body: '' })); // folder marker
    await new Upload({ client, params: { Bucket: bucket, Key: 'data/big.bin', Body: big }, partSize: 8 * MiB }).done();
    work = await tempDir('mount-s3');
    mnt = join(work, 'mnt');
    await sh(`mkdir -p ${mnt}`);
    daemon = await startMount(`s3://${bucket}/data`, mnt, mountArgs());
  });

  afterAll(async () => {
    const code = daemon ? await daemon.stop() : 0;
    client?.destroy();
    if (work) await cleanupDir(work);
    expect(code).toBe(0);
  });

  it('lists a prefix with folders inferred from keys, markers as folders, unicode names', async () => {
    const tree = await sh(`cd ${mnt} && find . | LC_ALL=C sort`);
    expect(tree.split('\n').filter(Boolean)).toEqual([
      '.',
      './big.bin',
      './empty.bin',
      './marker-only',
      './only',
      './only/folders',
      './only/folders/deep',
      './only/folders/deep/leaf.txt',
      './train',
      './train/class_a',
      './train/class_a/img 1+2 ü.bin',
      './train/class_b',
      './train/class_b/x.bin',
      './漢字',
      './漢字/名前.txt',
    ]);
    expect(await sh(`stat -c '%F' ${mnt}/marker-only`)).toBe('directory\n');
  });

  it('reads every object byte for byte (sha256sum, cp -r, dd at offsets)', async () => {
    const sum = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect((await sh(`sha256sum ${mnt}/big.bin`)).split(' ')[0]).toBe(sum(big));
    expect((await sh(`sha256sum '${mnt}/train/class_a/img 1+2 ü.bin'`)).split(' ')[0]).toBe(sum(objects['data/train/class_a/img 1+2 ü.bin']!));
    expect(await sh(`cat ${mnt}/empty.bin | wc -c`)).toBe('0\n');
    for (const [bs, skip, count] of [[1, 33_554_431, 7], [4096, 1, 1], [777_777, 60, 3], [8 * MiB, 5, 2]] as const) {
      const got = await sh(`dd if=${mnt}/big.bin bs=${bs} skip=${skip} count=${count} status=none | sha256sum`);
      const start = bs * skip;
      expect(got.split(' ')[0]).toBe(sum(big.subarray(start, Math.min(start + bs * count, big.length))));
    }
    const copy = join(work, 'copy');
    await sh(`cp -r ${mnt}/train ${copy}`);
    expect(await sh(`cd ${copy} && find . -type f | LC_ALL=C sort`)).toBe('./class_a/img 1+2 ü.bin\n./class_b/x.bin\n');
    // The blocks landed in the daemon's arena (docs/ARCHITECTURE.md, "Block memory"), whose reservation is its memory budget.
    const api = apiUrlOf(daemon);
    const inUse = await metric(api, 'strata_block_arena_bytes', '{state="in_use"}');
    expect(inUse).toBeGreaterThanOrEqual(48 * MiB);
    expect(await metric(api, 'strata_block_arena_bytes', '{state="reserved"}')).toBeGreaterThan(inUse);
  });

  it('answers ESTALE when an open file changes in the store, and the next open sees the new version', async () => {
    const key = 'data/changing.bin';
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.alloc(12 * MiB, 1) }));
    await new Promise((r) => setTimeout(r, 1100)); // metadata TTL (1 s) of the earlier listing
    // A child reads the first MiB, waits for a go on stdin, then reads at 9 MiB (not yet cached).
    const reader = spawn('python3', ['-c', `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.pread(fd, 1 << 20, 0)
print('opened', flush=True)
sys.stdin.readline()
try:
    os.pread(fd, 1 << 20, 9 << 20)
    print('read ok')
except OSError as e:
    print('errno', e.errno)
`, join(mnt, 'changing.bin')], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    reader.stdout.on('data', (d: Buffer) => (out += d.toString()));
    while (!out.includes('opened')) await new Promise((r) => setTimeout(r, 20));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.alloc(12 * MiB, 2) }));
    reader.stdin.end('go\n');
    await new Promise((r) => reader.on('exit', r));
    expect(out).toContain('errno 116'); // ESTALE
    await new Promise((r) => setTimeout(r, 1100));
    expect(await sh(`head -c 4 ${mnt}/changing.bin | od -An -tx1`)).toMatch(/02 02 02 02/);
  });

  it('pages through a folder of 10,000 entries', async () => {
    const keys = Array.from({ length: 10_000 }, (_, i) => `data/many/f${String(i).padStart(5, '0')}`);
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < keys.length) await client.send(new PutObjectCommand({ Bucket: bucket, Key: keys[next++]!, Body: 'x' }));
    }));
    const count = await sh(`ls ${mnt}/many | wc -l`);
    expect(count).toBe('10000\n');
    expect(await sh(`ls ${mnt}/many | tail -1`)).toBe('f09999\n');
  }, 180_000);

  it('shows status per tier through the CLI', async () => {
    const api = /admin API (http:\/\/[^\s)]+)/.exec(daemon.stdout())![1]!;
    const status = await runStrata(['status', '--api', api, '--json']);
    expect(status.code).toBe(0);
    const body = JSON.parse(status.stdout) as { tiers: Array<{ name: string; hits: number; misses: number }> };
    expect(body.tiers.map((t) => t.name)).toEqual(['dram']);
    expect(body.tiers[0]!.misses).toBeGreaterThan(0);
  });
});

describe('strata mount: bad input and lifecycle', () => {
  it.each([
    [['mount', 'ftp://x/y', '/tmp'], 2, /unknown store scheme "ftp:\/\/"/],
    [['mount', 's3://bucket'], 2, /mount needs a store URL and a mount point/],
    [['frobnicate'], 2, /unknown command "frobnicate"/],
    [['mount', 'file:///tmp', '/tmp', '--dram', 'lots'], 2, /--dram: "lots" is not a size/],
    [['mount', 'file:///tmp', '/tmp', '--bogus'], 2, /Unknown option '--bogus'/],
  ])('strata %j exits %i with one clear line', async (args, code, message) => {
    const result = await runStrata(args);
    expect(result.code).toBe(code);
    expect(result.stderr).toMatch(message);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('reports a missing bucket, wrong credentials, an unreachable endpoint, and bad mount points', async () => {
    const work = await tempDir('bad-mounts');
    try {
      const mnt = join(work, 'mnt');
      await sh(`mkdir -p ${mnt}`);
      const { endpoint } = testS3();
      const missing = await runStrata(['mount', 's3://strata-no-such-bucket', mnt, '--endpoint', endpoint, '--api', '127.0.0.1:0']);
      expect(missing).toMatchObject({ code: 1 });
      expect(missing.stderr).toMatch(/bucket "strata-no-such-bucket" does not exist/);
      const bucket = await createTestBucket('bad-creds');
      const denied = await runStrata(['mount', `s3://${bucket}`, mnt, '--endpoint', endpoint, '--api', '127.0.0.1:0'], { AWS_SECRET_ACCESS_KEY: 'wrong' });
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/denied/);
      expect(denied.stderr).not.toContain('wrong');
      const down = await runStrata(['mount', `s3://${bucket}`, mnt, '--endpoint', 'http://127.0.0.1:1', '--api', '127.0.0.1:0']);
      expect(down.code).toBe(1);
      expect(down.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:1/);
      const noDir = await runStrata(['mount', 'file:///nonexistent-strata-dir', mnt, '--api', '127.0.0.1:0']);
      expect(noDir.code).toBe(1);
      expect(noDir.stderr).toMatch(/store directory \/nonexistent-strata-dir does not exist/);
      const nowhere = await runStrata(['mount', `file://${work}`, join(work, 'absent'), '--api', '127.0.0.1:0']);
      expect(nowhere.code).toBe(1);
      expect(nowhere.stderr).toMatch(/mount point .*absent does not exist/);
      await sh(`touch ${mnt}/occupied`);
      const full = await runStrata(['mount', `file://${work}`, mnt, '--api', '127.0.0.1:0']);
      expect(full.code).toBe(1);
      expect(full.stderr).toMatch(/is not empty/);
      for (const r of [missing, denied, down, noDir, nowhere, full]) expect(r.stderr.trim().split('\n')).toHaveLength(1);
    } finally {
      await cleanupDir(work);
    }
  });

  it('unmounts a busy mount lazily on SIGTERM, and cleans up a stale mount after SIGKILL', async () => {
    const work = await tempDir('lifecycle');
    const src = join(work, 'src');
    const mnt = join(work, 'mnt');
    await sh(`mkdir -p ${src}/d ${mnt} && echo hi > ${src}/d/f`);
    try {
      let daemon = await startMount(`file://${src}`, mnt, ['--state-dir', join(work, 'state')]);
      const holder = spawn('bash', ['-c', 'sleep 30'], { cwd: join(mnt, 'd'), stdio: 'ignore' });
      expect(await daemon.stop('SIGTERM')).toBe(0);
      expect(daemon.stderr()).toMatch(/busy/);
      expect(await isMountPoint(mnt)).toBe(false);
      holder.kill('SIGKILL');

      daemon = await startMount(`file://${src}`, mnt, ['--state-dir', join(work, 'state')]);
      expect(await daemon.stop('SIGKILL')).toBe('SIGKILL');
      expect((await shResult(`ls ${mnt}`)).stderr).toMatch(/Transport endpoint is not connected/);
      daemon = await startMount(`file://${src}`, mnt, ['--state-dir', join(work, 'state')]);
      expect(daemon.stderr()).toMatch(/stale mount/);
      expect(await sh(`cat ${mnt}/d/f`)).toBe('hi\n');
      expect(await daemon.stop('SIGINT')).toBe(0);
      expect(await isMountPoint(mnt)).toBe(false);
    } finally {
      await sh(`fusermount -uz ${mnt} 2>/dev/null || true`);
      await cleanupDir(work);
    }
  });
});
