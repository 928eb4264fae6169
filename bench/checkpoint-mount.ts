/**
 * Checkpoint saves through the mount (issue 4): a 2 GiB file written with `dd bs=4M` into a
 * Strata mount over Ceph RGW. Time until `close()` returns in async mode, next to a local
 * `dd conv=fsync` of the same size on the same disk in the same run, and next to sync mode;
 * and the time until the object is in the store.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startRgw } from '../test/fixtures/rgw.js';
import { apiUrlOf, cleanupDir, startMount, tempDir } from '../test/fixtures/strata-process.js';
import { createBucket, s3Client, shell, timeCommand } from './lib/harness.js';
import { printTable } from './lib/table.js';

const COUNT = 512; // × 4 MiB = 2 GiB

export async function run(): Promise<Record<string, unknown>> {
  const rgw = await startRgw({ startTimeoutMs: 120_000 });
  const work = await tempDir('bench-ckpt');
  try {
    const client = s3Client(rgw);
    await createBucket(client, 'ckpt');
    client.destroy();
    const env = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region };
    const mnt = join(work, 'mnt');
    await shell(`mkdir -p ${mnt}`);
    const dd = (target: string, extra = '') => `dd if=/dev/zero of=${target} bs=4M count=${COUNT} status=none ${extra}`;

    const localSeconds = await timeCommand(dd(join(work, 'local.bin'), 'conv=fsync'));
    await shell(`rm -f ${join(work, 'local.bin')}`);

    const rows: Array<[string, number, number]> = [['local dd conv=fsync (same disk)', localSeconds, 1]];
    const result: Record<string, unknown> = { localSeconds };
    for (const mode of ['async', 'sync'] as const) {
      const daemon = await startMount('s3://ckpt', mnt, ['--endpoint', rgw.endpoint, '--state-dir', join(work, `state-${mode}`), '--close', mode, '--log-level', 'warn'], env);
      try {
        const started = performance.now();
        await shell(dd(`${mnt}/${mode}.bin`));
        const closeSeconds = (performance.now() - started) / 1000;
        await fetch(`${apiUrlOf(daemon)}/v1/uploads/flush`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        const storeSeconds = (performance.now() - started) / 1000;
        rows.push([`strata ${mode}: close() returned`, closeSeconds, closeSeconds / localSeconds]);
        rows.push([`strata ${mode}: object in the store`, storeSeconds, storeSeconds / localSeconds]);
        result[mode] = { closeSeconds, storeSeconds, closeOverLocal: closeSeconds / localSeconds };
      } finally {
        await daemon.stop();
      }
    }
    printTable('2 GiB checkpoint written with dd bs=4M', ['case', 'seconds', 'x local'], rows);
    return result;
  } finally {
    await cleanupDir(work);
    await rgw.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run();
}
