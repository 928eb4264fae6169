/**
 * Checkpoint writes at the WritePath level, over a Ceph RGW on loopback:
 * a 2 GiB file written in 4 MiB writes, next to baselines measured in the same run.
 *
 * Rows:
 * - local file: the same writes to a plain file on the staging disk, then fsync (the goal
 *   for an async close is at most 1.2x this);
 * - WritePath async: time until `release` returns (bytes staged and fsync'd, journaled),
 *   and until the object is in the store (parts stream while the file is written), with the
 *   default 2 parts in flight while writing and, for comparison, all 8;
 * - WritePath sync: time until `release` returns, which is when the store has the object;
 * - SDK alone: `@aws-sdk/lib-storage` Upload of the same bytes from memory, same part size
 *   and concurrency, for the upload throughput the WritePath should reach (goal: 90%).
 *
 * RGW's memstore keeps objects in RAM (about 2x their size) and frees deleted ones only when
 * its garbage collector runs, so every upload gets a fresh gateway (started before the clock
 * starts). Each figure is the best of two interleaved rounds. `STRATA_BENCH_CKPT_MIB` shrinks
 * the file for a quick run.
 *
 * Run: `npx tsx bench/checkpoint-write.ts` (or `npm run bench -- checkpoint-write`).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { WritePath } from '../checkpoints/index.js';
import { openStore } from '../store/index.js';
import { createLogger } from '../telemetry/index.js';
import { startRgw } from '../test/fixtures/rgw.js';
import { createBucket, dropPageCache, s3Client } from './lib/harness.js';
import { printTable } from './lib/table.js';

const MiB = 1024 * 1024;
/** 2 GiB: the size the issue names; a checkpoint shard of a mid-sized model. */
const FILE_BYTES = Number(process.env.STRATA_BENCH_CKPT_MIB ?? 2048) * MiB;
/** `dd bs=4M`, as in the issue. */
const WRITE_BYTES = 4 * MiB;
/** The WritePath's defaults, used for the SDK baseline too so both cut the file alike. */
const PART_BYTES = 16 * MiB;
const CONCURRENCY = 8;
const BUCKET = 'bench-ckpt';
/** Parts in flight while writing: the WritePath's default (2), and all of CONCURRENCY for the comparison row. */
const STREAMING_PARTS = 2;
/** Best of two: enough to skip one unlucky run on a shared machine without doubling a long bench further. */
const ROUNDS = 2;

/** One 4 MiB pattern, its first bytes changed per write so no two writes carry equal bytes. */
const pattern = randomBytes(WRITE_BYTES);
function chunkAt(offset: number): Buffer {
  pattern.writeUInt32LE(offset / WRITE_BYTES, 0);
  return pattern;
}

const seconds = (since: number) => (performance.now() - since) / 1000;

async function localFileWrite(dir: string): Promise<number> {
  const path = join(dir, 'local.bin');
  const started = performance.now();
  const file = await open(path, 'w');
  for (let offset = 0; offset < FILE_BYTES; offset += WRITE_BYTES) await file.write(chunkAt(offset), 0, WRITE_BYTES, offset);
  await file.sync();
  await file.close();
  const took = seconds(started);
  await rm(path);
  return took;
}

async function writePathRun(stagingDir: string, storeUrl: string, endpoint: string, closeMode: 'async' | 'sync', streamingPartsPerFile = STREAMING_PARTS): Promise<{ release: number; stored: number }> {
  const store = openStore(storeUrl, { endpoint });
  const writePath = new WritePath(
    { stagingDir, stagingLimitBytes: FILE_BYTES + 64 * MiB, closeMode, partSizeBytes: PART_BYTES, maxConcurrentParts: CONCURRENCY, streamingPartsPerFile, keepNewest: 0, logger: createLogger({ level: 'warn' }) },
    () => store,
  );
  await writePath.recover();
  const key = `ckpt-${closeMode}.bin`;
  try {
    const started = performance.now();
    const handle = await writePath.open({ storeId: store.url, key }, { truncate: true });
    for (let offset = 0; offset < FILE_BYTES; offset += WRITE_BYTES) await writePath.write(handle, offset, chunkAt(offset));
    await writePath.release(handle);
    const release = seconds(started);
    await writePath.flush();
    const stored = seconds(started);
    const info = await store.head(key);
    if (info?.size !== FILE_BYTES) throw new Error(`${key} has ${info?.size} bytes in the store, expected ${FILE_BYTES}`);
    await store.delete(key);
    return { release, stored };
  } finally {
    await writePath.close();
    await store.close();
  }
}

/** The SDK's upload source, built once: the same bytes the WritePath runs write. */
let sdkBody: Buffer | undefined;

async function sdkUpload(client: ReturnType<typeof s3Client>): Promise<number> {
  if (!sdkBody) {
    sdkBody = Buffer.allocUnsafe(FILE_BYTES);
    for (let offset = 0; offset < FILE_BYTES; offset += WRITE_BYTES) chunkAt(offset).copy(sdkBody, offset);
  }
  const body = sdkBody;
  const started = performance.now();
  await new Upload({ client, params: { Bucket: BUCKET, Key: 'sdk.bin', Body: body }, partSize: PART_BYTES, queueSize: CONCURRENCY }).done();
  const took = seconds(started);
  await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'sdk.bin' }));
  return took;
}

/**
 * A fresh gateway for one upload: RGW's memstore keeps deleted objects until its garbage
 * collector runs (hours by default), so a second 2 GiB object in the same gateway could fill it.
 */
async function withGateway<T>(body: (endpoint: string, client: ReturnType<typeof s3Client>) => Promise<T>): Promise<T> {
  const rgw = await startRgw();
  const client = s3Client(rgw);
  try {
    await createBucket(client, BUCKET);
    process.env.AWS_ACCESS_KEY_ID = rgw.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = rgw.secretAccessKey;
    process.env.AWS_REGION = rgw.region;
    return await body(rgw.endpoint, client);
  } finally {
    client.destroy();
    await rgw.stop();
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const work = await mkdtemp(join(tmpdir(), 'strata-bench-ckpt-'));
  const storeUrl = `s3://${BUCKET}`;
  try {
    // Two cores shared with other work: every figure is the best of ROUNDS runs, interleaved so
    // that a burst of load elsewhere hits the baselines and the WritePath alike. Writing 2 GiB
    // into the page cache took 0.5 to 6.5 s here depending on what the cache held, so it is
    // dropped before each run (root only; the harness fails otherwise).
    const locals: number[] = [];
    const asyncRuns: Array<{ release: number; stored: number }> = [];
    const sdks: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await dropPageCache();
      locals.push(await localFileWrite(work));
      asyncRuns.push(await withGateway(async (endpoint) => (await dropPageCache(), writePathRun(join(work, `staging-async-${round}`), storeUrl, endpoint, 'async'))));
      sdks.push(await withGateway(async (_endpoint, client) => (await dropPageCache(), sdkUpload(client))));
    }
    const syncRun = await withGateway(async (endpoint) => (await dropPageCache(), writePathRun(join(work, 'staging-sync'), storeUrl, endpoint, 'sync')));
    // Streaming competes with the writer for the two cores (the gateway runs here too): one run
    // with all CONCURRENCY parts of the file in flight while it is written, for comparison.
    const unthrottled = await withGateway(async (endpoint) => (await dropPageCache(), writePathRun(join(work, 'staging-unthrottled'), storeUrl, endpoint, 'async', CONCURRENCY)));
    const local = Math.min(...locals);
    const sdk = Math.min(...sdks);
    const asyncRun = { release: Math.min(...asyncRuns.map((r) => r.release)), stored: Math.min(...asyncRuns.map((r) => r.stored)) };
    process.stdout.write(
      `runs (s): local ${locals.map((x) => x.toFixed(2)).join(' ')}; async release ${asyncRuns.map((r) => r.release.toFixed(2)).join(' ')}; ` +
        `async in store ${asyncRuns.map((r) => r.stored.toFixed(2)).join(' ')}; SDK ${sdks.map((x) => x.toFixed(2)).join(' ')}\n`,
    );
    const mbps = (s: number) => FILE_BYTES / MiB / s;
    printTable(`Checkpoint write, ${FILE_BYTES / MiB} MiB in ${WRITE_BYTES / MiB} MiB writes (WritePath level, RGW on loopback)`, ['run', 'seconds', 'MiB/s', 'vs baseline'], [
      ['local file write + fsync (baseline for close)', local, mbps(local), 1],
      [`WritePath async (${STREAMING_PARTS} parts while writing): release returned`, asyncRun.release, mbps(asyncRun.release), asyncRun.release / local],
      [`WritePath async (${STREAMING_PARTS} parts while writing): in the store`, asyncRun.stored, mbps(asyncRun.stored), asyncRun.stored / sdk],
      ['WritePath sync: release returned (= in store)', syncRun.release, mbps(syncRun.release), syncRun.release / sdk],
      [`async, ${CONCURRENCY} parts while writing: release returned`, unthrottled.release, mbps(unthrottled.release), unthrottled.release / local],
      [`async, ${CONCURRENCY} parts while writing: in the store`, unthrottled.stored, mbps(unthrottled.stored), unthrottled.stored / sdk],
      ['SDK Upload from memory (baseline for upload)', sdk, mbps(sdk), 1],
    ]);
    // Best-of figures come from different rounds; the ratios within each round are what the goals compare.
    process.stdout.write(
      `per round: async close / local fsync ${asyncRuns.map((r, i) => (r.release / locals[i]!).toFixed(2)).join(' ')}; ` +
        `upload throughput vs SDK ${asyncRuns.map((r, i) => `${((100 * sdks[i]!) / r.stored).toFixed(0)}%`).join(' ')}\n`,
    );
    process.stdout.write(
      `async close / local fsync: ${(asyncRun.release / local).toFixed(2)}x (goal <= 1.2x); ` +
        `upload throughput vs SDK: ${((100 * sdk) / asyncRun.stored).toFixed(0)}% (goal >= 90%)\n`,
    );
    return {
      fileBytes: FILE_BYTES,
      writeBytes: WRITE_BYTES,
      partBytes: PART_BYTES,
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      localRuns: locals,
      asyncRuns,
      sdkRuns: sdks,
      localWriteFsyncSeconds: local,
      asyncReleaseSeconds: asyncRun.release,
      asyncInStoreSeconds: asyncRun.stored,
      syncReleaseSeconds: syncRun.release,
      streamingParts: STREAMING_PARTS,
      unthrottledReleaseSeconds: unthrottled.release,
      unthrottledInStoreSeconds: unthrottled.stored,
      sdkUploadSeconds: sdk,
      asyncCloseVsLocal: asyncRun.release / local,
      asyncCloseVsLocalPerRound: asyncRuns.map((r, i) => r.release / locals[i]!),
      uploadThroughputVsSdkPerRound: asyncRuns.map((r, i) => sdks[i]! / r.stored),
      uploadThroughputVsSdk: sdk / asyncRun.stored,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
