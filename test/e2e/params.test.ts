import { join } from 'node:path';
import { readFile, rm } from 'node:fs/promises';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTable } from '../../params/index.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from '../../params/testing/records.js';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, runStrata, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const DIM = 8;

async function mget(api: string, name: string, keys: bigint[]): Promise<{ status: number; answer: Array<Float32Array | undefined> }> {
  const res = await fetch(`${api}/v1/params/${name}/mget`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(keysBody(keys)) });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, answer: res.status === 200 ? decodeAnswer(bytes, keys.length, DIM) : [] };
}

describe('parameter tables in a running daemon', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  let mnt: string;
  let pool: string;
  const keys = Array.from({ length: 20_000 }, (_, i) => BigInt(i) * 7919n + 5n);

  beforeAll(async () => {
    testS3();
    client = testS3Client();
    bucket = await createTestBucket('params');
    work = await tempDir('params');
    mnt = join(work, 'mnt');
    pool = `/dev/shm/strata-params-e2e-${process.pid}.pool`;
    await sh(`mkdir -p ${mnt}`);
    await writeRecords(join(work, 'in.bin'), keys, DIM);
    await buildTable(join(work, 'in.bin'), join(work, 'emb.params'), { dim: DIM, shards: 3 });
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'tables/emb.params', Body: await readFile(join(work, 'emb.params')) }));
  });
  afterAll(async () => {
    client?.destroy();
    await rm(pool, { force: true });
    await rm(`${pool}.params`, { recursive: true, force: true });
    await rm(`${pool}.whole`, { recursive: true, force: true });
    if (work) await cleanupDir(work);
  });

  it('loads a table from a path in its own mount and from the store, and serves it again after SIGKILL without a load', async () => {
    const args = ['--endpoint', testS3().endpoint, '--state-dir', join(work, 'state'), '--pmem', `${pool}:32MiB`, '--nvme', join(work, 'nvme'), '--log-level', 'warn'];
    let daemon: StrataProcess = await startMount(`s3://${bucket}`, mnt, args);
    try {
      const api = apiUrlOf(daemon);
      // The daemon copies the table through its own mount (asynchronous reads: no deadlock).
      const fromMount = await runStrata(['params', 'load', 'emb', join(mnt, 'tables/emb.params'), '--api', api]);
      expect(fromMount).toMatchObject({ code: 0, stdout: `loaded emb version 1: ${keys.length} keys of dim ${DIM} into pmem\n` });
      const fromStore = await runStrata(['params', 'load', 'emb', `s3://${bucket}/tables/emb.params`, '--tier', 'nvme', '--api', api, '--json']);
      expect(fromStore.code).toBe(0);
      expect(JSON.parse(fromStore.stdout)).toMatchObject({ name: 'emb', version: 2, tier: 'nvme', kernel: 'native' });
      const asked = [keys[0]!, keys[19_999]!, 6n];
      expect((await mget(api, 'emb', asked)).answer).toEqual([vectorOf(keys[0]!, DIM), vectorOf(keys[19_999]!, DIM), undefined]);
      const printed = await runStrata(['params', 'mget', 'emb', String(keys[1]), '--api', api]);
      expect(printed).toMatchObject({ code: 0, stdout: `${keys[1]}\t${Array.from(vectorOf(keys[1]!, DIM)).join(' ')}\n` });

      // Bad input: one line and a non-zero exit, or a 4xx with a code.
      const missing = await runStrata(['params', 'load', 'x', join(mnt, 'tables/nope.params'), '--api', api]);
      expect(missing.code).toBe(1);
      expect(missing.stderr.trim().split('\n')).toHaveLength(1);
      expect(missing.stderr).toMatch(/^strata: params load: 400 /);
      const badTier = await runStrata(['params', 'load', 'x', join(mnt, 'tables/emb.params'), '--tier', 'dram', '--api', api]);
      expect(badTier.code).toBe(2);
      const odd = await fetch(`${api}/v1/params/emb/mget`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(12) });
      expect([odd.status, ((await odd.json()) as { code: string }).code]).toEqual([400, 'PARAMS_BAD_KEYS']);

      // The crash: no unmount, no shutdown; the next daemon serves the table at once.
      await daemon.stop('SIGKILL');
      daemon = await startMount(`s3://${bucket}`, mnt, args);
      const again = apiUrlOf(daemon);
      expect((await mget(again, 'emb', asked)).answer).toEqual([vectorOf(keys[0]!, DIM), vectorOf(keys[19_999]!, DIM), undefined]);
      const list = (await (await fetch(`${again}/v1/params/tables`)).json()) as { tables: Array<Record<string, unknown>> };
      expect(list.tables).toMatchObject([{ name: 'emb', version: 2, keys: keys.length, dim: DIM, shards: 3, tier: 'nvme' }]);
    } finally {
      await daemon.stop();
    }
  });
});
