/**
 * Cold reads against the plain tools, over one Ceph RGW on loopback: a 1 GiB object read
 * sequentially (`dd bs=1M`) and an epoch of 2,000 files of 256 KiB read by 8 readers (in name
 * order, and through Strata in a random order too), through a
 * fresh Strata mount (DRAM only, and DRAM with an NVMe tier written through), next to
 *
 * - the AWS SDK alone: 8 parallel 8 MiB ranged GETs of the object, 8 parallel GETs of the files
 *   (bytes consumed and dropped), the figure a cache in front of the store must reach;
 * - s3fs and rclone mounts of the same bucket (reference rows; skipped with a line when absent).
 *
 * A node's daemon runs for days, so "cold" means data it has not seen, not a daemon that has
 * just started: before each measured read a Strata daemon first serves other objects of the
 * bucket (a 128 MiB object and 400 small files, not measured), as the SDK rows run in this
 * process, whose code is compiled and warm after the first round. A just-started daemon pays
 * V8's compilation of its read path inside the measured seconds (on the 2-core development
 * machine about a tenth of the machine's CPU during a 3 s epoch); the "fresh process" rows show
 * it, beside the SDK in a just-started process (a child of this bench, timed from its first
 * request, not its imports). Every "x SDK" is against the faster of the two SDK rows.
 *
 * On a guest with free page reporting the run holds freed memory in the guest
 * (bench/lib/page-reporting.ts says why).
 *
 * Rounds are interleaved (every client once per round) and the table gives medians with the
 * range, plus the CPU seconds the client process spent per GiB (all its threads, from /proc:
 * for the SDK, this bench's own process). The page cache is dropped before every read. The
 * machine columns give what every process on the machine spent (the gateway, the client, the
 * readers, the kernel's FUSE and socket work; /proc/stat) and the cores kept busy: on a 2-core
 * machine whose gateway shares the cores, a row that keeps both busy is bound by the sum of
 * those costs per file, not by the client's waiting.
 *
 * `STRATA_BENCH_ROUNDS` sets the rounds (default 3); `STRATA_BENCH_PROFILE=DIR` writes a CPU
 * profile of every Strata daemon into DIR (`node --cpu-prof`), for chrome://inspect or
 * `bench/lib/profile-summary.ts`.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { startRgw, type RgwHandle } from '../test/fixtures/rgw.js';
import { apiUrlOf, cleanupDir, startMount, tempDir } from '../test/fixtures/strata-process.js';
import { createBucket, dropPageCache, putMany, s3Client, shell, timeCommand, uploadLarge } from './lib/harness.js';
import { withFreedMemoryHeld } from './lib/page-reporting.js';
import { cpuTimesOf, machineCpu, mountPeer, peerInstalled, type PeerName } from './lib/peer-mounts.js';
import { printTable } from './lib/table.js';
import { median } from './lib/stats.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const MODEL_BYTES = 1 * GiB;
const SMALL_FILES = 2000;
const SMALL_BYTES = 256 * 1024;
const READERS = 8;
/** The SDK baseline of the issue: 8 ranged GETs of 8 MiB in flight. */
const SDK_RANGE_BYTES = 8 * MiB;
const SDK_PARALLEL = 8;
const ROUNDS = Number(process.env.STRATA_BENCH_ROUNDS ?? 3);
const BUCKET = 'cold';
const runFile = promisify(execFile);

interface Sample {
  readonly rate: number;
  readonly cpuPerGiB: number;
  /** The kernel's share of cpuPerGiB (page faults, socket and FUSE copies); absent for the SDK. */
  readonly systemPerGiB?: number;
  /** CPU seconds of the whole machine (gateway, client, readers, kernel) per GiB read. */
  readonly machinePerGiB: number;
  /** Cores the whole machine kept busy on average while reading (of `os.availableParallelism()`). */
  readonly coresBusy: number;
}

/** The machine's CPU over `seconds` of reading `bytes`, as Sample fields. */
function machineShare(before: { busy: number }, after: { busy: number }, bytes: number, seconds: number): Pick<Sample, 'machinePerGiB' | 'coresBusy'> {
  const busy = after.busy - before.busy;
  return { machinePerGiB: busy / (bytes / GiB), coresBusy: busy / seconds };
}

type Client = 'sdk' | 'sdk-fresh' | 'strata' | 'strata-fresh' | 'strata-shuffled' | 'strata-8m' | 'strata+nvme' | PeerName;

/** What a daemon serves, not measured, before its measured read: other objects of the bucket. */
const WARM_OBJECT_BYTES = 128 * MiB;
const WARM_FILES = 400;

export async function run(): Promise<Record<string, unknown>> {
  return withFreedMemoryHeld(measureAll);
}

async function measureAll(): Promise<Record<string, unknown>> {
  const rgw = await startRgw();
  const work = await tempDir('bench-cold');
  const large = new Map<Client, Sample[]>();
  const small = new Map<Client, Sample[]>();
  const breakdowns: Array<Record<string, number>> = [];
  /** GETs in flight in the daemon, sampled during each cold 1 GiB read, by configuration. */
  const inFlight = new Map<Client, number[]>();
  try {
    const client = s3Client(rgw);
    await createBucket(client, BUCKET);
    await uploadLarge(client, BUCKET, 'model.bin', randomBytes(MODEL_BYTES));
    const keys = epochKeys();
    await putMany(client, BUCKET, keys.map((key) => ({ key, body: randomBytes(SMALL_BYTES) })));
    await uploadLarge(client, BUCKET, 'warm/model.bin', randomBytes(WARM_OBJECT_BYTES));
    await putMany(client, BUCKET, Array.from({ length: WARM_FILES }, (_, i) => ({ key: `warm/epoch/class_${i % 4}/sample_${i}.bin`, body: randomBytes(SMALL_BYTES) })));
    const peers: PeerName[] = [];
    for (const name of ['s3fs', 'rclone'] as const) if (await peerInstalled(name)) peers.push(name);
    const mnt = join(work, 'mnt');
    await shell(`mkdir -p ${mnt}`);
    const note = (into: Map<Client, Sample[]>, name: Client, sample: Sample) => into.set(name, [...(into.get(name) ?? []), sample]);

    for (let round = 0; round < ROUNDS; round++) {
      note(large, 'sdk', await sdkLarge(client));
      note(small, 'sdk', await sdkSmall(client, keys));
      note(large, 'sdk-fresh', await sdkInChild(rgw, 'large'));
      note(small, 'sdk-fresh', await sdkInChild(rgw, 'small'));
      for (const name of ['strata', 'strata-fresh', 'strata-8m', 'strata+nvme'] as const) {
        const tierArgs = name === 'strata+nvme' ? ['--nvme', `${join(work, `nvme-${round}`)}:2GiB`] : name === 'strata-8m' ? ['--block-size', '8MiB'] : [];
        // Room for the other objects served first, so the measured read evicts nothing.
        const args = ['--state-dir', join(work, `state-${round}-${name}`), '--dram', '1536MiB', ...tierArgs];
        note(large, name, await withStrata(rgw, mnt, args, async (pid, api) => {
          if (name !== 'strata-fresh') await serveOtherData(mnt);
          const sampler = sampleGetsInFlight(api);
          try {
            return await measured(pid, MODEL_BYTES, () => timeCommand(ddOf(mnt)), MODEL_BYTES / MiB);
          } finally {
            inFlight.set(name, [...(inFlight.get(name) ?? []), ...(await sampler.stop())]);
          }
        }));
      }
      const smallArgs = ['--state-dir', join(work, `state-${round}-small`), '--dram', '1GiB'];
      note(small, 'strata', await withStrata(rgw, mnt, smallArgs, async (pid, api) => {
        await serveOtherData(mnt);
        const before = await perFileBreakdown(api);
        const sample = await measured(pid, SMALL_FILES * SMALL_BYTES, () => timeCommand(epochOf(mnt)), SMALL_FILES);
        breakdowns.push(difference(await perFileBreakdown(api), before));
        return sample;
      }));
      const freshArgs = ['--state-dir', join(work, `state-${round}-small-fresh`), '--dram', '1GiB'];
      note(small, 'strata-fresh', await withStrata(rgw, mnt, freshArgs, (pid) => measured(pid, SMALL_FILES * SMALL_BYTES, () => timeCommand(epochOf(mnt)), SMALL_FILES)));
      // The same files in a random order: readahead across files (docs/SEMANTICS.md) follows
      // name order only, so this row is what a shuffling data loader gets.
      const shuffledArgs = ['--state-dir', join(work, `state-${round}-shuffled`), '--dram', '1GiB'];
      note(small, 'strata-shuffled', await withStrata(rgw, mnt, shuffledArgs, async (pid) => {
        await serveOtherData(mnt);
        return measured(pid, SMALL_FILES * SMALL_BYTES, () => timeCommand(epochOf(mnt, true)), SMALL_FILES);
      }));
      for (const peer of peers) {
        // A reference row that fails (its mount or a read) is reported and left out, not fatal.
        const mounted = await mountPeer(peer, rgw, BUCKET, mnt, work).catch((err: unknown) => void process.stdout.write(`(${peer}: ${String(err)})\n`));
        if (!mounted) continue;
        try {
          const attempt = async (into: Map<Client, Sample[]>, bytes: number, command: string, units: number) => {
            try {
              note(into, peer, await measured(mounted.pid, bytes, () => timeCommand(command), units));
            } catch (err) {
              process.stdout.write(`(${peer} failed a read, left out of this round: ${String(err).split('\n')[1] ?? ''} ${mounted.errors()})\n`);
            }
          };
          await attempt(large, MODEL_BYTES, ddOf(mnt), MODEL_BYTES / MiB);
          await attempt(small, SMALL_FILES * SMALL_BYTES, epochOf(mnt), SMALL_FILES);
        } finally {
          await mounted.unmount();
        }
      }
      await cleanupDir(join(work, `nvme-${round}`));
    }
    client.destroy();

    // The machine's CPU per unit: seconds per GiB for the large read, milliseconds per file for the epoch.
    const rows = (samples: Map<Client, Sample[]>, unit: string, machinePerUnit: (perGiB: number) => number) => {
      // Against the faster of the two SDK rows, whichever process it ran in.
      const base = Math.max(...(['sdk', 'sdk-fresh'] as const).map((name) => median((samples.get(name) ?? []).map((s) => s.rate))));
      return [...samples].map(([name, list]) => {
        const rates = list.map((s) => s.rate);
        const system = list.every((s) => s.systemPerGiB !== undefined) ? fmt(median(list.map((s) => s.systemPerGiB!))) : '';
        const machine = median(list.map((s) => machinePerUnit(s.machinePerGiB)));
        return [label(name), median(rates), `${fmt(Math.min(...rates))}-${fmt(Math.max(...rates))}`, median(rates) / base, median(list.map((s) => s.cpuPerGiB)), system, machine, median(list.map((s) => s.coresBusy)), unit];
      });
    };
    const columns = (rate: string, machine: string) => ['client', rate, 'range', 'x SDK', 'CPU s/GiB', 'of it sys', machine, 'cores busy', ''];
    process.stdout.write('x SDK: against the faster of the two SDK rows (in this process, or in a just-started one)\n');
    printTable(`Cold 1 GiB sequential read (dd bs=1M), ${ROUNDS} interleaved rounds; machine: all processes (gateway, client, readers, kernel)`, columns('MiB/s', 'machine CPU s/GiB'), rows(large, 'MiB/s', (perGiB) => perGiB));
    printTable(
      `Cold epoch, ${SMALL_FILES} x 256 KiB, ${READERS} readers, ${ROUNDS} interleaved rounds; machine: all processes, ${availableParallelism()} cores`,
      columns('files/s', 'machine CPU ms/file'),
      rows(small, 'files/s', (perGiB) => perGiB * (SMALL_BYTES / GiB) * 1000),
    );
    printTable(
      `Strata, GETs in flight during the cold 1 GiB read (sampled every ${IN_FLIGHT_SAMPLE_MS} ms)`,
      ['configuration', 'median', 'p10-p90', 'max', 'samples'],
      [...inFlight].map(([name, list]) => [label(name), quantile(list, 0.5), `${quantile(list, 0.1)}-${quantile(list, 0.9)}`, Math.max(...list), list.length]),
    );
    const breakdown = averageOf(breakdowns);
    printTable('Strata (served other data first), cold 256 KiB file: milliseconds per file (sum over the epoch / files; calls overlap across the 8 readers)', ['step', 'ms per file'], Object.entries(breakdown).map(([k, v]) => [k, v]));
    const summary = (samples: Map<Client, Sample[]>) =>
      Object.fromEntries([...samples].map(([name, list]) => [name, { rates: list.map((s) => s.rate), cpuPerGiB: list.map((s) => s.cpuPerGiB), machinePerGiB: list.map((s) => s.machinePerGiB), coresBusy: list.map((s) => s.coresBusy) }]));
    const load = (await shell('cat /proc/loadavg')).split(' ').slice(0, 3).join(' ');
    process.stdout.write(`load average at the end: ${load}\n`);
    const getsInFlight = Object.fromEntries([...inFlight].map(([name, list]) => [name, { median: quantile(list, 0.5), p90: quantile(list, 0.9), max: Math.max(...list) }]));
    return { rounds: ROUNDS, large: summary(large), small: summary(small), getsInFlight, smallFileBreakdownMs: breakdown, loadAverage: load };
  } finally {
    await cleanupDir(work);
    await rgw.stop();
  }
}

/** The epoch's objects: SMALL_FILES in 10 folders. */
function epochKeys(): string[] {
  return Array.from({ length: SMALL_FILES }, (_, i) => `epoch/class_${i % 10}/sample_${i}.bin`);
}

/** Other objects of the bucket read through the mount (warm/: a model and an epoch), as a daemon that has been up a while has served. */
async function serveOtherData(mnt: string): Promise<void> {
  await shell(ddOf(join(mnt, 'warm')));
  await shell(epochOf(join(mnt, 'warm')));
}

/** The SDK read of `mode` in a just-started process (this file as a child), timed from its first request. */
async function sdkInChild(rgw: RgwHandle, mode: 'large' | 'small'): Promise<Sample> {
  const env = { ...process.env, COLD_READ_ENDPOINT: JSON.stringify({ endpoint: rgw.endpoint, region: rgw.region, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey }) };
  const { stdout } = await runFile(process.execPath, ['--import', 'tsx', import.meta.filename, 'sdk-child', mode], { env, encoding: 'utf8' });
  return JSON.parse(stdout) as Sample;
}

/** `after - before`, key by key (a key missing before counts from 0). */
function difference(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

/** The sequential read of `root`/model.bin. */
function ddOf(root: string): string {
  return `dd if=${root}/model.bin of=/dev/null bs=1M status=none`;
}

/** The epoch's read of every file under `root`/epoch by READERS readers. */
function epochOf(root: string, shuffled = false): string {
  return `cd ${root}/epoch && find . -type f ${shuffled ? '| shuf ' : ''}| xargs -P ${READERS} -n 25 cat > /dev/null`;
}

function label(name: Client): string {
  switch (name) {
    case 'sdk':
      return 'AWS SDK, 8 parallel GETs (8 MiB ranges of the 1 GiB file)';
    case 'sdk-fresh':
      return 'AWS SDK, the same, fresh process';
    case 'strata':
      return 'Strata (DRAM, 4 MiB blocks)';
    case 'strata-fresh':
      return 'Strata (DRAM, 4 MiB blocks), fresh process';
    case 'strata-shuffled':
      return 'Strata (DRAM, files in a random order)';
    case 'strata-8m':
      return 'Strata (DRAM, 8 MiB blocks)';
    case 'strata+nvme':
      return 'Strata (DRAM + NVMe write-through)';
    default:
      return `${name} (reference)`;
  }
}

/** Runs `read` after dropping the page cache; answers its rate (`units` per second) and the CPU `pid` spent per GiB. */
async function measured(pid: number, bytes: number, read: () => Promise<number>, units: number): Promise<Sample> {
  await dropPageCache();
  const machine = await machineCpu();
  const before = await cpuTimesOf(pid);
  const seconds = await read();
  const after = await cpuTimesOf(pid);
  const share = machineShare(machine, await machineCpu(), bytes, seconds);
  const gib = bytes / GiB;
  return { rate: units / seconds, cpuPerGiB: (after.user + after.system - before.user - before.system) / gib, systemPerGiB: (after.system - before.system) / gib, ...share };
}

/** `node --cpu-prof` into STRATA_BENCH_PROFILE, when set. */
export function profileArgs(): string[] {
  const dir = process.env.STRATA_BENCH_PROFILE;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}

async function withStrata<T>(rgw: RgwHandle, mnt: string, args: string[], body: (pid: number, api: string) => Promise<T>): Promise<T> {
  const env: NodeJS.ProcessEnv = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region };
  const daemon = await startMount(`s3://${BUCKET}`, mnt, ['--endpoint', rgw.endpoint, '--log-level', 'warn', ...args], env, profileArgs());
  try {
    return await body(daemon.child.pid!, apiUrlOf(daemon));
  } finally {
    const code = await daemon.stop('SIGTERM');
    if (code !== 0) throw new Error(`strata exited ${code}: ${daemon.stderr()}`);
  }
}

/** The SDK reading the 1 GiB object as 8 MiB ranges, 8 in flight; the bytes are dropped as they arrive. */
async function sdkLarge(client: S3Client): Promise<Sample> {
  const machine = await machineCpu();
  const cpu = process.cpuUsage();
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < MODEL_BYTES) {
      const start = next;
      next += SDK_RANGE_BYTES;
      const out = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'model.bin', Range: `bytes=${start}-${Math.min(start + SDK_RANGE_BYTES, MODEL_BYTES) - 1}` }));
      for await (const _chunk of out.Body as AsyncIterable<Buffer>);
    }
  };
  await Promise.all(Array.from({ length: SDK_PARALLEL }, worker));
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const share = machineShare(machine, await machineCpu(), MODEL_BYTES, seconds);
  return { rate: MODEL_BYTES / MiB / seconds, cpuPerGiB: (used.user + used.system) / 1e6 / (MODEL_BYTES / GiB), ...share };
}

/** The SDK reading every small file whole, 8 GETs in flight. */
async function sdkSmall(client: S3Client, keys: readonly string[]): Promise<Sample> {
  const machine = await machineCpu();
  const cpu = process.cpuUsage();
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const out = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: keys[next++]! }));
      for await (const _chunk of out.Body as AsyncIterable<Buffer>);
    }
  };
  await Promise.all(Array.from({ length: READERS }, worker));
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const share = machineShare(machine, await machineCpu(), keys.length * SMALL_BYTES, seconds);
  return { rate: keys.length / seconds, cpuPerGiB: (used.user + used.system) / 1e6 / ((keys.length * SMALL_BYTES) / GiB), ...share };
}

/**
 * Where a cold small file's time goes, from the daemon's own histograms: FUSE operations by
 * kind and store requests by kind, each as total seconds over the epoch divided by the files.
 */
async function perFileBreakdown(api: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${api}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const [series, label] of [
    ['strata_fuse_operation_seconds_sum', 'op'],
    ['strata_store_request_seconds_sum', 'request'],
  ] as const) {
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${series}{`)) continue;
      const name = new RegExp(`${label}="([^"]+)"`).exec(line)?.[1];
      if (!name) continue;
      out[`${series.startsWith('strata_fuse') ? 'fuse' : 'store'} ${name}`] = (1000 * Number(line.split(' ').pop())) / SMALL_FILES;
    }
  }
  return out;
}

/** How often the GETs-in-flight gauge is read: often enough for a 1-3 s read, rarely enough to cost the daemon nothing measurable. */
const IN_FLIGHT_SAMPLE_MS = 100;

/** Reads the daemon's `strata_store_requests_in_flight{request="get"}` until `stop`, which answers the samples. */
function sampleGetsInFlight(api: string): { stop(): Promise<number[]> } {
  const samples: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const text = await (await fetch(`${api}/metrics`)).text();
      const value = /^strata_store_requests_in_flight\{request="get"\} (\d+)/m.exec(text)?.[1];
      if (value !== undefined) samples.push(Number(value));
      await new Promise((resolve) => setTimeout(resolve, IN_FLIGHT_SAMPLE_MS));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}

function quantile(values: number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function averageOf(list: Array<Record<string, number>>): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const entry of list) for (const [k, v] of Object.entries(entry)) sums[k] = (sums[k] ?? 0) + v / list.length;
  return sums;
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv[2] === 'sdk-child') {
    const client = s3Client(JSON.parse(process.env.COLD_READ_ENDPOINT!) as Parameters<typeof s3Client>[0]);
    const sample = process.argv[3] === 'large' ? await sdkLarge(client) : await sdkSmall(client, epochKeys());
    client.destroy();
    process.stdout.write(`${JSON.stringify(sample)}\n`);
  } else {
    await run();
  }
}
