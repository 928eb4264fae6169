import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh, shResult } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const EXERCISER = resolve(import.meta.dirname, '../fixtures/rw_exerciser.py');

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
    const code = daemon ? await daemon.stop() : 0;
    client?.destroy();
    if (work) await cleanupDir(work);
    expect(code).toBe(0);
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

  it('reads and writes on one O_RDWR descriptor: w+b, r+b, memmap-style pwrite/pread, holes', async () => {
    const out = await py(`
import os
with open("rw.bin", "w+b") as f:
    f.write(b"hello world"); f.seek(0); print(f.read())
with open("rw.bin", "r+b") as f:
    print(f.read(5)); f.seek(6); f.write(b"WORLD"); f.seek(0); print(f.read())
fd = os.open("rw.bin", os.O_RDWR)
os.pwrite(fd, b"!", 20)
print(os.pread(fd, 32, 0))
os.close(fd)
print(open("rw.bin", "rb").read())
`);
    expect(out).toBe("b'hello world'\nb'hello'\nb'hello WORLD'\nb'hello WORLD\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00!'\nb'hello WORLD\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00!'\n");
    await flush();
    expect(await keys('rw.bin')).toEqual(['rw.bin']);
  });

  it('keeps a file unlinked while open usable until closed, and leaves no .fuse_hidden object', async () => {
    const out = await py(`
import os
fd = os.open("scratch", os.O_RDWR | os.O_CREAT)
os.write(fd, b"temporary")
os.unlink("scratch")
os.pwrite(fd, b"T", 0)
print(os.pread(fd, 20, 0), os.fstat(fd).st_size, os.path.exists("scratch"))
os.close(fd)
print(sorted(n for n in os.listdir(".") if n.startswith(".fuse")))
`);
    expect(out).toBe("b'Temporary' 9 False\n[]\n");
    await flush();
    expect((await keys()).filter((k) => k.includes('scratch') || k.includes('.fuse_hidden'))).toEqual([]);
  });

  it('stores symbolic links as objects and reads them back as links', async () => {
    await sh(`cd ${mnt} && mkdir -p ck && echo v1 > ck/step-1.pt && ln -s step-1.pt ck/latest`);
    expect(await sh(`readlink ${mnt}/ck/latest`)).toBe('step-1.pt\n');
    expect(await sh(`cat ${mnt}/ck/latest`)).toBe('v1\n');
    expect(await sh(`stat -c '%F' ${mnt}/ck/latest`)).toBe('symbolic link\n');
    await new Promise((r) => setTimeout(r, 1200)); // the listing is fetched again: the link stays a link
    expect(await sh(`ls -l ${mnt}/ck | grep latest`)).toMatch(/^l.* latest -> step-1\.pt/);
    // Replacing the link, as checkpoint tools do: a new link renamed over it.
    await sh(`cd ${mnt}/ck && echo v2 > step-2.pt && ln -s step-2.pt latest.tmp && mv -T latest.tmp latest`);
    expect(await sh(`cat ${mnt}/ck/latest`)).toBe('v2\n');
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'ck/latest' }));
    expect(head.Metadata?.mode).toBe(String(0o120777));
    expect((await shResult(`ln ${mnt}/ck/step-1.pt ${mnt}/ck/hard`)).stderr).toMatch(/Operation not permitted/);
  });

  it('keeps modes, owners and modification times as s3fs metadata', async () => {
    await sh(`cd ${mnt} && echo x > m.txt && chmod 0751 m.txt && chown 1234:4321 m.txt && touch -d '2021-02-03 04:05:06 UTC' m.txt`);
    expect(await sh(`stat -c '%a %u %g %Y' ${mnt}/m.txt`)).toBe(`751 1234 4321 ${Date.UTC(2021, 1, 3, 4, 5, 6) / 1000}\n`);
    await flush();
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'm.txt' }));
    expect(head.Metadata).toMatchObject({ mode: String(0o100751), uid: '1234', gid: '4321', mtime: String(Date.UTC(2021, 1, 3, 4, 5, 6) / 1000) });
    // A rewrite keeps mode and owner, and its modification time is the rewrite's.
    await sh(`echo y >> ${mnt}/m.txt`);
    await flush();
    const after = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'm.txt' }));
    expect(after.Metadata).toMatchObject({ mode: String(0o100751), uid: '1234' });
    expect(after.Metadata?.mtime).toBeUndefined();
    // A file created with a mode keeps it.
    await py('import os; os.close(os.open("x.sh", os.O_CREAT | os.O_WRONLY, 0o700))');
    expect(await sh(`stat -c '%a' ${mnt}/x.sh`)).toBe('700\n');
  });

  it('random read/write/truncate sequences on one O_RDWR descriptor match a local file (3 seeds, 4,500 operations)', async () => {
    const local = join(work, 'local');
    await sh(`mkdir -p ${local}`);
    for (const seed of [1, 2, 3]) {
      const r = await shResult(`python3 ${EXERCISER} ${mnt}/exercise-${seed}.bin ${local}/exercise-${seed}.bin ${seed} 1500`, { timeoutMs: 300_000 });
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)).toMatchObject({ ops: 1500, mismatches: [] });
    }
    await flush();
    for (const seed of [1, 2, 3]) expect(await sh(`cmp ${mnt}/exercise-${seed}.bin ${local}/exercise-${seed}.bin && echo same`)).toBe('same\n');
  }, 600_000);

  it('answers every errno of the table in docs/SEMANTICS.md', async () => {
    const doc = await readFile(resolve(import.meta.dirname, '../../docs/SEMANTICS.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## Every call and its errno'));
    const rows = [...section.matchAll(/^\| `[^|]+` \| [^|]+ \| `(E[A-Z]+)`[^|]* \| `(.+)` \|$/gm)].map((m) => ({ errno: m[1]!, example: m[2]!.replace(/\\\|/g, '|') }));
    expect(rows.length).toBeGreaterThanOrEqual(20);
    const script = `
import errno, json, os, sys
os.chdir(sys.argv[1])
os.mkdir("dir"); os.mkdir("empty"); open("dir/f", "w").write("f"); open("file", "w").write("x")
out = []
for example in json.loads(sys.argv[2]):
    try:
        eval(example); out.append("OK")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(out))
`;
    await sh(`mkdir -p ${mnt}/errno-table`);
    const got = JSON.parse(await sh(`python3 -c '${script}' ${mnt}/errno-table '${JSON.stringify(rows.map((r) => r.example)).replace(/'/g, `'"'"'`)}'`)) as string[];
    expect(rows.map((r, i) => `${r.example} -> ${got[i]}`)).toEqual(rows.map((r) => `${r.example} -> ${r.errno}`));
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
    expect((await keys('r')).filter((k) => /^r[ab]\.bin$/.test(k))).toEqual(['rb.bin']);
  }, 180_000);

});

describe('attributes written by s3fs, through --object-metadata listed', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  let daemon: StrataProcess;

  beforeAll(async () => {
    testS3();
    client = testS3Client();
    bucket = await createTestBucket('s3fs-attrs');
    // What s3fs writes: the whole st_mode in decimal, owner, group and mtime in seconds.
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'run/model.pt', Body: 'weights', Metadata: { mode: String(0o100600), uid: '1001', gid: '1002', mtime: '1600000000' } }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'run/latest', Body: 'model.pt', Metadata: { mode: String(0o120777) } }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'run/plain.txt', Body: 'no metadata' }));
    work = await tempDir('s3fs-attrs');
    await sh(`mkdir -p ${work}/mnt`);
    daemon = await startMount(`s3://${bucket}`, join(work, 'mnt'), [
      '--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--log-level', 'warn',
      '--object-metadata', 'listed', '--uid', '77', '--gid', '88', '--file-mode', '0640',
    ]);
  });

  afterAll(async () => {
    const code = daemon ? await daemon.stop() : 0;
    client?.destroy();
    if (work) await cleanupDir(work);
    expect(code).toBe(0);
  });

  it('shows modes, owners, times and links from a listing, and the defaults where an object has none', async () => {
    const mnt = join(work, 'mnt');
    const lines = (await sh(`cd ${mnt}/run && stat -c '%n %A %u %g %Y' * | sort`)).trim().split('\n');
    expect(lines).toEqual([
      'latest lrwxrwxrwx 77 88 ' + lines[0]!.split(' ')[4],
      'model.pt -rw------- 1001 1002 1600000000',
      'plain.txt -rw-r----- 77 88 ' + lines[2]!.split(' ')[4],
    ]);
    expect(await sh(`cat ${mnt}/run/latest`)).toBe('weights');
  });
});
