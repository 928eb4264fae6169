import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountPoint } from '../../fuse/index.js';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { metric, waitForMetric } from '../fixtures/metrics.js';
import { sh, shResult } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, runStrata, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A fresh bucket holding `model.bin` (`model`), and a work folder with an empty mount point `mnt`. */
async function modelBucket(label: string, model: Buffer): Promise<{ bucket: string; work: string; mnt: string }> {
  testS3();
  const client = testS3Client();
  const bucket = await createTestBucket(label);
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'model.bin', Body: model }));
  client.destroy();
  const work = await tempDir(label);
  const mnt = join(work, 'mnt');
  await mkdir(mnt);
  return { bucket, work, mnt };
}

/**
 * Reads `mnt/model.bin` whole and a range across the first block boundary (4 MiB blocks, not
 * page-aligned) from child processes, byte-exact, and checks that the FUSE threads answered
 * every READ: none reached the daemon, and they served at least the file's bytes.
 */
async function expectReadByThreads(base: string, mnt: string, model: Buffer): Promise<void> {
  const daemonReads = await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}');
  expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
  expect(await sh(`dd if=${mnt}/model.bin bs=1000 skip=4190 count=10 status=none | sha256sum`)).toBe(`${sha256(model.subarray(4_190_000, 4_200_000))}  -\n`);
  expect(await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}')).toBe(daemonReads);
  expect(await metric(base, 'strata_fuse_file_reads', '{kind="bytes"}')).toBeGreaterThanOrEqual(model.length);
}

/**
 * After every block of `tier` was damaged and the daemon restarted: a read through the mount is
 * byte-exact, the daemon's own check caught each block once, and the threads caught each block
 * they reached first (the open's readahead may reach the first block before them).
 */
/**
 * Reads `model.bin` through `mnt` whole and in part, byte-exact, and checks the kernel read it
 * itself (passthrough): no READ reached the daemon or its threads, and no byte the store.
 */
async function expectReadThroughPassthrough(base: string, mnt: string, model: Buffer): Promise<void> {
  const daemonReads = await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}');
  const passedThrough = await metric(base, 'strata_fuse_passthrough_files_total');
  expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
  expect(await sh(`dd if=${mnt}/model.bin bs=1000 skip=4190 count=10 status=none | sha256sum`)).toBe(`${sha256(model.subarray(4_190_000, 4_200_000))}  -\n`);
  expect(await metric(base, 'strata_fuse_passthrough_files_total')).toBeGreaterThan(passedThrough);
  expect(await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}')).toBe(daemonReads);
  expect(await metric(base, 'strata_fuse_file_reads', '{kind="reads"}')).toBe(0);
  expect(await metric(base, 'strata_cache_store_bytes_total')).toBe(0);
}

/** Flips one byte in the middle of a whole-object file of `model` (at 9 MiB + 123). */
async function damageWholeFile(file: string, model: Buffer): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    const at = 9 * MiB + 123;
    await handle.write(Buffer.from([model[at]! ^ 0x40]), 0, 1, at);
  } finally {
    await handle.close();
  }
}

async function expectDamageRefetched(base: string, mnt: string, model: Buffer, tier: string, blocks: number): Promise<void> {
  expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
  expect(await metric(base, 'strata_cache_checksum_mismatches_total', `{tier="${tier}"}`)).toBe(blocks);
  const threadMismatches = await metric(base, 'strata_fuse_file_reads', '{kind="mismatches"}');
  expect(threadMismatches).toBeGreaterThanOrEqual(blocks - 1);
  expect(threadMismatches).toBeLessThanOrEqual(blocks);
  expect(await metric(base, 'strata_cache_store_bytes_total')).toBe(model.length);
}

/** Hits of tier `name` in `strata status --json`. */
async function tierHits(base: string, name: string): Promise<number> {
  const tiers = (JSON.parse((await runStrata(['status', '--api', base, '--json'])).stdout) as { tiers: Array<{ name: string; hits: number }> }).tiers;
  return tiers.find((t) => t.name === name)!.hits;
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

/** The daemon's state dir, beside the mount point (removed with it). */
function stateDirOf(mountPoint: string): string {
  return `${mountPoint}-state`;
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
    await mkdir(join(source, 'listed/sub'), { recursive: true });
    for (let i = 0; i < 300; i++) await writeFile(join(source, `listed/f${i}.bin`), 'x'.repeat(i));
    // A long metadata TTL: only invalidations can make a change visible within the test.
    daemon = await startMount(`file://${source}`, mountPoint, ['--fuse', 'native', '--metadata-ttl', '60', '--state-dir', stateDirOf(mountPoint)]);
    base = apiUrlOf(daemon);
  });

  afterAll(async () => {
    // Stop, clean up, then assert: a failed stop must not leave the folders behind.
    const code = daemon ? await daemon.stop('SIGTERM') : 0;
    const mounted = await isMountPoint(mountPoint);
    await cleanupDir(mountPoint);
    await cleanupDir(source);
    await cleanupDir(stateDirOf(mountPoint));
    expect(code).toBe(0);
    expect(mounted).toBe(false);
  });

  it('says in strata status which path serves the mount', async () => {
    const { fuse } = (await status(base)).mount;
    expect(fuse).toEqual({ path: 'native', passthrough: true, kernelMetadataSeconds: 60, maxRequestBytes: MiB });
    expect(await sh(`node bin/strata-dev.js status --api ${base.replace('http://', '')} | head -1`)).toMatch(/native FUSE threads, passthrough on; 1\.00 MiB requests/);
  });

  it('hands an open of a whole local file to the kernel: exact bytes, no read reaches the daemon', async () => {
    const before = await metric(base, 'strata_fuse_passthrough_files_total');
    const readsBefore = await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}');
    const blocksBefore = await metric(base, 'strata_cache_store_blocks_total');
    expect(await sh(`sha256sum < ${join(mountPoint, 'data/big.bin')}`)).toBe(await sh(`sha256sum < ${join(source, 'data/big.bin')}`));
    expect(await sh(`dd if=${join(mountPoint, 'data/big.bin')} bs=1 skip=${12 * MiB} count=5 status=none | od -An -tx1`)).toBe(
      await sh(`dd if=${join(source, 'data/big.bin')} bs=1 skip=${12 * MiB} count=5 status=none | od -An -tx1`),
    );
    expect(await metric(base, 'strata_fuse_passthrough_files_total')).toBeGreaterThan(before);
    expect(await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}')).toBe(readsBefore);
    // Nor does the daemon load the first block at the open, as it does for reads it serves.
    expect(await metric(base, 'strata_cache_store_blocks_total')).toBe(blocksBefore);
  });

  it('hands a writer to the kernel (no WRITE reaches the daemon); without write passthrough, writes come in 1 MiB requests; files read back while staged or after', async () => {
    const writes = () => metric(base, 'strata_fuse_operation_seconds_count', '{op="write"}');
    const handed = () => metric(base, 'strata_fuse_passthrough_files_total');
    const same = async (name: string) => (await sh(`cmp ${join(mountPoint, `data/${name}`)} ${join(source, 'data/big.bin')} && echo same`)).trim();
    const [writesBefore, handedBefore] = [await writes(), await handed()];
    await sh(`dd if=${join(source, 'data/big.bin')} of=${join(mountPoint, 'data/copy.bin')} bs=4M status=none`);
    expect(await writes()).toBe(writesBefore);
    expect(await handed()).toBeGreaterThan(handedBefore);
    expect(await same('copy.bin')).toBe('same');
    // A writer that also reads (O_RDWR) stays on the daemon's path: a shared mapping of it may
    // write after the last close, and those writes must reach the file it commits.
    const mapped = join(mountPoint, 'data/mapped.bin');
    const handedBeforeMap = await handed();
    await sh(
      `python3 -c "import mmap,sys\nf=open(sys.argv[1],'w+b'); f.truncate(1<<20); m=mmap.mmap(f.fileno(),0); f.close()\nm[100:105]=b'hello'; m.flush(); m.close()" ${mapped}`,
    );
    expect(await handed()).toBe(handedBeforeMap);
    expect(await sh(`dd if=${mapped} bs=1 skip=100 count=5 status=none`)).toBe('hello');
    // Without write passthrough (or with sync close, or without kernel passthrough) a writer
    // goes through the daemon, in 1 MiB requests.
    const other = await tempDir('native-mnt-off');
    const otherSource = await tempDir('native-src-off');
    await mkdir(join(otherSource, 'data'));
    const off = await startMount(`file://${otherSource}`, other, ['--fuse', 'native', '--write-passthrough', 'off', '--state-dir', stateDirOf(other)]);
    try {
      const offBase = apiUrlOf(off);
      await sh(`dd if=${join(source, 'data/big.bin')} of=${join(other, 'data/copy-off.bin')} bs=4M status=none`);
      // 12 MiB + 5 bytes: twelve 1 MiB requests and one of 5 bytes.
      expect(await metric(offBase, 'strata_fuse_operation_seconds_count', '{op="write"}')).toBe(13);
      // The twelve large ones reach the daemon in the buffers they were read into, not copies.
      expect(await metric(offBase, 'strata_fuse_request_buffers', '{kind="handoffs"}')).toBe(12);
      expect(await metric(offBase, 'strata_fuse_passthrough_files_total')).toBe(0);
      expect((await sh(`cmp ${join(other, 'data/copy-off.bin')} ${join(source, 'data/big.bin')} && echo same`)).trim()).toBe('same');
      // 48 MiB more, byte-exact: each request's buffer goes to the daemon and the thread reads
      // on into another (one the daemon has finished with, once collected).
      const random = join(otherSource, 'random.bin');
      await sh(`head -c ${48 << 20} /dev/urandom > ${random}`);
      await sh(`dd if=${random} of=${join(other, 'data/random.bin')} bs=4M status=none`);
      expect((await sh(`cmp ${join(other, 'data/random.bin')} ${random} && echo same`)).trim()).toBe('same');
      expect(await metric(offBase, 'strata_fuse_request_buffers', '{kind="handoffs"}')).toBe(60);
    } finally {
      const code = await off.stop('SIGTERM');
      await cleanupDir(other);
      await cleanupDir(otherSource);
      await cleanupDir(stateDirOf(other));
      expect(code).toBe(0);
    }
  });

  it('closes a reader without a FLUSH request; a writer still flushes, where its file is finished', async () => {
    const flushes = () => metric(base, 'strata_fuse_operation_seconds_count', '{op="flush"}');
    const before = await flushes();
    expect(await sh(`cat ${join(mountPoint, 'data/grow.txt')} ${join(mountPoint, 'data/big.bin')} | wc -c`)).toBe(`${12 * MiB + 5 + 5}\n`);
    expect(await flushes()).toBe(before);
    await sh(`printf flushed > ${join(mountPoint, 'closed.txt')}`);
    expect(await flushes()).toBeGreaterThan(before);
    expect(await sh(`cat ${join(mountPoint, 'closed.txt')}`)).toBe('flushed');
  });

  it('answers a listing with the attributes of every name (READDIRPLUS): ls -l, stat and open of the listed names send no LOOKUP', async () => {
    const lookups = () => metric(base, 'strata_fuse_operation_seconds_count', '{op="lookup"}');
    const listed = join(mountPoint, 'listed');
    const before = await lookups();
    // 301 names: more than one answer holds, so the kernel asks again from an offset.
    const lines = (await sh(`ls -l ${listed}`)).trim().split('\n').slice(1);
    expect(lines).toHaveLength(301);
    const sizes = new Map(lines.map((line) => line.split(/\s+/)).map((f) => [f[8]!, f[4]!] as const));
    for (const i of [0, 1, 150, 299]) expect(sizes.get(`f${i}.bin`)).toBe(String(i));
    expect(lines.find((line) => line.endsWith(' sub'))).toMatch(/^d/);
    // Only 'listed' itself was looked up.
    expect((await lookups()) - before).toBeLessThanOrEqual(1);
    const afterList = await lookups();
    expect((await sh(`stat -c '%s %F' ${join(listed, 'f42.bin')} ${join(listed, 'sub')}`)).trim()).toBe('42 regular file\n0 directory');
    expect(await sh(`cat ${join(listed, 'f7.bin')}`)).toBe('xxxxxxx');
    expect(await lookups()).toBe(afterList);
    expect(await metric(base, 'strata_fuse_operation_seconds_count', '{op="readdirplus"}')).toBeGreaterThanOrEqual(2);
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
    expect((await sh(`ls ${join(mountPoint, 'data')}`)).trim()).toBe(['appears.txt', 'big.bin', 'copy.bin', 'grow.txt', 'mapped.bin', 'moved.txt'].join('\n'));
    expect(await readFile(join(source, 'data/moved.txt'), 'utf8')).toBe('two, longer');
  });
});

describe('fuse-native fallback', () => {
  it('serves the mount with fuse-native when asked, and says so', async () => {
    const source = await tempDir('fallback-src');
    const mountPoint = await tempDir('fallback-mnt');
    await writeFile(join(source, 'a.txt'), 'fallback');
    const daemon = await startMount(`file://${source}`, mountPoint, ['--fuse', 'fuse-native', '--read-only', '--state-dir', stateDirOf(mountPoint)]);
    try {
      const { fuse } = (await status(apiUrlOf(daemon))).mount;
      expect(fuse).toMatchObject({ path: 'fuse-native', passthrough: false });
      expect(await sh(`cat ${join(mountPoint, 'a.txt')}`)).toBe('fallback');
    } finally {
      const code = await daemon.stop('SIGTERM');
      await cleanupDir(mountPoint);
      await cleanupDir(source);
      await cleanupDir(stateDirOf(mountPoint));
      expect(code).toBe(0);
    }
  });

  it('refuses a bad --fuse value with one clear line', async () => {
    const result = await runStrata(['mount', 'file:///tmp', '/tmp/nowhere', '--fuse', 'kernel']);
    expect(result.code).not.toBe(0);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/--fuse: must be auto, native or fuse-native/);
  });
});

describe('native FUSE path: NVMe tier hits answered by the FUSE threads', () => {
  const model = randomBytes(18 * MiB + 7);

  /** Block files (`<2 hex>/<sha256>.blk`) or whole-object files (`.obj`) of an NVMe tier folder. */
  async function blockFiles(dir: string, suffix = '.blk'): Promise<string[]> {
    const subs = (await readdir(dir)).filter((name) => /^[0-9a-f]{2}$/.test(name));
    const files = await Promise.all(subs.map(async (sub) => (await readdir(join(dir, sub))).filter((n) => n.endsWith(suffix)).map((n) => join(dir, sub, n))));
    return files.flat();
  }


  it('keeps a checkpoint written through the mount as its whole file (a hard link of its staged file): after a restart the kernel reads it through passthrough, with no byte from the store', async () => {
    const { bucket, work, mnt } = await modelBucket('native-ckpt', Buffer.from('unused'));
    const nvme = join(work, 'nvme');
    const args = ['--fuse', 'native', '--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--dram', '8MiB', '--memory', '24MiB', '--nvme', `${nvme}:64MiB`, '--nvme-scrub-rate', '0', '--log-level', 'warn'];
    const source = join(work, 'ckpt.src');
    await writeFile(source, model);
    let daemon: StrataProcess | undefined = await startMount(`s3://${bucket}`, mnt, args);
    try {
      let base = apiUrlOf(daemon);
      await sh(`dd if=${source} of=${mnt}/ckpt.pt bs=4M status=none`);
      const flushed = await fetch(`${base}/v1/uploads/flush`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(flushed.status).toBe(200);
      expect(await waitForMetric(base, 'strata_cache_whole_files_assembled_total', 1, 30_000)).toBe(1);
      expect(await blockFiles(nvme)).toEqual([]);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      const [whole] = await blockFiles(nvme, '.obj');
      expect((await readFile(whole!)).equals(model)).toBe(true);

      daemon = await startMount(`s3://${bucket}`, mnt, args);
      base = apiUrlOf(daemon);
      expect((await sh(`sha256sum ${mnt}/ckpt.pt`)).split(' ')[0]).toBe(sha256(model));
      expect(await metric(base, 'strata_fuse_passthrough_files_total')).toBe(1);
      expect(await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}')).toBe(0);
      expect(await metric(base, 'strata_cache_store_bytes_total')).toBe(0);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      daemon = undefined;
    } finally {
      if (daemon) await daemon.stop('SIGKILL');
      await cleanupDir(work);
    }
  });

  it('makes a read object whole in the tier; after a crash and restart the kernel reads it through passthrough, byte-exact; the scrub drops a damaged file and the next read refetches', async () => {
    testS3();
    const client = testS3Client();
    const bucket = await createTestBucket('native-whole');
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'model.bin', Body: model }));
    client.destroy();
    const work = await tempDir('native-whole');
    const mnt = join(work, 'mnt');
    const nvme = join(work, 'nvme');
    await mkdir(mnt);
    const args = ['--fuse', 'native', '--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--dram', '8MiB', '--memory', '24MiB', '--nvme', `${nvme}:64MiB`, '--log-level', 'warn'];
    let daemon: StrataProcess | undefined = await startMount(`s3://${bucket}`, mnt, [...args, '--nvme-scrub-rate', '0']);
    try {
      expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
      // Made whole in the background once the reader closed and write-through settled.
      expect(await waitForMetric(apiUrlOf(daemon), 'strata_cache_whole_files_assembled_total', 1, 60_000)).toBe(1);
      // Killed, not stopped: the restart finds the whole file from the index log as appended.
      await daemon.stop('SIGKILL');
      const [whole] = await blockFiles(nvme, '.obj');
      expect((await readFile(whole!)).equals(model)).toBe(true);
      expect(await blockFiles(nvme)).toEqual([]);

      daemon = await startMount(`s3://${bucket}`, mnt, [...args, '--nvme-scrub-rate', '0']);
      let base = apiUrlOf(daemon);
      await expectReadThroughPassthrough(base, mnt, model);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      daemon = undefined;

      // Flip one byte in the middle of the whole file: the scrub finds it and drops the file.
      await damageWholeFile(whole!, model);
      daemon = await startMount(`s3://${bucket}`, mnt, [...args, '--nvme-scrub-rate', '256MiB']);
      base = apiUrlOf(daemon);
      expect(await waitForMetric(base, 'strata_cache_scrub_mismatches_total', 1, 30_000)).toBe(1);
      expect(await metric(base, 'strata_cache_scrub_bytes_total')).toBeGreaterThanOrEqual(9 * MiB);
      // Dropped: the file is removed (in the background, just after the count).
      for (let i = 0; i < 50 && (await blockFiles(nvme, '.obj')).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(await blockFiles(nvme, '.obj')).toEqual([]);
      expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
      expect(await metric(base, 'strata_cache_store_bytes_total')).toBe(model.length);
    } finally {
      if (daemon) await daemon.stop('SIGTERM');
      await cleanupDir(work);
    }
  }, 300_000);

  it('reads blocks from the tier files on the threads after a restart, byte-exact; a corrupt block goes back to the daemon, which refetches it', async () => {
    const { bucket, work, mnt } = await modelBucket('native-nvme', model);
    const nvme = join(work, 'nvme');
    // Block files only: with whole files the second read would be passthrough (tested below).
    const args = ['--fuse', 'native', '--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--dram', '8MiB', '--memory', '24MiB', '--nvme', `${nvme}:64MiB`, '--nvme-whole-files', 'off', '--log-level', 'warn'];
    let daemon: StrataProcess | undefined = await startMount(`s3://${bucket}`, mnt, args);
    try {
      expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
      // The first read came from the store: nothing was in a tier file when the file was opened.
      expect(await metric(apiUrlOf(daemon), 'strata_fuse_file_reads', '{kind="reads"}')).toBe(0);
      expect(await daemon.stop('SIGTERM')).toBe(0);

      daemon = await startMount(`s3://${bucket}`, mnt, args);
      const base = apiUrlOf(daemon);
      await expectReadByThreads(base, mnt, model);
      expect(await metric(base, 'strata_cache_store_bytes_total')).toBe(0);
      // The handle is released: the blocks read count as NVMe hits.
      expect(await tierHits(base, 'nvme')).toBeGreaterThanOrEqual(5);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      daemon = undefined;

      // Flip one data byte at the end of every block file: each fails its check on the threads.
      for (const file of await blockFiles(nvme)) {
        const handle = await open(file, 'r+');
        try {
          const { size } = await handle.stat();
          const byte = Buffer.alloc(1);
          await handle.read(byte, 0, 1, size - 1);
          byte[0] = byte[0]! ^ 0xff;
          await handle.write(byte, 0, 1, size - 1);
        } finally {
          await handle.close();
        }
      }
      daemon = await startMount(`s3://${bucket}`, mnt, args);
      await expectDamageRefetched(apiUrlOf(daemon), mnt, model, 'nvme', 5);
    } finally {
      if (daemon) await daemon.stop('SIGTERM');
      await cleanupDir(work);
    }
    // Three daemon starts and four reads of 18 MiB from a gateway on a loaded machine.
  }, 300_000);
});

describe('native FUSE path: pmem tier hits answered by the FUSE threads', () => {
  it('reads blocks from the pool file on the threads after a restart, byte-exact, counted as pmem hits; a corrupt slot goes back to the daemon, which refetches it', async () => {
    const model = randomBytes(10 * MiB + 3);
    const { bucket, work, mnt } = await modelBucket('native-pmem', model);
    const pool = await mkdtemp(join('/dev/shm', 'strata-native-pmem-'));
    // Blocks in the pool only: with whole files the second read would be passthrough (tested below).
    const args = ['--fuse', 'native', '--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--dram', '8MiB', '--memory', '24MiB', '--pmem', `${join(pool, 'strata.pool')}:32MiB`, '--pmem-whole-files', 'off', '--log-level', 'warn'];
    let daemon: StrataProcess | undefined = await startMount(`s3://${bucket}`, mnt, args);
    try {
      expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
      expect(await daemon.stop('SIGTERM')).toBe(0);

      daemon = await startMount(`s3://${bucket}`, mnt, args);
      const base = apiUrlOf(daemon);
      await expectReadByThreads(base, mnt, model);
      expect(await metric(base, 'strata_fuse_file_reads', '{kind="mismatches"}')).toBe(0);
      expect(await metric(base, 'strata_cache_store_bytes_total')).toBe(0);
      expect(await tierHits(base, 'pmem')).toBeGreaterThanOrEqual(3);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      daemon = undefined;

      // Flip one byte inside each of the three blocks where the pool holds it: the threads
      // check each block against its CRC the first time they read it.
      const poolFile = await open(join(pool, 'strata.pool'), 'r+');
      try {
        const image = await poolFile.readFile();
        for (let block = 0; block < 3; block++) {
          const at = image.indexOf(model.subarray(block * 4 * MiB, block * 4 * MiB + 64));
          expect(at).toBeGreaterThan(0);
          await poolFile.write(Buffer.from([image[at + 1000]! ^ 0xff]), 0, 1, at + 1000);
        }
      } finally {
        await poolFile.close();
      }
      daemon = await startMount(`s3://${bucket}`, mnt, args);
      await expectDamageRefetched(apiUrlOf(daemon), mnt, model, 'pmem', 3);
    } finally {
      if (daemon) await daemon.stop('SIGTERM');
      await cleanupDir(work);
      await cleanupDir(pool);
    }
  }, 300_000);
});

describe('native FUSE path: whole files of the pmem tier', () => {
  it('makes a read object whole beside the pool, within the pool\'s size; after a crash and restart the kernel reads it through passthrough, byte-exact; the scrub drops a damaged file and the next read refetches', async () => {
    const model = randomBytes(14 * MiB + 11);
    const { bucket, work, mnt } = await modelBucket('native-pmem-whole', model);
    const shm = await mkdtemp(join('/dev/shm', 'strata-native-pmem-whole-'));
    const pool = join(shm, 'strata.pool');
    const wholeDir = `${pool}.whole`;
    const args = ['--fuse', 'native', '--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--dram', '8MiB', '--memory', '24MiB', '--pmem', `${pool}:32MiB`, '--log-level', 'warn'];
    const wholeFiles = async () => (await readdir(wholeDir)).filter((name) => name.endsWith('.data')).map((name) => join(wholeDir, name));
    let daemon: StrataProcess | undefined = await startMount(`s3://${bucket}`, mnt, [...args, '--pmem-scrub-rate', '0']);
    try {
      expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
      expect(await waitForMetric(apiUrlOf(daemon), 'strata_cache_whole_files_assembled_total', 1, 60_000)).toBe(1);
      await daemon.stop('SIGKILL');
      const [whole] = await wholeFiles();
      expect((await readFile(whole!)).equals(model)).toBe(true);
      // The file stands in for its blocks' slots: pool and file together stay within the pool's size.
      const poolBytes = (await stat(pool)).blocks * 512;
      expect(poolBytes + (await stat(whole!)).blocks * 512).toBeLessThanOrEqual(32 * MiB + 64 * 1024);

      daemon = await startMount(`s3://${bucket}`, mnt, [...args, '--pmem-scrub-rate', '0']);
      let base = apiUrlOf(daemon);
      await expectReadThroughPassthrough(base, mnt, model);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      daemon = undefined;

      await damageWholeFile(whole!, model);
      daemon = await startMount(`s3://${bucket}`, mnt, [...args, '--pmem-scrub-rate', '256MiB']);
      base = apiUrlOf(daemon);
      expect(await waitForMetric(base, 'strata_cache_scrub_mismatches_total', 1, 30_000)).toBe(1);
      expect(await wholeFiles()).toEqual([]);
      expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
      expect(await metric(base, 'strata_cache_store_bytes_total')).toBe(model.length);
    } finally {
      if (daemon) await daemon.stop('SIGTERM');
      await cleanupDir(work);
      await cleanupDir(shm);
    }
  }, 300_000);
});

describe('native FUSE path: DRAM tier hits answered by the FUSE threads', () => {
  it('writes blocks held in DRAM to the kernel from the threads, byte-exact, counted as DRAM hits', async () => {
    const model = randomBytes(9 * MiB + 5);
    const { bucket, work, mnt } = await modelBucket('native-dram', model);
    const args = ['--fuse', 'native', '--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--dram', '32MiB', '--memory', '64MiB', '--log-level', 'warn'];
    const daemon = await startMount(`s3://${bucket}`, mnt, args);
    try {
      const base = apiUrlOf(daemon);
      expect((await sh(`sha256sum ${mnt}/model.bin`)).split(' ')[0]).toBe(sha256(model));
      expect(await metric(base, 'strata_fuse_operation_seconds_count', '{op="read"}')).toBeGreaterThan(0);
      await writeFile('/proc/sys/vm/drop_caches', '3\n');
      await expectReadByThreads(base, mnt, model);
      expect(await metric(base, 'strata_cache_store_bytes_total')).toBe(model.length);
      expect(await tierHits(base, 'dram')).toBeGreaterThanOrEqual(3);
    } finally {
      await daemon.stop('SIGTERM');
      await cleanupDir(work);
    }
  }, 300_000);
});
