import { createHash, randomBytes } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh, shResult } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

async function stored(client: S3Client, bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await out.Body!.transformToByteArray());
  } catch {
    return undefined;
  }
}

async function storeBytes(api: string): Promise<number> {
  const text = await (await fetch(`${api}/metrics`)).text();
  return Number(text.split('\n').find((l) => l.startsWith('strata_cache_store_bytes_total '))?.split(' ')[1] ?? 0);
}

async function flush(api: string): Promise<void> {
  const response = await fetch(`${api}/v1/uploads/flush`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  expect(response.status).toBe(200);
}

describe('writes through the mount (checkpoint path) over Ceph RGW', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  let mnt: string;
  let daemon: StrataProcess;
  const args = () => ['--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--log-level', 'warn'];

  beforeAll(async () => {
    testS3();
    client = testS3Client();
    bucket = await createTestBucket('writes');
    work = await tempDir('writes');
    mnt = join(work, 'mnt');
    await sh(`mkdir -p ${mnt}`);
    daemon = await startMount(`s3://${bucket}/ckpt`, mnt, args());
  });
  afterAll(async () => {
    if (daemon) await daemon.stop();
    client?.destroy();
    if (work) await cleanupDir(work);
  });

  it('writes with cp, dd and Python, reads them back at once, and uploads them', async () => {
    const source = randomBytes(3 * MiB + 17);
    await writeFile(join(work, 'src.bin'), source);
    await sh(`cp ${join(work, 'src.bin')} ${mnt}/copied.bin`);
    await sh(`dd if=/dev/urandom of=${mnt}/model.pt bs=4M count=16 status=none`);
    await sh(`python3 -c "open('${mnt}/opt.pt','wb').write(bytes(range(256))*4096)"`);
    // Read-your-writes, before the uploads are known to be done.
    expect((await sh(`sha256sum ${mnt}/copied.bin`)).split(' ')[0]).toBe(sha(source));
    const local = await sh(`sha256sum ${mnt}/model.pt`);
    expect(await sh(`stat -c %s ${mnt}/model.pt`)).toBe(`${64 * MiB}\n`);
    await flush(apiUrlOf(daemon));
    expect(sha((await stored(client, bucket, 'ckpt/copied.bin'))!)).toBe(sha(source));
    expect(sha((await stored(client, bucket, 'ckpt/model.pt'))!)).toBe(local.split(' ')[0]);
    expect((await stored(client, bucket, 'ckpt/opt.pt'))!.length).toBe(256 * 4096);
    // The uploaded bytes were adopted by the cache: reading the checkpoint back costs no GET.
    await new Promise((r) => setTimeout(r, 1100));
    const before = await storeBytes(apiUrlOf(daemon));
    await sh('sync; echo 3 > /proc/sys/vm/drop_caches');
    expect((await sh(`sha256sum ${mnt}/model.pt`)).split(' ')[0]).toBe(local.split(' ')[0]);
    expect(await storeBytes(apiUrlOf(daemon))).toBe(before);
  });

  it('makes and removes folders, renames and unlinks files', async () => {
    await sh(`mkdir ${mnt}/run1 && echo a > ${mnt}/run1/a.txt && mv ${mnt}/run1/a.txt ${mnt}/run1/b.txt`);
    await flush(apiUrlOf(daemon));
    await new Promise((r) => setTimeout(r, 1100));
    expect(await sh(`ls ${mnt}/run1`)).toBe('b.txt\n');
    expect((await stored(client, bucket, 'ckpt/run1/b.txt'))?.toString()).toBe('a\n');
    expect(await stored(client, bucket, 'ckpt/run1/a.txt')).toBeUndefined();
    expect((await shResult(`rmdir ${mnt}/run1`)).stderr).toMatch(/not empty/i);
    await sh(`rm ${mnt}/run1/b.txt && rmdir ${mnt}/run1`);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await shResult(`ls ${mnt}/run1`)).code).not.toBe(0);
    expect(await stored(client, bucket, 'ckpt/run1/b.txt')).toBeUndefined();
  });

  it('extracts a tar archive into the mount', async () => {
    await sh(`mkdir -p ${work}/tree/x/y && echo one > ${work}/tree/x/1.txt && echo two > ${work}/tree/x/y/2.txt && tar -C ${work}/tree -cf ${work}/t.tar x`);
    await sh(`mkdir ${mnt}/untar && tar -C ${mnt}/untar -xf ${work}/t.tar`);
    await flush(apiUrlOf(daemon));
    expect((await stored(client, bucket, 'ckpt/untar/x/y/2.txt'))?.toString()).toBe('two\n');
    expect(await sh(`cat ${mnt}/untar/x/1.txt`)).toBe('one\n');
  });

  it('overwrites a stored file with dd and a shell redirect without fetching it, and writes through a dup()ed descriptor after close', async () => {
    await sh(`dd if=/dev/urandom of=${mnt}/again.bin bs=1M count=6 status=none`);
    await flush(apiUrlOf(daemon));
    await new Promise((r) => setTimeout(r, 1100)); // past the kernel's attribute TTL: the file is a stored object now
    const before = await storeBytes(apiUrlOf(daemon));
    await sh(`dd if=/dev/zero of=${mnt}/again.bin bs=1M count=2 status=none && printf 'tail' >> ${mnt}/again.bin`);
    await sh(`printf 'replaced' > ${mnt}/redirect.txt && printf 'again' > ${mnt}/redirect.txt`);
    // fd2 = dup(fd); close(fd) ends the first version; fd2 still writes and closes the second.
    const script = [
      'import os',
      `fd = os.open('${mnt}/dup.bin', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)`,
      'fd2 = os.dup(fd)',
      "os.write(fd, b'a' * 1000)",
      'os.close(fd)',
      "os.write(fd2, b'b' * 1000)",
      'os.close(fd2)',
    ].join('\n');
    await writeFile(join(work, 'dup.py'), script);
    await sh(`python3 ${join(work, 'dup.py')}`);
    await flush(apiUrlOf(daemon));
    expect(await storeBytes(apiUrlOf(daemon))).toBe(before);
    expect((await stored(client, bucket, 'ckpt/again.bin'))).toEqual(Buffer.concat([Buffer.alloc(2 * MiB), Buffer.from('tail')]));
    expect((await stored(client, bucket, 'ckpt/redirect.txt'))?.toString()).toBe('again');
    expect((await stored(client, bucket, 'ckpt/dup.bin'))?.toString()).toBe('a'.repeat(1000) + 'b'.repeat(1000));
  });

  it('answers ENOSPC, not EIO, when the staging file system fills before the staging limit does', async () => {
    // A 4 MiB tmpfs as the state folder, with a staging limit far above it.
    const state = join(work, 'small-state');
    const smallMnt = join(work, 'small-mnt');
    await sh(`mkdir -p ${state} ${smallMnt} && mount -t tmpfs -o size=4m tmpfs ${state}`);
    const small = await startMount(`s3://${bucket}/small`, smallMnt, ['--endpoint', testS3().endpoint, '--state-dir', state, '--staging', '64MiB', '--log-level', 'warn']);
    try {
      const dd = await shResult(`dd if=/dev/urandom of=${smallMnt}/big.bin bs=1M count=16 2>&1`);
      expect(dd.code).not.toBe(0);
      expect(dd.stdout).toMatch(/No space left on device/);
      expect(dd.stdout).not.toMatch(/Input\/output error/);
    } finally {
      await small.stop();
      await sh(`umount ${state}`);
    }
  });

  it('loses no closed file when the daemon is killed right after close', async () => {
    const body = randomBytes(24 * MiB);
    await writeFile(join(work, 'ckpt.bin'), body);
    await sh(`cp ${join(work, 'ckpt.bin')} ${mnt}/killed.bin`);
    expect(await daemon.stop('SIGKILL')).toBe('SIGKILL');
    daemon = await startMount(`s3://${bucket}/ckpt`, mnt, args());
    // The journal resumes the upload; meanwhile the file is listed and readable.
    expect(await sh(`stat -c %s ${mnt}/killed.bin`)).toBe(`${body.length}\n`);
    await flush(apiUrlOf(daemon));
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'ckpt/killed.bin' }));
    expect(head.ContentLength).toBe(body.length);
    expect(sha((await stored(client, bucket, 'ckpt/killed.bin'))!)).toBe(sha(body));
  });

  it('in sync mode, close returns once the store has the object', async () => {
    expect(await daemon.stop()).toBe(0);
    daemon = await startMount(`s3://${bucket}/ckpt`, mnt, [...args(), '--close', 'sync']);
    await sh(`dd if=/dev/zero of=${mnt}/sync.bin bs=1M count=8 status=none`);
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'ckpt/sync.bin' }));
    expect(head.ContentLength).toBe(8 * MiB);
  });
});
