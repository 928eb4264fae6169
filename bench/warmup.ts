/**
 * `strata warmup` of 10,000 files of 100 KiB, next to an SDK parallel download of
 * the same files in the same run (what `aws s3 cp --recursive` does), with the latency of
 * foreground reads through the mount while a warmup runs, next to the same reads idle.
 *
 * The machine is 2 shared cores and RGW itself takes about half of the CPU a download needs,
 * so the figures swing by tens of percent between passes. Each round therefore runs both
 * baselines and the warmup back to back, and the ratios are per round (median of ROUNDS).
 * The foreground-latency pass is separate: the reads it makes throttle the job on purpose
 * (the fetch scheduler lets them go first), which would blur the throughput comparison.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { startRgw, type RgwHandle } from '../test/fixtures/rgw.js';
import { apiUrlOf, cleanupDir, runStrata, startServe, tempDir, type StrataProcess } from '../test/fixtures/strata-process.js';
import { createBucket, putMany, s3Client, shell } from './lib/harness.js';
import { printTable } from './lib/table.js';

const run = promisify(execFile);
const FILES = 10_000;
const FILE_BYTES = 100 * 1024;
const FOREGROUND_FILES = 40;
/** `aws s3 cp` runs 10 requests at a time by default; 16 gives the baseline the benefit of the doubt. */
const SDK_PARALLEL = 16;
/** Rounds of (both baselines, warmup): three give a median that one noisy pass cannot move. */
const ROUNDS = 3;
/** Files per folder, as in a sharded training set (100 folders of 100). */
const FILES_PER_FOLDER = 100;

interface Round {
  readonly sdkToFiles: number;
  readonly sdkDiscard: number;
  readonly warmup: number;
  /** The same warmup with block GETs sent through the SDK's command stack (STRATA_S3_GET=sdk): the path before s3-get.ts. */
  readonly warmupSdkGet: number;
}

export async function runBench(): Promise<Record<string, unknown>> {
  const rgw = await startRgw();
  const work = await tempDir('bench-warmup');
  try {
    const client = s3Client(rgw);
    await createBucket(client, 'warm');
    const body = randomBytes(FILE_BYTES);
    await putMany(client, 'warm', Array.from({ length: FILES }, (_, i) => ({ key: `set/shard_${i % FILES_PER_FOLDER}/f_${i}.bin`, body })));
    await putMany(client, 'warm', Array.from({ length: 2 * FOREGROUND_FILES }, (_, i) => ({ key: `fg/f_${i}.bin`, body })));

    const rounds: Round[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const toFiles = await sdkDownload(client, join(work, `download-${round}`));
      await cleanupDir(join(work, `download-${round}`));
      const discard = await sdkDownload(client, undefined);
      const warm = await withDaemon(rgw, work, `r${round}`, async (mnt, api, env) => timedWarmup(mnt, api, env));
      const warmSdkGet = await withDaemon(rgw, work, `r${round}-sdk`, async (mnt, api, env) => timedWarmup(mnt, api, env), { STRATA_S3_GET: 'sdk' });
      rounds.push({ sdkToFiles: toFiles, sdkDiscard: discard, warmup: warm, warmupSdkGet: warmSdkGet });
    }
    client.destroy();

    const latency = await withDaemon(rgw, work, 'latency', async (mnt, api, env) => {
      const idle = await foregroundLatencies(mnt, 0);
      const warmup = timedWarmup(mnt, api, env);
      await new Promise((r) => setTimeout(r, 1000));
      const busy = await foregroundLatencies(mnt, FOREGROUND_FILES);
      return { idle, busy, warmSeconds: await warmup };
    });

    const rate = (seconds: number) => FILES / seconds;
    printTable(`Prefetch of ${FILES} files of 100 KiB, ${ROUNDS} rounds (files/s per round)`, ['case', ...rounds.map((_, i) => `round ${i + 1}`), 'median'], [
      ['SDK download to local files (16 in flight)', ...rounds.map((r) => rate(r.sdkToFiles)), median(rounds.map((r) => rate(r.sdkToFiles)))],
      ['SDK download, bytes discarded (16 in flight)', ...rounds.map((r) => rate(r.sdkDiscard)), median(rounds.map((r) => rate(r.sdkDiscard)))],
      ['strata warmup (into DRAM)', ...rounds.map((r) => rate(r.warmup)), median(rounds.map((r) => rate(r.warmup)))],
      ['strata warmup, GETs through the SDK (before)', ...rounds.map((r) => rate(r.warmupSdkGet)), median(rounds.map((r) => rate(r.warmupSdkGet)))],
      ['warmup / SDK to files', ...rounds.map((r) => r.sdkToFiles / r.warmup), median(rounds.map((r) => r.sdkToFiles / r.warmup))],
      ['warmup / SDK discarding', ...rounds.map((r) => r.sdkDiscard / r.warmup), median(rounds.map((r) => r.sdkDiscard / r.warmup))],
      ['warmup / warmup with SDK GETs', ...rounds.map((r) => r.warmupSdkGet / r.warmup), median(rounds.map((r) => r.warmupSdkGet / r.warmup))],
    ]);
    printTable('Foreground reads of 100 KiB files through the mount (cold), one at a time', ['case', 'p50 ms', 'p99 ms'], [
      ['idle daemon', percentile(latency.idle, 0.5), percentile(latency.idle, 0.99)],
      ['during warmup', percentile(latency.busy, 0.5), percentile(latency.busy, 0.99)],
    ]);
    printTable('The warmup those reads ran during', ['case', 'files/s'], [['strata warmup with foreground reads', rate(latency.warmSeconds)]]);
    return {
      rounds: rounds.map((r) => ({ sdkToFilesFilesPerSecond: rate(r.sdkToFiles), sdkDiscardFilesPerSecond: rate(r.sdkDiscard), warmupFilesPerSecond: rate(r.warmup), warmupSdkGetFilesPerSecond: rate(r.warmupSdkGet) })),
      warmupOverSdkToFiles: median(rounds.map((r) => r.sdkToFiles / r.warmup)),
      warmupOverSdkDiscard: median(rounds.map((r) => r.sdkDiscard / r.warmup)),
      warmupOverWarmupSdkGet: median(rounds.map((r) => r.warmupSdkGet / r.warmup)),
      foregroundIdleMs: { p50: percentile(latency.idle, 0.5), p99: percentile(latency.idle, 0.99) },
      foregroundDuringWarmupMs: { p50: percentile(latency.busy, 0.5), p99: percentile(latency.busy, 0.99) },
      warmupWithForegroundFilesPerSecond: rate(latency.warmSeconds),
    };
  } finally {
    await cleanupDir(work);
    await rgw.stop();
  }
}

/**
 * Seconds to list `set/` and GET every object with SDK_PARALLEL requests in flight. With
 * `dir`, each object is written to a file there, keys as paths (what `aws s3 cp --recursive`
 * does); without, the bytes are dropped.
 */
async function sdkDownload(client: S3Client, dir: string | undefined): Promise<number> {
  const started = performance.now();
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: 'warm', Prefix: 'set/', ContinuationToken: token }));
    for (const o of page.Contents ?? []) keys.push(o.Key!);
    token = page.NextContinuationToken;
  } while (token);
  if (dir) for (let shard = 0; shard < FILES_PER_FOLDER; shard++) await mkdir(join(dir, 'set', `shard_${shard}`), { recursive: true });
  let next = 0;
  await Promise.all(Array.from({ length: SDK_PARALLEL }, async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      const out = await client.send(new GetObjectCommand({ Bucket: 'warm', Key: key }));
      const bytes = await out.Body!.transformToByteArray();
      if (dir) await writeFile(join(dir, key), bytes);
    }
  }));
  return (performance.now() - started) / 1000;
}

/** Runs `body` against a fresh daemon (empty cache, 1.5 GiB of DRAM, `daemonEnv` added) with the bucket linked at /warm. */
async function withDaemon<T>(rgw: RgwHandle, work: string, name: string, body: (mnt: string, api: string, env: NodeJS.ProcessEnv) => Promise<T>, daemonEnv: NodeJS.ProcessEnv = {}): Promise<T> {
  const mnt = join(work, `mnt-${name}`);
  await shell(`mkdir -p ${mnt}`);
  const env = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region };
  const daemon: StrataProcess = await startServe(mnt, ['--state-dir', join(work, `state-${name}`), '--dram', '1536MiB', '--log-level', 'warn'], { ...env, ...daemonEnv });
  try {
    const api = apiUrlOf(daemon);
    const added = await runStrata(['links', 'add', 'warm', '/warm', 's3://warm', '--endpoint', rgw.endpoint, '--api', api], env);
    if (added.code !== 0) throw new Error(added.stderr);
    return await body(mnt, api, env);
  } finally {
    await daemon.stop();
  }
}

/** Seconds `strata warmup MNT/warm/set` takes, from starting the CLI to its exit. */
async function timedWarmup(mnt: string, api: string, env: NodeJS.ProcessEnv): Promise<number> {
  const started = performance.now();
  const result = await runStrata(['warmup', `${mnt}/warm/set`, '--api', api], env, 600_000);
  if (result.code !== 0) throw new Error(`warmup failed: ${result.stderr}`);
  return (performance.now() - started) / 1000;
}

/** Milliseconds to read each of FOREGROUND_FILES cold files, one at a time, from a child process. */
async function foregroundLatencies(mnt: string, offset: number): Promise<number[]> {
  const script = `
    const fs = require('fs'); const out = [];
    for (let i = ${offset}; i < ${offset + FOREGROUND_FILES}; i++) {
      const t = process.hrtime.bigint(); fs.readFileSync('${mnt}/warm/fg/f_' + i + '.bin');
      out.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    console.log(JSON.stringify(out));`;
  const { stdout } = await run(process.execPath, ['-e', script], { encoding: 'utf8' });
  return JSON.parse(stdout) as number[];
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function median(values: number[]): number {
  return percentile(values, 0.5);
}

export { runBench as run };

if (import.meta.url === `file://${process.argv[1]}`) {
  await runBench();
}
