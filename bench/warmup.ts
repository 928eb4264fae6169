/**
 * `strata warmup` of 10,000 files of 100 KiB (issue 5), next to an SDK parallel download of
 * the same files in the same run (what `aws s3 cp --recursive` does), with the latency of
 * foreground reads through the mount while the warmup runs, next to the same reads idle.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startRgw } from '../test/fixtures/rgw.js';
import { apiUrlOf, cleanupDir, runStrata, startServe, tempDir } from '../test/fixtures/strata-process.js';
import { createBucket, putMany, s3Client, shell } from './lib/harness.js';
import { printTable } from './lib/table.js';

const run = promisify(execFile);
const FILES = 10_000;
const FILE_BYTES = 100 * 1024;
const FOREGROUND_FILES = 40;
/** `aws s3 cp` runs 10 requests at a time by default; 16 gives the baseline the benefit of the doubt. */
const SDK_PARALLEL = 16;

export async function runBench(): Promise<Record<string, unknown>> {
  const rgw = await startRgw();
  const work = await tempDir('bench-warmup');
  try {
    const client = s3Client(rgw);
    await createBucket(client, 'warm');
    const body = randomBytes(FILE_BYTES);
    await putMany(client, 'warm', Array.from({ length: FILES }, (_, i) => ({ key: `set/shard_${i % 100}/f_${i}.bin`, body })));
    await putMany(client, 'warm', Array.from({ length: 2 * FOREGROUND_FILES }, (_, i) => ({ key: `fg/f_${i}.bin`, body })));

    // Baseline: list, then GET every object with SDK_PARALLEL requests in flight.
    const sdkStart = performance.now();
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: 'warm', Prefix: 'set/', ContinuationToken: token }));
      for (const o of page.Contents ?? []) keys.push(o.Key!);
      token = page.NextContinuationToken;
    } while (token);
    let next = 0;
    await Promise.all(Array.from({ length: SDK_PARALLEL }, async () => {
      while (next < keys.length) {
        const out = await client.send(new GetObjectCommand({ Bucket: 'warm', Key: keys[next++]! }));
        await out.Body!.transformToByteArray();
      }
    }));
    const sdkSeconds = (performance.now() - sdkStart) / 1000;
    client.destroy();

    const mnt = join(work, 'mnt');
    await shell(`mkdir -p ${mnt}`);
    const env = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region };
    const daemon = await startServe(mnt, ['--state-dir', join(work, 'state'), '--dram', '1536MiB', '--log-level', 'warn'], env);
    try {
      const api = apiUrlOf(daemon);
      const added = await runStrata(['links', 'add', 'warm', '/warm', 's3://warm', '--endpoint', rgw.endpoint, '--api', api], env);
      if (added.code !== 0) throw new Error(added.stderr);
      const idle = await foregroundLatencies(mnt, 0);
      const warmStart = performance.now();
      const warmup = runStrata(['warmup', `${mnt}/warm/set`, '--api', api], env, 600_000);
      await new Promise((r) => setTimeout(r, 1000));
      const busy = await foregroundLatencies(mnt, FOREGROUND_FILES);
      const result = await warmup;
      const warmSeconds = (performance.now() - warmStart) / 1000;
      if (result.code !== 0) throw new Error(`warmup failed: ${result.stderr}`);
      const rows: Array<[string, number, number]> = [
        ['SDK parallel download (16 in flight)', FILES / sdkSeconds, sdkSeconds],
        ['strata warmup', FILES / warmSeconds, warmSeconds],
      ];
      printTable(`Prefetch of ${FILES} files of 100 KiB`, ['case', 'files/s', 'seconds'], rows);
      printTable('Foreground reads of 100 KiB files through the mount (cold)', ['case', 'p50 ms', 'p99 ms'], [
        ['idle daemon', percentile(idle, 0.5), percentile(idle, 0.99)],
        ['during warmup', percentile(busy, 0.5), percentile(busy, 0.99)],
      ]);
      return {
        sdkFilesPerSecond: FILES / sdkSeconds,
        warmupFilesPerSecond: FILES / warmSeconds,
        warmupOverSdk: sdkSeconds / warmSeconds,
        foregroundIdleMs: { p50: percentile(idle, 0.5), p99: percentile(idle, 0.99) },
        foregroundDuringWarmupMs: { p50: percentile(busy, 0.5), p99: percentile(busy, 0.99) },
      };
    } finally {
      await daemon.stop();
    }
  } finally {
    await cleanupDir(work);
    await rgw.stop();
  }
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

export { runBench as run };

if (import.meta.url === `file://${process.argv[1]}`) {
  await runBench();
}
