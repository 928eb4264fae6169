/**
 * Checkpoint saves through the mount: a 1 GiB file written with `dd bs=4M` into a Strata mount
 * over Ceph RGW. Time until `close()` returns in async mode, next to a local `dd conv=fsync` of
 * the same size on the same disk; the time until the object is complete in the store, next to
 * the AWS SDK's own multipart upload of the same file (8 MiB parts, 8 in flight, from the local
 * file); sync mode's close; and the daemon's CPU seconds per GiB.
 *
 * The machine has 2 cores shared with the gateway (and with other work), so every round runs
 * local, SDK, async and sync back to back, drops the page cache before each, and the table gives
 * the medians of each round's ratios (never a ratio of figures from different rounds). Async
 * close runs twice: with write passthrough (the default: the kernel writes the staged file) and
 * with `--write-passthrough off` (every write through the daemon). RGW's
 * memstore frees deleted objects only when its garbage collector runs, so every upload gets a
 * fresh gateway. `STRATA_BENCH_ROUNDS` sets the rounds (default 3), `STRATA_BENCH_CKPT_MIB` the
 * size; `STRATA_BENCH_PROFILE=DIR` writes a CPU profile of every daemon (see cold-read.ts).
 *
 * A node's daemon runs for days and saves a checkpoint every few minutes, so each Strata daemon
 * first writes one unmeasured file of WARMUP_MIB (through to the store) before the measured one,
 * as bench/cold-read.ts has each daemon serve other data first: a just-started daemon's first
 * write also pays for V8 compiling the write path and for its buffers' first touch. One more
 * async row per round keeps that case: a just-started daemon's first write. Freed memory is held
 * in the guest during the run (bench/lib/page-reporting.ts): dropping the page cache before each
 * write otherwise hands it to the host, and the next 1 GiB of page cache, whoever writes it, is
 * paid for again at several times the cost of a write.
 */
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Upload } from '@aws-sdk/lib-storage';
import { startRgw } from '../test/fixtures/rgw.js';
import { apiUrlOf, cleanupDir, startMount, tempDir } from '../test/fixtures/strata-process.js';
import { profileArgs } from './cold-read.js';
import { createBucket, dropPageCache, s3Client, shell, timeCommand } from './lib/harness.js';
import { withFreedMemoryHeld } from './lib/page-reporting.js';
import { cpuSecondsOf } from './lib/peer-mounts.js';
import { printTable } from './lib/table.js';
import { median } from './lib/stats.js';

const MiB = 1024 * 1024;
const FILE_MIB = Number(process.env.STRATA_BENCH_CKPT_MIB ?? 1024);
const COUNT = FILE_MIB / 4; // dd bs=4M
const ROUNDS = Number(process.env.STRATA_BENCH_ROUNDS ?? 3);
/** The unmeasured file each daemon writes (and uploads) before the measured one. */
const WARMUP_MIB = 256;
/** The SDK baseline's multipart settings (8 MiB parts, 8 in flight: what bench/cold-read's SDK row uses for reads). */
const SDK_PART_BYTES = 8 * MiB;
const SDK_QUEUE = 8;

interface Round {
  readonly localSeconds: number;
  readonly sdkSeconds: number;
  readonly async: Strata;
  /** Async close with `--write-passthrough off`: every write through the daemon. */
  readonly asyncDaemon: Strata;
  /** Async close, the first write of a just-started daemon. */
  readonly asyncFresh: Strata;
  readonly sync: Strata;
}

interface Strata {
  readonly closeSeconds: number;
  readonly storeSeconds: number;
  readonly cpuPerGiB: number;
}

async function withGateway<T>(body: (rgw: Awaited<ReturnType<typeof startRgw>>) => Promise<T>): Promise<T> {
  const rgw = await startRgw({ startTimeoutMs: 120_000 });
  try {
    const client = s3Client(rgw);
    await createBucket(client, 'ckpt');
    client.destroy();
    return await body(rgw);
  } finally {
    await rgw.stop();
  }
}

const dd = (target: string, extra = '') => `dd if=/dev/zero of=${target} bs=4M count=${COUNT} status=none ${extra}`;

async function strataRun(work: string, mode: 'async' | 'sync', round: number, passthrough: 'on' | 'off' = 'on', warm = true): Promise<Strata> {
  return withGateway(async (rgw) => {
    const env = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region };
    const mnt = join(work, 'mnt');
    await shell(`mkdir -p ${mnt}`);
    const args = ['--endpoint', rgw.endpoint, '--state-dir', join(work, `state-${mode}-${round}`), '--close', mode, '--write-passthrough', passthrough, '--log-level', 'warn'];
    const daemon = await startMount('s3://ckpt', mnt, args, env, profileArgs());
    try {
      if (warm) {
        await shell(`dd if=/dev/zero of=${mnt}/warmup.bin bs=4M count=${WARMUP_MIB / 4} status=none`);
        const warmed = await fetch(`${apiUrlOf(daemon)}/v1/uploads/flush`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        if (warmed.status !== 200) throw new Error(`flush of the warm-up file answered ${warmed.status}: ${await warmed.text()}`);
      }
      await dropPageCache();
      const pid = daemon.child.pid!;
      const cpuBefore = await cpuSecondsOf(pid);
      const started = performance.now();
      await shell(dd(`${mnt}/${mode}.bin`));
      const closeSeconds = (performance.now() - started) / 1000;
      const flushed = await fetch(`${apiUrlOf(daemon)}/v1/uploads/flush`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      if (flushed.status !== 200) throw new Error(`flush answered ${flushed.status}: ${await flushed.text()}`);
      const storeSeconds = (performance.now() - started) / 1000;
      const cpu = (await cpuSecondsOf(pid)) - cpuBefore;
      return { closeSeconds, storeSeconds, cpuPerGiB: cpu / (FILE_MIB / 1024) };
    } finally {
      await daemon.stop();
      await cleanupDir(join(work, `state-${mode}-${round}`));
    }
  });
}

async function sdkRun(file: string): Promise<number> {
  return withGateway(async (rgw) => {
    const client = s3Client(rgw);
    try {
      await dropPageCache();
      const started = performance.now();
      await new Upload({ client, params: { Bucket: 'ckpt', Key: 'sdk.bin', Body: createReadStream(file) }, partSize: SDK_PART_BYTES, queueSize: SDK_QUEUE }).done();
      return (performance.now() - started) / 1000;
    } finally {
      client.destroy();
    }
  });
}

export async function run(): Promise<Record<string, unknown>> {
  return withFreedMemoryHeld(measureAll);
}

async function measureAll(): Promise<Record<string, unknown>> {
  const work = await tempDir('bench-ckpt');
  try {
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const local = join(work, 'local.bin');
      await dropPageCache();
      const localSeconds = await timeCommand(dd(local, 'conv=fsync'));
      const sdkSeconds = await sdkRun(local);
      await shell(`rm -f ${local}`);
      const async = await strataRun(work, 'async', i);
      const asyncDaemon = await strataRun(work, 'async', i, 'off');
      const sync = await strataRun(work, 'sync', i);
      const asyncFresh = await strataRun(work, 'async', i, 'on', false);
      rounds.push({ localSeconds, sdkSeconds, async, asyncDaemon, sync, asyncFresh });
    }
    const med = (f: (r: Round) => number) => median(rounds.map(f));
    const range = (f: (r: Round) => number) => `${Math.min(...rounds.map(f)).toFixed(2)}-${Math.max(...rounds.map(f)).toFixed(2)}`;
    const rows: Array<[string, number, string, number, string]> = [
      ['local dd conv=fsync (same disk)', med((r) => r.localSeconds), range((r) => r.localSeconds), 1, ''],
      ['SDK multipart upload of the file (8 MiB x 8)', med((r) => r.sdkSeconds), range((r) => r.sdkSeconds), 1, ''],
      ['strata async: close() returned (x local)', med((r) => r.async.closeSeconds), range((r) => r.async.closeSeconds), med((r) => r.async.closeSeconds / r.localSeconds), '<= 1.1'],
      ['strata async: object in the store after close (s)', med((r) => r.async.storeSeconds - r.async.closeSeconds), range((r) => r.async.storeSeconds - r.async.closeSeconds), 0, '<= 2 s for 512 MiB'],
      ['strata async: object in the store (x SDK)', med((r) => r.async.storeSeconds), range((r) => r.async.storeSeconds), med((r) => r.async.storeSeconds / r.sdkSeconds), '<= 1.1'],
      ['strata async, just-started daemon: close() (x local)', med((r) => r.asyncFresh.closeSeconds), range((r) => r.asyncFresh.closeSeconds), med((r) => r.asyncFresh.closeSeconds / r.localSeconds), ''],
      ['strata async, --write-passthrough off: close() (x local)', med((r) => r.asyncDaemon.closeSeconds), range((r) => r.asyncDaemon.closeSeconds), med((r) => r.asyncDaemon.closeSeconds / r.localSeconds), ''],
      ['strata async, --write-passthrough off: object in the store (x SDK)', med((r) => r.asyncDaemon.storeSeconds), range((r) => r.asyncDaemon.storeSeconds), med((r) => r.asyncDaemon.storeSeconds / r.sdkSeconds), ''],
      ['strata sync: close() returned (x SDK)', med((r) => r.sync.closeSeconds), range((r) => r.sync.closeSeconds), med((r) => r.sync.closeSeconds / r.sdkSeconds), ''],
    ];
    printTable(`${FILE_MIB} MiB checkpoint written with dd bs=4M, ${ROUNDS} rounds (medians of per-round ratios)`, ['case', 'seconds', 'range', 'ratio', 'target'], rows);
    const perRound = (f: (r: Round) => number) => rounds.map((r) => f(r).toFixed(2)).join(', ');
    process.stdout.write(`per round: async close / local ${perRound((r) => r.async.closeSeconds / r.localSeconds)}; just-started daemon ${perRound((r) => r.asyncFresh.closeSeconds / r.localSeconds)}; in store / SDK ${perRound((r) => r.async.storeSeconds / r.sdkSeconds)}; without write passthrough, close / local ${perRound((r) => r.asyncDaemon.closeSeconds / r.localSeconds)}\n`);
    process.stdout.write(`daemon CPU s/GiB: async ${med((r) => r.async.cpuPerGiB).toFixed(2)}, async without write passthrough ${med((r) => r.asyncDaemon.cpuPerGiB).toFixed(2)}, sync ${med((r) => r.sync.cpuPerGiB).toFixed(2)}\n`);
    return { fileMiB: FILE_MIB, rounds };
  } finally {
    await cleanupDir(work);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run();
}
