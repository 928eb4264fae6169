import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh, shResult } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

/**
 * POSIX calls that everyday tools rely on, through a real mount over the gateway: fsync,
 * unlink and rename racing uploads, folder renames, errno values. Every file operation runs
 * in a child process (the test process never touches the mount synchronously).
 */
describe('file semantics through a mount over Ceph RGW', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  let mnt: string;
  let daemon: StrataProcess;

  /** Every key in the bucket under `prefix`, sorted. */
  const keys = async (prefix = ''): Promise<string[]> => {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) out.push(o.Key!);
      token = page.NextContinuationToken;
    } while (token);
    return out.sort();
  };
  /** Waits until the daemon has committed every pending upload. */
  const flush = async () => {
    const res = await fetch(`${apiUrlOf(daemon)}/v1/uploads/flush`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(200);
  };
  const py = (code: string) => sh(`cd ${mnt} && python3 -c '${code.replace(/'/g, `'"'"'`)}'`);

  beforeAll(async () => {
    testS3();
    client = testS3Client();
    bucket = await createTestBucket('file-semantics');
    work = await tempDir('file-semantics');
    mnt = join(work, 'mnt');
    await sh(`mkdir -p ${mnt}`);
    daemon = await startMount(`s3://${bucket}`, mnt, ['--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--log-level', 'warn']);
  });

  afterAll(async () => {
    if (daemon) expect(await daemon.stop()).toBe(0);
    client?.destroy();
    if (work) await cleanupDir(work);
  });

  it('fsync and fdatasync of a written file succeed and put the bytes in the store', async () => {
    const dd = await shResult(`dd if=/dev/zero of=${mnt}/synced.bin bs=4k count=1 conv=fsync status=none`);
    expect(dd).toMatchObject({ code: 0, stderr: '' });
    expect(await keys('synced.bin')).toEqual(['synced.bin']);
    const out = await py(`
import os
fd = os.open("pysync.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.write(fd, b"abc")
os.fsync(fd)
os.write(fd, b"def")
os.fdatasync(fd)
os.close(fd)
print(open("pysync.bin", "rb").read().decode())
`);
    expect(out).toBe('abcdef\n');
    expect(await keys('pysync.bin')).toEqual(['pysync.bin']);
  });

  it('an unlink right after a write always wins over the upload', async () => {
    await sh(`cd ${mnt} && mkdir -p z && for i in $(seq 40); do touch z/z$i; rm z/z$i; done`);
    await sh(`cd ${mnt} && for i in $(seq 8); do dd if=/dev/urandom of=z/big$i bs=1M count=7 status=none; rm -f z/big$i; done`);
    for (let i = 0; i < 10; i++) {
      const r = await shResult(`cd ${mnt} && mkdir d${i} && : > d${i}/f && rm d${i}/f && rmdir d${i}`);
      expect(r).toMatchObject({ code: 0, stderr: '' });
    }
    await flush();
    await new Promise((r) => setTimeout(r, 1500)); // past the metadata TTL
    expect(await sh(`ls -A ${mnt}/z`)).toBe('');
    const left = (await keys()).filter((k) => k.startsWith('z/z') || k.startsWith('z/big') || k.startsWith('d') || k.includes('.fuse_hidden'));
    expect(left).toEqual([]);
  });

  it('renames folders whole: empty ones, nested ones, markers with content', async () => {
    await sh(`cd ${mnt} && mkdir e1 && mv e1 e2`);
    expect(await sh(`cd ${mnt} && ls -d e*`)).toBe('e2\n');
    await sh(`cd ${mnt} && mkdir -p t1/sub/deeper && echo x > t1/file && echo y > t1/sub/deeper/leaf && mv t1 t2`);
    await flush();
    expect(await sh(`cd ${mnt} && find t1 t2 2>/dev/null | sort; true`)).toBe('t2\nt2/file\nt2/sub\nt2/sub/deeper\nt2/sub/deeper/leaf\n');
    expect(await keys('t')).toEqual(['t2/', 't2/file', 't2/sub/', 't2/sub/deeper/', 't2/sub/deeper/leaf']);
    expect(await sh(`cat ${mnt}/t2/sub/deeper/leaf`)).toBe('y\n');
    for (let i = 0; i < 6; i++) await sh(`cd ${mnt} && mkdir a${i} && echo x > a${i}/file && mv a${i} b${i} && cat b${i}/file`);
  });

  it('refuses to rename a folder over a non-empty folder (ENOTEMPTY) and keeps both', async () => {
    const out = await py(`
import os, errno
os.mkdir("p"); os.mkdir("q")
open("p/f.txt", "w").write("P"); open("q/f.txt", "w").write("Q")
try:
    os.rename("p", "q"); print("renamed")
except OSError as e:
    print(errno.errorcode[e.errno])
print(open("p/f.txt").read(), open("q/f.txt").read())
os.mkdir("r"); os.rename("p", "r"); print(sorted(os.listdir("r")), os.path.exists("p"))
open("plain", "w").write("x")
for a, b in (("r", "plain"), ("plain", "q")):
    try:
        os.rename(a, b); print("renamed")
    except OSError as e:
        print(errno.errorcode[e.errno])
`);
    expect(out).toBe("ENOTEMPTY\nP Q\n['f.txt'] False\nENOTDIR\nEISDIR\n");
  });

  it('orders a rename of a file just written with its upload (100 trials, nothing lost)', async () => {
    const out = await py(`
import os, random
random.seed(7)
bad = 0
for i in range(100):
    size_a = random.choice([10, 100_000, 6 << 20])
    a = os.urandom(size_a); b = os.urandom(1000)
    open("ra.bin", "wb").write(a)
    open("rb.bin", "wb").write(b)
    os.rename("ra.bin", "rb.bin")
    if open("rb.bin", "rb").read() != a or os.path.exists("ra.bin"):
        bad += 1
print(bad)
`);
    expect(out).toBe('0\n');
    await flush();
    expect((await keys('r')).filter((k) => k.endsWith('.bin'))).toEqual(['rb.bin']);
  }, 180_000);

});
