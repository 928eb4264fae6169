import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, runStrata, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const MiB = 1024 * 1024;

async function storeBytes(api: string): Promise<number> {
  const text = await (await fetch(`${api}/metrics`)).text();
  return Number(text.split('\n').find((l) => l.startsWith('strata_cache_store_bytes_total '))?.split(' ')[1] ?? NaN);
}

/** Drops the kernel's page cache, so a read reaches the daemon (the tests run as root). */
async function dropPageCache(): Promise<void> {
  await sh('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

describe('block cache tiers through a real mount', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  let mnt: string;
  const model = randomBytes(20 * MiB + 99);
  const sum = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  beforeAll(async () => {
    testS3();
    client = testS3Client();
    bucket = await createTestBucket('tiers');
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'models/model.bin', Body: model }));
    work = await tempDir('tiers');
    mnt = join(work, 'mnt');
    await sh(`mkdir -p ${mnt}`);
  });
  afterAll(async () => {
    client?.destroy();
    if (work) await cleanupDir(work);
  });

  for (const tier of ['pmem', 'nvme'] as const) {
    it(`serves a second read from ${tier} after a restart, with no store request`, async () => {
      // Blocks only: a whole file would be read by the kernel (passthrough, no hits counted), tested in native-fuse.test.ts.
      const tierArg =
        tier === 'pmem' ? ['--pmem', `/dev/shm/strata-test-${process.pid}-${tier}.pool:64MiB`, '--pmem-whole-files', 'off'] : ['--nvme', `${join(work, 'nvme')}:64MiB`, '--nvme-whole-files', 'off'];
      const args = ['--endpoint', testS3().endpoint, '--state-dir', join(work, `state-${tier}`), '--dram', '8MiB', '--memory', '24MiB', '--log-level', 'warn', ...tierArg];
      let daemon: StrataProcess = await startMount(`s3://${bucket}`, mnt, args);
      try {
        expect((await sh(`sha256sum ${mnt}/models/model.bin`)).split(' ')[0]).toBe(sum(model));
        expect(await storeBytes(apiUrlOf(daemon))).toBe(model.length);
        expect(await daemon.stop()).toBe(0);

        daemon = await startMount(`s3://${bucket}`, mnt, args);
        await dropPageCache();
        expect((await sh(`sha256sum ${mnt}/models/model.bin`)).split(' ')[0]).toBe(sum(model));
        expect(await storeBytes(apiUrlOf(daemon))).toBe(0);
        const status = await runStrata(['status', '--api', apiUrlOf(daemon), '--json']);
        const tiers = (JSON.parse(status.stdout) as { tiers: Array<{ name: string; hits: number; usedBytes: number }> }).tiers;
        expect(tiers.map((t) => t.name)).toEqual(['dram', tier]);
        expect(tiers[1]!.hits).toBeGreaterThan(0);
        expect(tiers[1]!.usedBytes).toBeGreaterThanOrEqual(model.length);
      } finally {
        await daemon.stop();
        // The pool and the parameter-table folder the daemon keeps beside it.
        await sh(`rm -rf /dev/shm/strata-test-${process.pid}-*.pool /dev/shm/strata-test-${process.pid}-*.pool.params /dev/shm/strata-test-${process.pid}-*.pool.whole`);
      }
    });
  }

  it('a warmup without --tier ends once its blocks are written through to NVMe: a SIGKILL right after loses none', async () => {
    const args = ['--endpoint', testS3().endpoint, '--state-dir', join(work, 'state-warm-through'), '--dram', '32MiB', '--memory', '64MiB', '--nvme', `${join(work, 'nvme-through')}:64MiB`, '--log-level', 'warn'];
    let daemon = await startMount(`s3://${bucket}`, mnt, args);
    try {
      const warm = await runStrata(['warmup', `${mnt}/models`, '--api', apiUrlOf(daemon)]);
      expect(warm.code).toBe(0);
      expect(warm.stdout).toMatch(/warmup done: 1\/1 files/);
      await daemon.stop('SIGKILL');
      daemon = await startMount(`s3://${bucket}`, mnt, args);
      await dropPageCache();
      expect((await sh(`sha256sum ${mnt}/models/model.bin`)).split(' ')[0]).toBe(sum(model));
      expect(await storeBytes(apiUrlOf(daemon))).toBe(0);
    } finally {
      await daemon.stop();
    }
  });

  it('warmup --tier nvme puts every block in NVMe before it ends, without filling DRAM', async () => {
    const args = ['--endpoint', testS3().endpoint, '--state-dir', join(work, 'state-warm-nvme'), '--dram', '8MiB', '--memory', '24MiB', '--nvme', `${join(work, 'nvme-warm')}:64MiB`, '--log-level', 'warn'];
    const daemon = await startMount(`s3://${bucket}`, mnt, args);
    try {
      const api = apiUrlOf(daemon);
      const warm = await runStrata(['warmup', `${mnt}/models`, '--tier', 'nvme', '--api', api]);
      expect(warm.code).toBe(0);
      expect(warm.stdout).toMatch(/warmup done: 1\/1 files/);
      const tiers = (JSON.parse((await runStrata(['status', '--api', api, '--json'])).stdout) as { tiers: Array<{ name: string; usedBytes: number }> }).tiers;
      expect(tiers.find((t) => t.name === 'nvme')!.usedBytes).toBeGreaterThanOrEqual(model.length);
      expect(tiers.find((t) => t.name === 'dram')!.usedBytes).toBe(0);
      const fetched = await storeBytes(api);
      expect(fetched).toBe(model.length);
      await dropPageCache();
      expect((await sh(`sha256sum ${mnt}/models/model.bin`)).split(' ')[0]).toBe(sum(model));
      expect(await storeBytes(api)).toBe(fetched);
      const noPmem = await runStrata(['warmup', `${mnt}/models`, '--tier', 'pmem', '--api', api]);
      expect(noPmem.code).toBe(1);
      expect(noPmem.stderr).toMatch(/"pmem" is not configured/);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('keeps pinned files in the NVMe tier while other reads would evict them', async () => {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'other/big.bin', Body: randomBytes(24 * MiB) }));
    // Room for about 26 MiB: the 20 MiB model and the 24 MiB file cannot both stay.
    const args = ['--endpoint', testS3().endpoint, '--state-dir', join(work, 'state-pin'), '--dram', '8MiB', '--memory', '24MiB', '--nvme', `${join(work, 'nvme-pin')}:26MiB`, '--log-level', 'warn'];
    let daemon = await startMount(`s3://${bucket}`, mnt, args);
    try {
      const warm = await runStrata(['warmup', `${mnt}/models`, '--pin', '--api', apiUrlOf(daemon)]);
      expect(warm.code).toBe(0);
      expect(warm.stdout).toMatch(/warmup done: 1\/1 files/);
      await sh(`cat ${mnt}/other/big.bin > /dev/null`);
      expect(await daemon.stop()).toBe(0);
      daemon = await startMount(`s3://${bucket}`, mnt, args);
      const api = apiUrlOf(daemon);
      await new Promise((r) => setTimeout(r, 500)); // the start-up job re-reading pinned paths
      const before = await storeBytes(api);
      await dropPageCache();
      expect((await sh(`sha256sum ${mnt}/models/model.bin`)).split(' ')[0]).toBe(sum(model));
      expect(await storeBytes(api)).toBe(before);
      expect(before).toBe(0);
      const pins = await (await fetch(`${api}/v1/pins`)).json();
      expect(pins).toEqual({ paths: ['/models'] });
    } finally {
      await daemon.stop();
    }
    const dramOnly = await startMount(`s3://${bucket}`, mnt, ['--endpoint', testS3().endpoint, '--state-dir', join(work, 'state-nopin'), '--log-level', 'warn']);
    try {
      const refused = await runStrata(['warmup', `${mnt}/models`, '--pin', '--api', apiUrlOf(dramOnly)]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/pinning needs a pmem or nvme tier/);
    } finally {
      await dramOnly.stop();
    }
  });

  it('never serves stale blocks: a changed object is read anew once the metadata TTL has passed', async () => {
    const daemon = await startMount(`s3://${bucket}`, mnt, ['--endpoint', testS3().endpoint, '--state-dir', join(work, 'state-etag'), '--log-level', 'warn']);
    try {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'v.txt', Body: 'version one' }));
      await new Promise((r) => setTimeout(r, 1100));
      expect(await sh(`cat ${mnt}/v.txt`)).toBe('version one');
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'v.txt', Body: 'version two!' }));
      await new Promise((r) => setTimeout(r, 1100));
      expect(await sh(`cat ${mnt}/v.txt`)).toBe('version two!');
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});
