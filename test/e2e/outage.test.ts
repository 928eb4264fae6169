import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../fixtures/fault-proxy.js';
import { metric } from '../fixtures/metrics.js';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh, shResult } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const MiB = 1024 * 1024;
const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A reader in another process that opens a file now and reads it when told (a handle opened before an outage). */
function openEarly(path: string) {
  const child = spawn('python3', ['-c', 'import sys,hashlib\nf=open(sys.argv[1],"rb")\nprint("open",flush=True)\nsys.stdin.readline()\nprint(hashlib.md5(f.read()).hexdigest(),flush=True)', path], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return {
    opened: async () => {
      while (!out.includes('open')) {
        if (child.exitCode !== null) throw new Error(`reader failed: ${err}`);
        await sleep(20);
      }
    },
    read: async () => {
      child.stdin.write('\n');
      const code = await exited;
      return { code, digest: out.split('\n')[1] ?? '', err };
    },
  };
}

describe('a mount through store outages (a TCP proxy in front of the gateway refuses, hangs and cuts)', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  let mnt: string;
  let proxy: FaultProxy;
  let daemon: StrataProcess;
  let api: string;
  const cached = randomBytes(6 * MiB + 123);
  const uncached = randomBytes(1000);

  beforeAll(async () => {
    client = testS3Client();
    bucket = await createTestBucket('outage');
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'data/cached.bin', Body: cached }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'data/uncached.bin', Body: uncached }));
    proxy = await startFaultProxy(testS3().endpoint);
    work = await tempDir('outage');
    mnt = join(work, 'mnt');
    await sh(`mkdir -p ${mnt}`);
    daemon = await startMount(`s3://${bucket}`, mnt, ['--endpoint', proxy.url, '--state-dir', join(work, 'state'), '--metadata-ttl', '1', '--nvme', join(work, 'nvme'), '--log-level', 'warn']);
    api = apiUrlOf(daemon);
  });

  afterAll(async () => {
    await proxy?.setMode('pass');
    const code = daemon ? await daemon.stop() : 0;
    await proxy?.close();
    client?.destroy();
    if (work) await cleanupDir(work);
    expect(code).toBe(0);
  });

  const alive = async () => {
    expect(daemon.child.exitCode).toBeNull();
    expect((await fetch(`${api}/healthz`)).status).toBe(200);
  };

  it('answers over-long paths on /v1/prefetch, /v1/pins and /v1/distribute with a 400, and stays up', async () => {
    const long = `/${'é'.repeat(3000)}`;
    const post = async (path: string, body: unknown) => {
      const response = await fetch(`${api}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: response.status, body: (await response.json()) as { code?: string } };
    };
    for (const [route, body] of [
      ['/v1/prefetch', { paths: [long] }],
      ['/v1/pins', { path: long }],
      ['/v1/distribute', { paths: [long] }],
      ['/v1/prefetch', { paths: [`/data/${'n'.repeat(256)}`] }],
    ] as const) {
      const answer = await post(route, body);
      expect(answer, route).toEqual({ status: 400, body: expect.objectContaining({ code: 'FS_NAME_TOO_LONG' }) });
    }
    const stat = await shResult(`stat ${mnt}/data/${'n'.repeat(256)}; mkdir ${mnt}/data/${'m'.repeat(256)}; touch ${mnt}/data/${'t'.repeat(256)}; touch ${mnt}/data/ok.txt && mv ${mnt}/data/ok.txt ${mnt}/data/${'r'.repeat(256)}`);
    expect(stat.stderr.match(/File name too long/g)?.length, stat.stderr).toBe(4);
    // Five 250-byte names: each fits NAME_MAX, but the fifth level's key passes 1,024 bytes.
    const deep = ['a', 'b', 'c', 'd', 'e'].map((c) => c.repeat(250)).join('/');
    const mkdir = await shResult(`mkdir -p ${mnt}/data/${deep}`);
    expect(mkdir.stderr).toMatch(/File name too long/);
    await alive();
  });

  it('refuses a parameter table from a FIFO or a device at once, and the mount keeps writing', async () => {
    const fifo = join(work, 'table.fifo');
    await sh(`mkfifo ${fifo}`);
    const started = Date.now();
    const answers = await Promise.all(
      [fifo, fifo, fifo, fifo, fifo, '/dev/zero'].map(async (source, i) => {
        const response = await fetch(`${api}/v1/params/tables`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: `t${i}`, source }) });
        return { status: response.status, code: ((await response.json()) as { code?: string }).code };
      }),
    );
    expect(answers.every((a) => a.status === 400 && a.code === 'PARAMS_BAD_INPUT'), JSON.stringify(answers)).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
    const size = 3 * MiB;
    const write = await shResult(`head -c ${size} /dev/urandom > ${mnt}/data/after-fifo.bin && stat -c %s ${mnt}/data/after-fifo.bin`, { timeoutMs: 30_000 });
    expect(write.code, write.stderr).toBe(0);
    expect(write.stdout.trim()).toBe(String(size));
    await alive();
  });

  it('serves a cached file to new opens and to handles opened before the outage, refused or hung, within a few seconds', async () => {
    expect((await sh(`md5sum < ${mnt}/data/cached.bin && ls ${mnt}/data`)).split(' ')[0]).toBe(md5(cached));
    for (const mode of ['refuse', 'hang', 'cut'] as const) {
      const early = openEarly(`${mnt}/data/cached.bin`);
      await early.opened();
      await proxy.setMode(mode);
      await sleep(1500); // past the metadata TTL and the kernel's attribute cache
      const started = Date.now();
      const read = await shResult(`md5sum < ${mnt}/data/cached.bin && stat -c %s ${mnt}/data/cached.bin && ls ${mnt}/data`, { timeoutMs: 30_000 });
      const took = Date.now() - started;
      expect(read.code, `${mode}: ${read.stderr}`).toBe(0);
      expect(read.stdout.split('\n')[0]!.split(' ')[0]).toBe(md5(cached));
      expect(read.stdout.split('\n')[1]).toBe(String(cached.length));
      expect(took, `${mode}: a cached read took ${took} ms`).toBeLessThan(5_000);
      const before = await early.read();
      expect(before.code, before.err).toBe(0);
      expect(before.digest).toBe(md5(cached));
      await alive();
      await proxy.setMode('pass');
    }
    const metrics = await (await fetch(`${api}/metrics`)).text();
    expect(metrics).toMatch(/strata_namespace_stale_answers_total\{reason="(store-error|timeout)"\} [1-9]/);
    expect(metrics).not.toMatch(/strata_unhandled_errors_total\{[^}]*\} [1-9]/);
  });

  it('fails what it cannot know with an error within seconds, never by exiting: stat and create of unknown names, an uncached read', async () => {
    // Only cached.bin was read, over and over: no stream through the folder, so nothing
    // loaded uncached.bin ahead of a reader.
    expect(await metric(api, 'strata_fuse_next_files_started_total')).toBe(0);
    for (const mode of ['refuse', 'hang'] as const) {
      await proxy.setMode(mode);
      const timed = async (command: string) => {
        const started = Date.now();
        const result = await shResult(command, { timeoutMs: 60_000 });
        return { ...result, ms: Date.now() - started };
      };
      const stat = await timed(`stat ${mnt}/data/never-seen-${mode}.txt`);
      expect(stat.code).not.toBe(0);
      // A metadata call gets 5 s, retries included; a stat may make two (HEAD and LIST in parallel, then the kernel's retry).
      expect(stat.ms, `${mode}: stat`).toBeLessThan(12_000);
      const create = await timed(`touch ${mnt}/data/new-during-${mode}.txt`);
      expect(create.ms, `${mode}: touch`).toBeLessThan(12_000);
      const read = await timed(`cat ${mnt}/data/uncached.bin > /dev/null`);
      expect(read.code).not.toBe(0);
      console.log(`${mode}: stat ${stat.ms} ms, touch ${create.ms} ms, uncached read ${read.ms} ms`);
      // A read's socket gets 5 s of silence and one retry with 1 s; the kernel's second read finds
      // the store taken as hung and gets 1 s (store/s3-get.ts); plus the open's revalidation (2 s).
      expect(read.ms, `${mode}: uncached read`).toBeLessThan(10_000);
      await alive();
      await proxy.setMode('pass');
    }
    // The store is back: everything answers again.
    await sleep(1500);
    expect((await sh(`md5sum < ${mnt}/data/uncached.bin`)).split(' ')[0]).toBe(md5(uncached));
    await alive();
  }, 120_000);
});
