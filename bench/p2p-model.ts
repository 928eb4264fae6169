/**
 * Peer-to-peer block sharing : N = 1, 2, 3 daemons on one machine, each with its
 * own mount, read one 1 GiB model at the same time, cold. For each N, with `--peers` and
 * without (each daemon alone), in the same run: the bytes all daemons pulled from the
 * store together and the wall time of the slowest reader. The goal is store bytes at most
 * 1.15x the model for any N with peers, and the slowest reader about as fast as one alone.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startRgw, freePort } from '../test/fixtures/rgw.js';
import { cleanupDir, startMount, tempDir, type StrataProcess } from '../test/fixtures/strata-process.js';
import { createBucket, dropPageCache, metric, s3Client, shell, timeCommand, uploadLarge } from './lib/harness.js';
import { printTable } from './lib/table.js';

const MiB = 1024 * 1024;
const MODEL_BYTES = 1024 * MiB;
/** DRAM per daemon: the whole model plus room, so no block is evicted before a peer asks for it. */
const DRAM = '1280MiB';
const SECRET = 'bench-peer-secret-5f0e2b7c';

interface RunResult {
  readonly daemons: number;
  readonly peers: boolean;
  readonly storeMiB: number;
  readonly storeRatio: number;
  readonly slowestSeconds: number;
  readonly slowestMiBps: number;
  readonly fromPeersMiB: number;
}


export async function run(): Promise<Record<string, unknown>> {
  const rgw = await startRgw();
  const work = await tempDir('bench-p2p');
  const results: RunResult[] = [];
  try {
    const client = s3Client(rgw);
    await createBucket(client, 'bench');
    await uploadLarge(client, 'bench', 'model.bin', randomBytes(MODEL_BYTES));
    client.destroy();
    const env = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region, STRATA_PEER_SECRET: SECRET };

    for (const n of [1, 2, 3]) {
      for (const peers of [false, true]) {
        const tag = `${n}-${peers ? 'peers' : 'alone'}`;
        const ports = await Promise.all(Array.from({ length: n }, freePort));
        const apis = ports.map((p) => `http://127.0.0.1:${p}`);
        const mounts = ports.map((_, i) => join(work, `mnt-${tag}-${i}`));
        const daemons: StrataProcess[] = [];
        try {
          for (let i = 0; i < n; i += 1) {
            await shell(`mkdir -p ${mounts[i]}`);
            const args = ['--endpoint', rgw.endpoint, '--log-level', 'warn', '--state-dir', join(work, `state-${tag}-${i}`), '--dram', DRAM, '--api', `127.0.0.1:${ports[i]}`];
            if (peers) args.push('--peers', apis.join(','));
            daemons.push(await startMount('s3://bench', mounts[i]!, args, env));
          }
          await dropPageCache();
          const seconds = await Promise.all(mounts.map((mnt) => timeCommand(`dd if=${mnt}/model.bin of=/dev/null bs=1M status=none`)));
          let filled = 0;
          let fromPeers = 0;
          for (const api of apis) {
            filled += await metric(api, 'strata_cache_store_bytes_total');
            fromPeers += await metric(api, 'strata_p2p_bytes_from_peers_total');
          }
          // The cache counts every miss it filled; the bytes that came from peers did not come from the store.
          const store = filled - fromPeers;
          const slowest = Math.max(...seconds);
          results.push({
            daemons: n,
            peers,
            storeMiB: store / MiB,
            storeRatio: store / MODEL_BYTES,
            slowestSeconds: slowest,
            slowestMiBps: MODEL_BYTES / MiB / slowest,
            fromPeersMiB: fromPeers / MiB,
          });
        } finally {
          for (const daemon of daemons) {
            const code = await daemon.stop('SIGTERM');
            if (code !== 0) process.stderr.write(`strata exited ${code}: ${daemon.stderr()}\n`);
          }
        }
      }
    }
  } finally {
    await rgw.stop();
    await cleanupDir(work);
  }
  const alone1 = results.find((r) => r.daemons === 1 && !r.peers)!;
  printTable(
    'N daemons reading one 1 GiB model at once (cold, RGW on loopback)',
    ['daemons', 'peers', 'store MiB', 'store / model', 'from peers MiB', 'slowest s', 'slowest MiB/s', 'slowest vs 1 alone'],
    results.map((r) => [r.daemons, r.peers ? 'yes' : 'no', r.storeMiB.toFixed(0), r.storeRatio.toFixed(2), r.fromPeersMiB.toFixed(0), r.slowestSeconds.toFixed(2), r.slowestMiBps.toFixed(0), (alone1.slowestSeconds / r.slowestSeconds).toFixed(2)]),
  );
  return { modelBytes: MODEL_BYTES, runs: results };
}
