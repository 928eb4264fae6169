/**
 * The daemon under a mixed load, against its memory budget: 8 readers cycling through more
 * data than the DRAM tier holds, a checkpoint writer, a warmup job every 10 s and 200 admin
 * requests a second, for STRATA_BENCH_SECONDS (default 60). Reports the daemon's RSS (sampled
 * from /proc every 250 ms) against `--memory`, its own accounting (`/v1/cache` memory), the
 * latency of `/healthz` sampled every 50 ms (idle first, as the baseline of the same run, then
 * under load) and every error the load saw.
 *
 * The daemon is the built package (bin/strata.js over dist/, what an install runs; the bench
 * runs `npm run build` first unless STRATA_BENCH_SKIP_BUILD=1), not the sources through tsx,
 * whose loader thread alone adds about 45 MiB of resident memory. STRATA_BENCH_PROFILE=DIR
 * writes the daemon's CPU profiles there (bench/lib/profile-summary.ts reads them).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { startRgw } from '../test/fixtures/rgw.js';
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

export async function run(): Promise<Record<string, unknown>> {
  const seconds = Number(process.env.STRATA_BENCH_SECONDS ?? 60);
  if (process.env.STRATA_BENCH_SKIP_BUILD !== '1') await shell(`cd ${JSON.stringify(join(import.meta.dirname, '..'))} && npm run build`);
  const rgw = await startRgw();
  const work = await tempDir('bench-memory');
  const children: ChildProcess[] = [];
  try {
    const client = s3Client(rgw);
    await createBucket(client, 'load');
    const body = randomBytes(FILE_BYTES);
    for (let i = 0; i < FILES; i++) await uploadLarge(client, 'load', `data/f${i}.bin`, body);
    client.destroy();
    const mnt = join(work, 'mnt');
    await shell(`mkdir -p ${mnt}`);
    const daemon = await startMount(
      's3://load',
      mnt,
      ['--endpoint', rgw.endpoint, '--state-dir', join(work, 'state'), '--dram', DRAM, '--memory', MEMORY, '--nvme', join(work, 'nvme'), '--log-level', 'warn'],
      {
        AWS_ACCESS_KEY_ID: rgw.accessKeyId,
        AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
        AWS_REGION: rgw.region,
      },
      profileArgs(),
      BUILT_STRATA,
    );
    const api = apiUrlOf(daemon);
    const pid = daemon.child.pid!;

    // This process's own event loop: a late /healthz answer may be the bench's own delay, not the daemon's.
    const benchLoop = monitorEventLoopDelay({ resolution: 10 });
    benchLoop.enable();
    const idle = await healthLatencies(api, IDLE_SECONDS * 1000, []);
    const idleBenchLoop = { p99: benchLoop.percentile(99) / 1e6, max: benchLoop.max / 1e6 };
    benchLoop.reset();
    const rss: number[] = [];
    const rssParts: Array<{ anon: number; file: number }> = [];
    const accounted: number[] = [];
    const breakdown: Array<{ heapTotalBytes: number; externalBytes: number; arrayBuffersBytes: number; dramCapBytes: number; limitBytes: number; uploadBuffersBytes?: number; reclaims?: number; reclaimMs?: number }> = [];
    const loadAverages: number[] = [];
    let stop = false;
    const errors: string[] = [];
    const sampler = (async () => {
      while (!stop) {
        const sample = await rssOf(pid);
        rss.push(sample.total);
        rssParts.push(sample);
        await new Promise((r) => setTimeout(r, RSS_EVERY_MS));
      }
    })();
    const accounting = (async () => {
      while (!stop) {
        const cache = (await fetch(`${api}/v1/cache`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
          .then((response) => response.json())
          .catch(() => ({ memory: {} }))) as { memory: Record<string, number> & { process?: (typeof breakdown)[number] } };
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
    const slow: Array<[number, number]> = [];
    const loadStarted = performance.now();
    const loaded = await healthLatencies(api, seconds * 1000, errors, (at, ms) => slow.push([(at - loadStarted) / 1000, ms]));
    const loadedBenchLoop = { p99: benchLoop.percentile(99) / 1e6, max: benchLoop.max / 1e6 };
    benchLoop.disable();
    stop = true;
    for (const child of children) child.kill('SIGKILL');
    const restSent = await rest;
    await Promise.all([sampler, accounting, warmups]);
    const alive = daemon.child.exitCode === null;
    await daemon.stop();

    const mib = (b: number) => b / MiB;
    const limitBytes = breakdown[0]?.limitBytes ?? NaN;
    const pick = (f: (b: (typeof breakdown)[number]) => number) => breakdown.map(f);
    printTable(`Daemon RSS against --memory ${MEMORY} (--dram ${DRAM}), ${READERS} readers + writer + warmups + ${REST_PER_SECOND} REST/s for ${seconds} s`, ['figure', 'MiB'], [
      ['--memory', mib(MEMORY_BYTES)],
      ['limit (--memory + fixed overhead)', mib(limitBytes)],
      ['RSS median', mib(quantile(rss, 0.5))],
      ['RSS p99', mib(quantile(rss, 0.99))],
      ['RSS max', mib(Math.max(...rss))],
      ['  anonymous (heaps, buffers) / files (code), median', `${mib(quantile(rssParts.map((p) => p.anon), 0.5)).toFixed(1)} / ${mib(quantile(rssParts.map((p) => p.file), 0.5)).toFixed(1)}`],
      ['RSS max over --memory', mib(Math.max(...rss) - MEMORY_BYTES)],
      ['RSS max over the limit', mib(Math.max(...rss) - limitBytes)],
      ['accounted by the cache, max', mib(Math.max(0, ...accounted))],
      ['V8 heap (total), median / max', `${mib(quantile(pick((b) => b.heapTotalBytes), 0.5)).toFixed(1)} / ${mib(Math.max(...pick((b) => b.heapTotalBytes))).toFixed(1)}`],
      ['external (buffers, native), median / max', `${mib(quantile(pick((b) => b.externalBytes), 0.5)).toFixed(1)} / ${mib(Math.max(...pick((b) => b.externalBytes))).toFixed(1)}`],
      ['  of which ArrayBuffers, median / max', `${mib(quantile(pick((b) => b.arrayBuffersBytes), 0.5)).toFixed(1)} / ${mib(Math.max(...pick((b) => b.arrayBuffersBytes))).toFixed(1)}`],
      ['DRAM cap by the watchdog, min', mib(Math.min(...pick((b) => b.dramCapBytes)))],
      ['upload buffers (in --memory), max', mib(Math.max(0, ...pick((b) => b.uploadBuffersBytes ?? 0)))],
    ]);
    const lastBreakdown = breakdown.at(-1);
    const reclaims = `${lastBreakdown?.reclaims ?? '?'} (${lastBreakdown?.reclaimMs?.toFixed(0) ?? '?'} ms of the event loop)`;
    printTable('/healthz latency (ms), sampled every 50 ms', ['phase', 'samples', 'p50', 'p99', 'max'], [
      ['idle (baseline, same run)', idle.length, quantile(idle, 0.5), quantile(idle, 0.99), Math.max(...idle)],
      ['under load', loaded.length, quantile(loaded, 0.5), quantile(loaded, 0.99), Math.max(...loaded)],
    ]);
    printTable("The bench's own event-loop delay (ms): what of the above is the client's", ['phase', 'p99', 'max'], [
      ['idle', idleBenchLoop.p99, idleBenchLoop.max],
      ['under load', loadedBenchLoop.p99, loadedBenchLoop.max],
    ]);
    if (slow.length > 0) process.stdout.write(`/healthz slower than ${SLOW_HEALTH_MS} ms (s into the load: ms): ${slow.map(([at, ms]) => `${at.toFixed(1)}: ${ms.toFixed(0)}`).join(', ')}\n`);
    printTable('Load', ['figure', 'value'], [
      ['REST requests sent', restSent],
      ['errors (reads, writes, REST)', errors.length],
      ['daemon alive at the end', alive ? 'yes' : 'NO'],
      ['load average (1 min), median of the samples', quantile(loadAverages, 0.5)],
      ['full collections forced by the watchdog', reclaims],
    ]);
    if (errors.length > 0) process.stdout.write(`first errors:\n${errors.slice(0, 10).join('\n')}\n`);
    return { seconds, memoryBytes: MEMORY_BYTES, limitBytes, loadAverage: quantile(loadAverages, 0.5), rss: { median: quantile(rss, 0.5), p99: quantile(rss, 0.99), max: Math.max(...rss) }, accountedMax: Math.max(0, ...accounted), healthz: { idle: summary(idle), loaded: summary(loaded) }, benchLoopMs: { idle: idleBenchLoop, loaded: loadedBenchLoop }, reclaims: lastBreakdown?.reclaims, reclaimMs: lastBreakdown?.reclaimMs, uploadBuffersMax: Math.max(0, ...pick((b) => b.uploadBuffersBytes ?? 0)), restSent, errors: errors.length, alive };
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await rgw.stop();
    await cleanupDir(work).catch(() => undefined);
  }
}

/** `/healthz` round trips (ms), one every HEALTH_EVERY_MS, for `ms`. */
async function healthLatencies(api: string, ms: number, errors: string[], onSlow?: (at: number, ms: number) => void): Promise<number[]> {
  const out: number[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const started = performance.now();
    try {
      const response = await fetch(`${api}/healthz`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      await response.arrayBuffer();
      if (response.status !== 200) errors.push(`/healthz: ${response.status}`);
    } catch (err) {
      errors.push(`/healthz: ${(err as Error).message}`);
    }
    const took = performance.now() - started;
    out.push(took);
    if (took > SLOW_HEALTH_MS) onSlow?.(started, took);
    await new Promise((r) => setTimeout(r, HEALTH_EVERY_MS));
  }
  return out;
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
