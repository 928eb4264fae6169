/**
 * The daemon under a mixed load, against its memory budget: 8 readers cycling through more
 * data than the DRAM tier holds, a checkpoint writer, a warmup job every 10 s and 200 admin
 * requests a second, for STRATA_BENCH_SECONDS (default 60). Reports the daemon's RSS (sampled
 * from /proc every 250 ms) against `--memory` and its limit (`--memory` plus the fixed
 * overhead), its own accounting (`/v1/cache` memory), the latency of `/healthz` sampled every
 * 50 ms from a thread of its own (idle first, as the baseline of the same round, then under
 * load) and every error the load saw.
 *
 * The daemon is the built package (bin/strata.js over dist/, what an install runs; the bench
 * runs `npm run build` first unless STRATA_BENCH_SKIP_BUILD=1), not the sources through tsx,
 * whose loader thread alone adds about 45 MiB of resident memory.
 *
 * STRATA_BENCH_BASELINE=DIR (another checkout, built) runs its daemon too, in rounds
 * interleaved with this tree's (STRATA_BENCH_ROUNDS per daemon, default 2 with a baseline and
 * 1 without), against the same gateway and data. STRATA_BENCH_PROFILE=DIR writes the daemons'
 * CPU profiles there (bench/lib/profile-summary.ts reads them).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { startRgw, type RgwHandle } from '../test/fixtures/rgw.js';
import { BUILT_STRATA, apiUrlOf, cleanupDir, startMount, tempDir } from '../test/fixtures/strata-process.js';
import { createBucket, s3Client, shell, uploadLarge } from './lib/harness.js';
import { printTable } from './lib/table.js';

const MiB = 1024 * 1024;
const DRAM = '256MiB';
const MEMORY = '320MiB';
const MEMORY_BYTES = 320 * MiB;
/** 12 × 32 MiB = 384 MiB: more than the DRAM tier, so readers keep evicting and fetching. */
const FILES = 12;
const FILE_BYTES = 32 * MiB;
const READERS = 8;
const REST_PER_SECOND = 200;
const HEALTH_EVERY_MS = 50;
const RSS_EVERY_MS = 250;
const IDLE_SECONDS = 10;
/** A request the daemon has not answered in this long counts as an error (and as this latency for /healthz), so a lost answer cannot stall the run. */
const REQUEST_TIMEOUT_MS = 10_000;
/** /healthz answers slower than this are listed with their time into the load, to find them in a profile. */
const SLOW_HEALTH_MS = 500;

interface Variant {
  readonly name: string;
  readonly entry: string;
}

/** What `/v1/cache` says of the process (fields a baseline's daemon may lack are optional). */
interface ProcessReport {
  readonly heapTotalBytes: number;
  readonly externalBytes: number;
  readonly arrayBuffersBytes: number;
  readonly dramCapBytes: number;
  readonly limitBytes: number;
  readonly uploadBuffersBytes?: number;
  readonly reclaims?: number;
  readonly reclaimMs?: number;
}

interface Round {
  readonly variant: string;
  readonly seconds: number;
  readonly limitBytes: number;
  readonly rss: { median: number; p99: number; max: number; anonMedian: number; fileMedian: number };
  readonly accountedMax: number;
  readonly heapMedian: number;
  readonly externalMax: number;
  readonly arrayBuffersMax: number;
  readonly dramCapMin: number;
  readonly uploadBuffersMax: number;
  readonly reclaims: string;
  readonly healthz: { idle: ReturnType<typeof summary>; loaded: ReturnType<typeof summary>; proberLoopMaxMs: number };
  readonly slow: Array<[number, number]>;
  /** Share of the RSS samples above the limit. */
  readonly overLimit: number;
  /** When (s into the load) RSS was over the limit, and by how much (bytes). */
  readonly overAt: Array<[number, number]>;
  readonly restSent: number;
  readonly errors: number;
  readonly firstErrors: string[];
  readonly alive: boolean;
  readonly loadAverage: number;
}

export async function run(): Promise<Record<string, unknown>> {
  const seconds = Number(process.env.STRATA_BENCH_SECONDS ?? 60);
  const baselineDir = process.env.STRATA_BENCH_BASELINE;
  const variants: Variant[] = [{ name: 'this tree', entry: BUILT_STRATA }];
  if (baselineDir) variants.unshift({ name: 'baseline', entry: join(baselineDir, 'bin/strata.js') });
  const rounds = Number(process.env.STRATA_BENCH_ROUNDS ?? (baselineDir ? 2 : 1));
  if (process.env.STRATA_BENCH_SKIP_BUILD !== '1') await shell(`cd ${JSON.stringify(join(import.meta.dirname, '..'))} && npm run build`);
  const rgw = await startRgw();
  const work = await tempDir('bench-memory');
  const results: Round[] = [];
  try {
    const client = s3Client(rgw);
    await createBucket(client, 'load');
    const body = randomBytes(FILE_BYTES);
    for (let i = 0; i < FILES; i++) await uploadLarge(client, 'load', `data/f${i}.bin`, body);
    client.destroy();
    for (let r = 0; r < rounds; r++) {
      for (const variant of variants) results.push(await oneRound(rgw, join(work, `round-${results.length}`), variant, seconds));
    }
  } finally {
    await rgw.stop();
    await cleanupDir(work).catch(() => undefined);
  }

  const mib = (b: number) => b / MiB;
  const header = ['figure', ...results.map((r, i) => `${i + 1}: ${r.variant}`)];
  const row = (name: string, f: (r: Round) => string | number): Array<string | number> => [name, ...results.map(f)];
  printTable(`Daemon RSS (MiB) against --memory ${MEMORY} (--dram ${DRAM}), ${READERS} readers + writer + warmups + ${REST_PER_SECOND} REST/s for ${seconds} s, rounds in order`, header, [
    row('limit (--memory + fixed overhead)', (r) => mib(r.limitBytes)),
    row('RSS median', (r) => mib(r.rss.median)),
    row('RSS p99', (r) => mib(r.rss.p99)),
    row('RSS max', (r) => mib(r.rss.max)),
    row('RSS max over the limit', (r) => mib(r.rss.max - r.limitBytes)),
    row('samples over the limit (%)', (r) => 100 * r.overLimit),
    row('  anonymous / files (code), median', (r) => `${mib(r.rss.anonMedian).toFixed(0)} / ${mib(r.rss.fileMedian).toFixed(0)}`),
    row('accounted by the cache, max', (r) => mib(r.accountedMax)),
    row('V8 heap (total), median', (r) => mib(r.heapMedian)),
    row('external, max', (r) => mib(r.externalMax)),
    row('  of which ArrayBuffers, max', (r) => mib(r.arrayBuffersMax)),
    row('DRAM cap by the watchdog, min', (r) => mib(r.dramCapMin)),
    row('upload buffers (in --memory), max', (r) => mib(r.uploadBuffersMax)),
  ]);
  printTable(`/healthz latency (ms), one every ${HEALTH_EVERY_MS} ms from its own thread`, header, [
    row('idle p50', (r) => r.healthz.idle.p50),
    row('idle p99', (r) => r.healthz.idle.p99),
    row('under load p50', (r) => r.healthz.loaded.p50),
    row('under load p99', (r) => r.healthz.loaded.p99),
    row('under load max', (r) => r.healthz.loaded.max),
    row('under load samples', (r) => r.healthz.loaded.samples),
    row("prober thread's own loop delay, max", (r) => r.healthz.proberLoopMaxMs),
  ]);
  printTable('Load', header, [
    row('REST requests sent', (r) => r.restSent),
    row('errors (reads, writes, REST)', (r) => r.errors),
    row('daemon alive at the end', (r) => (r.alive ? 'yes' : 'NO')),
    row('full collections forced (ms of loop)', (r) => r.reclaims),
    row('load average (1 min), median', (r) => r.loadAverage),
  ]);
  for (const [i, r] of results.entries()) {
    if (r.slow.length > 0) process.stdout.write(`${i + 1}: /healthz slower than ${SLOW_HEALTH_MS} ms (s into the load: ms): ${r.slow.map(([at, ms]) => `${at.toFixed(1)}: ${ms.toFixed(0)}`).join(', ')}\n`);
    if (r.overAt.length > 0) process.stdout.write(`${i + 1}: RSS over the limit (s into the load: MiB): ${r.overAt.map(([at, b]) => `${at.toFixed(1)}: ${(b / MiB).toFixed(0)}`).join(', ')}\n`);
    if (r.firstErrors.length > 0) process.stdout.write(`${i + 1}: first errors:\n${r.firstErrors.join('\n')}\n`);
  }
  return { seconds, memoryBytes: MEMORY_BYTES, rounds: results };
}

/** One daemon (`variant`) with fresh state: idle /healthz, then the load, then its figures. */
async function oneRound(rgw: RgwHandle, dir: string, variant: Variant, seconds: number): Promise<Round> {
  const children: ChildProcess[] = [];
  const mnt = join(dir, 'mnt');
  await shell(`mkdir -p ${mnt}`);
  const daemon = await startMount(
    's3://load',
    mnt,
    ['--endpoint', rgw.endpoint, '--state-dir', join(dir, 'state'), '--dram', DRAM, '--memory', MEMORY, '--nvme', join(dir, 'nvme'), '--log-level', 'warn'],
    { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region },
    profileArgs(),
    variant.entry,
  );
  try {
    const api = apiUrlOf(daemon);
    const pid = daemon.child.pid!;
    const prober = startProber(api);
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
    const loadStart = Date.now();
    const rss: Array<{ total: number; anon: number; file: number; at: number }> = [];
    const accounted: number[] = [];
    const breakdown: ProcessReport[] = [];
    const loadAverages: number[] = [];
    let stop = false;
    const errors: string[] = [];
    const sampler = (async () => {
      while (!stop) {
        rss.push({ ...(await rssOf(pid)), at: Date.now() });
        await new Promise((r) => setTimeout(r, RSS_EVERY_MS));
      }
    })();
    const accounting = (async () => {
      while (!stop) {
        const cache = (await fetch(`${api}/v1/cache`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
          .then((response) => response.json())
          .catch(() => ({ memory: {} }))) as { memory: Record<string, number> & { process?: ProcessReport } };
        accounted.push(cache.memory.usedBytes ?? cache.memory.dramUsedBytes ?? 0);
        if (cache.memory.process) breakdown.push(cache.memory.process);
        loadAverages.push(loadavg()[0]!);
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    // Readers: each reads the files in its own order, again and again, in a child shell.
    for (let r = 0; r < READERS; r++) {
      const order = Array.from({ length: FILES }, (_, i) => `${mnt}/data/f${(i * 5 + r) % FILES}.bin`).join(' ');
      children.push(spawn('bash', ['-c', `while true; do for f in ${order}; do cat "$f" > /dev/null || echo "read failed: $f" >&2; done; done`], { stdio: ['ignore', 'ignore', 'pipe'] }));
    }
    // A writer: a 64 MiB checkpoint every round, removed after.
    children.push(spawn('bash', ['-c', `i=0; while true; do dd if=/dev/urandom of=${mnt}/data/ckpt-$i.bin bs=1M count=64 status=none || echo "write failed" >&2; rm -f ${mnt}/data/ckpt-$i.bin; i=$((i+1)); done`], { stdio: ['ignore', 'ignore', 'pipe'] }));
    for (const child of children) child.stderr!.on('data', (chunk: Buffer) => errors.push(chunk.toString().trim()));
    const warmups = (async () => {
      while (!stop) {
        const status = await fetch(`${api}/v1/prefetch`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ paths: ['/data'] }) }).then(
          (response) => response.status,
          (err: unknown) => (err as Error).message,
        );
        if (status !== 202) errors.push(`prefetch: ${status}`);
        await new Promise((r) => setTimeout(r, 10_000));
      }
    })();
    const rest = (async () => {
      const routes = ['/v1/cache', '/v1/jobs', '/metrics', '/v1/uploads', '/v1/links', '/v1/pins'];
      let sent = 0;
      const started = performance.now();
      const inFlight = new Set<Promise<void>>();
      while (!stop) {
        const due = Math.floor(((performance.now() - started) / 1000) * REST_PER_SECOND);
        while (sent < due) {
          const route = routes[sent++ % routes.length]!;
          const request = fetch(`${api}${route}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }).then(
            async (response) => {
              await response.arrayBuffer();
              if (response.status >= 400) errors.push(`${route}: ${response.status}`);
            },
            (err: unknown) => void errors.push(`${route}: ${(err as Error).message}`),
          );
          inFlight.add(request);
          void request.finally(() => inFlight.delete(request));
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      await Promise.all(inFlight);
      return sent;
    })();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const health = await prober.stop();
    errors.push(...health.errors);
    const idle = health.samples.filter(([at]) => at < loadStart).map(([, ms]) => ms);
    const loaded = health.samples.filter(([at]) => at >= loadStart).map(([, ms]) => ms);
    const slow = health.samples.filter(([at, ms]) => at >= loadStart && ms > SLOW_HEALTH_MS).map(([at, ms]): [number, number] => [(at - loadStart) / 1000, ms]);
    stop = true;
    for (const child of children) child.kill('SIGKILL');
    const restSent = await rest;
    await Promise.all([sampler, accounting, warmups]);
    const alive = daemon.child.exitCode === null;
    const totals = rss.map((s) => s.total);
    const pick = (f: (b: ProcessReport) => number) => breakdown.map(f);
    const last = breakdown.at(-1);
    return {
      variant: variant.name,
      seconds,
      limitBytes: breakdown[0]?.limitBytes ?? NaN,
      rss: { median: quantile(totals, 0.5), p99: quantile(totals, 0.99), max: Math.max(...totals), anonMedian: quantile(rss.map((s) => s.anon), 0.5), fileMedian: quantile(rss.map((s) => s.file), 0.5) },
      accountedMax: Math.max(0, ...accounted),
      heapMedian: quantile(pick((b) => b.heapTotalBytes), 0.5),
      externalMax: Math.max(...pick((b) => b.externalBytes)),
      arrayBuffersMax: Math.max(...pick((b) => b.arrayBuffersBytes)),
      dramCapMin: Math.min(...pick((b) => b.dramCapBytes)),
      uploadBuffersMax: Math.max(0, ...pick((b) => b.uploadBuffersBytes ?? 0)),
      reclaims: last?.reclaims === undefined ? 'n/a' : `${last.reclaims} (${(last.reclaimMs ?? 0).toFixed(0)})`,
      healthz: { idle: summary(idle), loaded: summary(loaded), proberLoopMaxMs: health.loopMax },
      slow,
      overLimit: totals.filter((b) => b > (breakdown[0]?.limitBytes ?? Infinity)).length / Math.max(1, totals.length),
      overAt: rss.filter((r) => r.total > (breakdown[0]?.limitBytes ?? Infinity)).map((r): [number, number] => [(r.at - loadStart) / 1000, r.total - breakdown[0]!.limitBytes]),
      restSent,
      errors: errors.length,
      firstErrors: errors.slice(0, 5),
      alive,
      loadAverage: quantile(loadAverages, 0.5),
    };
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await daemon.stop();
    await shell(`fusermount3 -uz ${mnt} 2>/dev/null || true`);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * The prober's thread: one `/healthz` round trip every HEALTH_EVERY_MS from the idle phase
 * through the load (one thread, one connection: no start-up inside the measured load), until
 * told to stop.
 */
const PROBER = `
const { parentPort, workerData } = require('node:worker_threads');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
(async () => {
  const { api, every, timeoutMs } = workerData;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const samples = [], errors = [];
  let stop = false;
  parentPort.once('message', () => (stop = true));
  while (!stop) {
    const at = Date.now();
    const started = performance.now();
    try {
      const response = await fetch(api + '/healthz', { signal: AbortSignal.timeout(timeoutMs) });
      await response.arrayBuffer();
      if (response.status !== 200) errors.push('/healthz: ' + response.status);
    } catch (err) {
      errors.push('/healthz: ' + err.message);
    }
    samples.push([at, performance.now() - started]);
    await new Promise((r) => setTimeout(r, every));
  }
  loop.disable();
  parentPort.postMessage({ samples, errors, loopMax: loop.max / 1e6 });
})();
`;

/**
 * Starts the prober (PROBER) on a thread of its own, so that this process's load generator
 * (200 requests a second, their bodies parsed) does not delay it; `stop` ends it and answers
 * every round trip (ms) with its start (Date.now()), and the thread's own event-loop delay.
 */
function startProber(api: string): { stop: () => Promise<{ samples: Array<[number, number]>; errors: string[]; loopMax: number }> } {
  const worker = new Worker(PROBER, { eval: true, workerData: { api, every: HEALTH_EVERY_MS, timeoutMs: REQUEST_TIMEOUT_MS } });
  const done = new Promise<{ samples: Array<[number, number]>; errors: string[]; loopMax: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return {
    async stop() {
      worker.postMessage('stop');
      const result = await done;
      await worker.terminate();
      return result;
    },
  };
}

/** The process's resident bytes, and how much of them is anonymous memory (heaps, buffers) and mapped files (code). */
async function rssOf(pid: number): Promise<{ total: number; anon: number; file: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return { total: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') };
}

/** `node --cpu-prof` of the daemon into STRATA_BENCH_PROFILE, when set (bench/lib/profile-summary.ts reads it). */
function profileArgs(): string[] {
  const dir = process.env.STRATA_BENCH_PROFILE;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}

function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function summary(values: readonly number[]) {
  return { samples: values.length, p50: quantile(values, 0.5), p99: quantile(values, 0.99), max: Math.max(...values) };
}
