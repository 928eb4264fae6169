/**
 * The native FUSE path against its baselines, every figure a median of interleaved rounds
 * in one run:
 * - warm 1 GiB read from DRAM (page cache dropped) on the native path and on fuse-native,
 *   against a minimal libfuse 3 memory file system (bench/memfs.c, built here): the FUSE
 *   ceiling of this kernel;
 * - a whole local file read through passthrough against `dd` of the same file directly,
 *   page cache dropped (the disk) and warm (memory);
 * - 1 GiB warm from the NVMe tier after a restart (64 MiB DRAM, page cache dropped) on
 *   both paths, against `dd` of a plain file on the same disk;
 * - a second `ls -lR` of 10,000 objects within --metadata-ttl 60 against the first.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { startRgw } from '../test/fixtures/rgw.js';
import { cleanupDir, startMount, tempDir, type StrataProcess } from '../test/fixtures/strata-process.js';
import { createBucket, dropPageCache, putMany, s3Client, shell, timeCommand, uploadLarge } from './lib/harness.js';
import { printTable } from './lib/table.js';

const MiB = 1024 * 1024;
const FILE_BYTES = 1024 * MiB;
/** Interleaved rounds per case (the order alternating); the table shows the median and the range. */
const ROUNDS = 4;
/** Rounds of the cases that restart daemons each round (NVMe after a restart, listings). */
const RESTART_ROUNDS = 3;
const LISTED_OBJECTS = 10_000;

type Row = [string, string, string, string];

export async function run(): Promise<Record<string, unknown>> {
  const rgw = await startRgw();
  const work = await tempDir('bench-native-fuse');
  const daemons: StrataProcess[] = [];
  let memfs: ChildProcess | undefined;
  const result: Record<string, unknown> = {};
  try {
    const client = s3Client(rgw);
    await createBucket(client, 'bench');
    const body = randomBytes(FILE_BYTES);
    await uploadLarge(client, 'bench', 'model.bin', body);
    await putMany(client, 'bench', Array.from({ length: LISTED_OBJECTS }, (_, i) => ({ key: `tree/d${i % 100}/f${i}.bin`, body: Buffer.alloc(16) })));
    client.destroy();
    const env = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region };
    const localDir = join(work, 'local');
    await shell(`mkdir -p ${localDir}`);
    await writeFile(join(localDir, 'model.bin'), body);
    const mounts = ['memfs', 'native', 'fusenative', 'passthrough'].map((name) => join(work, `mnt-${name}`));
    await shell(`mkdir -p ${mounts.join(' ')}`);
    const [memfsMnt, nativeMnt, fuseNativeMnt, passthroughMnt] = mounts as [string, string, string, string];

    memfs = await startMemfs(work, memfsMnt);
    await setReadahead(memfsMnt);
    const s3Mount = (mnt: string, args: string[]) => startMount('s3://bench', mnt, ['--endpoint', rgw.endpoint, '--log-level', 'warn', ...args], env);
    const dram = ['--dram', '1280MiB', '--memory', '1400MiB'];
    daemons.push(await s3Mount(nativeMnt, ['--fuse', 'native', '--state-dir', join(work, 'state-native'), ...dram]));
    daemons.push(await s3Mount(fuseNativeMnt, ['--fuse', 'fuse-native', '--state-dir', join(work, 'state-fusenative'), ...dram]));
    daemons.push(await startMount(`file://${localDir}`, passthroughMnt, ['--fuse', 'native', '--read-only', '--log-level', 'warn', '--state-dir', join(work, 'state-passthrough')]));
    // Fill both DRAM tiers (and warm the JIT) before measuring.
    for (const mnt of [nativeMnt, fuseNativeMnt]) await timeCommand(`dd if=${mnt}/model.bin of=/dev/null bs=1M status=none`);

    const dd = (file: string) => `dd if=${file} of=/dev/null bs=1M status=none`;
    const cold = async (command: string) => {
      await dropPageCache();
      return FILE_BYTES / MiB / (await timeCommand(command));
    };
    const warm = async (command: string) => {
      await timeCommand(command); // fills the page cache
      return FILE_BYTES / MiB / (await timeCommand(command));
    };
    const cases: Record<string, () => Promise<number>> = {
      memfs: () => cold(dd(`${memfsMnt}/data.bin`)),
      native: () => cold(dd(`${nativeMnt}/model.bin`)),
      fuseNative: () => cold(dd(`${fuseNativeMnt}/model.bin`)),
      passthroughCold: () => cold(dd(`${passthroughMnt}/model.bin`)),
      localCold: () => cold(dd(`${localDir}/model.bin`)),
      passthroughWarm: () => warm(dd(`${passthroughMnt}/model.bin`)),
      localWarm: () => warm(dd(`${localDir}/model.bin`)),
    };
    const samples = await interleave(cases);
    for (const daemon of daemons.splice(0)) await stop(daemon);
    memfs.kill('SIGTERM');
    memfs = undefined;

    const ceiling = median(samples.memfs!);
    const local = median(samples.localCold!);
    const localWarm = median(samples.localWarm!);
    const dramRows: Row[] = [
      row('minimal libfuse 3 memory fs (ceiling)', samples.memfs!, ceiling, '-'),
      row('Strata native path, warm DRAM', samples.native!, ceiling, '>= 0.9x'),
      row('Strata fuse-native, warm DRAM', samples.fuseNative!, ceiling, '-'),
    ];
    printTable('Warm 1 GiB read from DRAM, page cache dropped (MiB/s; ratio to the ceiling)', ['case', 'MiB/s median', 'range', 'ratio (target)'], dramRows);
    const passthroughRows: Row[] = [
      row('local file, dropped (disk)', samples.localCold!, local, '-'),
      row('passthrough, dropped (disk)', samples.passthroughCold!, local, '>= 0.8x'),
      row('local file, warm (memory)', samples.localWarm!, localWarm, '-'),
      row('passthrough, warm (memory)', samples.passthroughWarm!, localWarm, '>= 0.8x'),
    ];
    printTable('Whole local file through passthrough vs the file itself (MiB/s)', ['case', 'MiB/s median', 'range', 'ratio (target)'], passthroughRows);

    const nvme = await nvmeAfterRestart(work, s3Mount, nativeMnt, fuseNativeMnt);
    const listing = await secondListing(s3Mount, nativeMnt, fuseNativeMnt, work);
    Object.assign(result, { samples, nvme, listing });
    return result;
  } finally {
    for (const daemon of daemons) await daemon.stop('SIGTERM').catch(() => undefined);
    memfs?.kill('SIGTERM');
    await cleanupDir(work).catch(() => undefined);
    await rgw.stop();
  }
}

/**
 * 1 GiB from the NVMe tier after a restart (the DRAM tier far smaller), page cache dropped,
 * on both FUSE paths, next to `dd` of the same bytes as a plain file on the same disk.
 */
async function nvmeAfterRestart(
  work: string,
  s3Mount: (mnt: string, args: string[]) => Promise<StrataProcess>,
  nativeMnt: string,
  fuseNativeMnt: string,
): Promise<Record<string, number[]>> {
  const tierArgs = (name: string) => ['--state-dir', join(work, `state-nvme-${name}`), '--dram', '64MiB', '--memory', '160MiB', '--nvme', `${join(work, `nvme-${name}`)}:1100MiB`];
  const paths: Array<[string, string, string]> = [
    ['native', nativeMnt, 'native'],
    ['fuseNative', fuseNativeMnt, 'fuse-native'],
  ];
  for (const [name, mnt, fuse] of paths) {
    const filling = await s3Mount(mnt, ['--fuse', fuse, ...tierArgs(name)]);
    await timeCommand(`dd if=${mnt}/model.bin of=/dev/null bs=1M status=none`);
    await stop(filling);
  }
  const daemons = await Promise.all(paths.map(([name, mnt, fuse]) => s3Mount(mnt, ['--fuse', fuse, ...tierArgs(name)])));
  const plain = join(work, 'local', 'model.bin');
  const read = async (file: string) => {
    await dropPageCache();
    return FILE_BYTES / MiB / (await timeCommand(`dd if=${file} of=/dev/null bs=1M status=none`));
  };
  // Each daemon's first read after the restart is the measured one: later rounds would find
  // part of the file in DRAM. So one round per daemon, restarted between rounds.
  const samples: Record<string, number[]> = { native: [], fuseNative: [], plainFile: [] };
  try {
    for (let round = 0; round < RESTART_ROUNDS; round++) {
      if (round > 0) {
        for (let i = 0; i < daemons.length; i++) {
          await stop(daemons[i]!);
          daemons[i] = await s3Mount(paths[i]![1], ['--fuse', paths[i]![2], ...tierArgs(paths[i]![0])]);
        }
      }
      samples.native!.push(await read(`${nativeMnt}/model.bin`));
      samples.fuseNative!.push(await read(`${fuseNativeMnt}/model.bin`));
      samples.plainFile!.push(await read(plain));
    }
  } finally {
    for (const daemon of daemons) await stop(daemon);
  }
  const base = median(samples.plainFile!);
  printTable('Warm 1 GiB from the NVMe tier after a restart, 64 MiB DRAM, page cache dropped (MiB/s)', ['case', 'MiB/s median', 'range', 'ratio (target)'], [
    row('dd of a plain file on the same disk', samples.plainFile!, base, '-'),
    row('Strata native path', samples.native!, base, '>= 0.8x'),
    row('Strata fuse-native', samples.fuseNative!, base, '-'),
  ]);
  return samples;
}

/** Seconds of a first and a second `ls -lR` of 10,000 objects with --metadata-ttl 60, on both paths. */
async function secondListing(
  s3Mount: (mnt: string, args: string[]) => Promise<StrataProcess>,
  nativeMnt: string,
  fuseNativeMnt: string,
  work: string,
): Promise<Record<string, number[]>> {
  const samples: Record<string, number[]> = { nativeFirst: [], nativeSecond: [], fuseNativeFirst: [], fuseNativeSecond: [] };
  for (let round = 0; round < RESTART_ROUNDS; round++) {
    for (const [name, mnt, fuse] of [['native', nativeMnt, 'native'], ['fuseNative', fuseNativeMnt, 'fuse-native']] as const) {
      const daemon = await s3Mount(mnt, ['--fuse', fuse, '--metadata-ttl', '60', '--state-dir', join(work, `state-ls-${name}-${round}`)]);
      try {
        samples[`${name}First`]!.push(await timeCommand(`ls -lR ${mnt}/tree > /dev/null`));
        samples[`${name}Second`]!.push(await timeCommand(`ls -lR ${mnt}/tree > /dev/null`));
      } finally {
        await stop(daemon);
      }
    }
  }
  const nativeFirst = median(samples.nativeFirst!);
  const fuseNativeFirst = median(samples.fuseNativeFirst!);
  const rows: Row[] = [
    row('native, first', samples.nativeFirst!, nativeFirst, '-', 2),
    row('native, second', samples.nativeSecond!, nativeFirst, '<= 0.5x', 2),
    row('fuse-native, first', samples.fuseNativeFirst!, fuseNativeFirst, '-', 2),
    row('fuse-native, second', samples.fuseNativeSecond!, fuseNativeFirst, '-', 2),
  ];
  printTable(`ls -lR of ${LISTED_OBJECTS} objects, --metadata-ttl 60 (seconds; ratio to the first)`, ['case', 's median', 'range', 'ratio (target)'], rows);
  return samples;
}

/**
 * Runs every case once per round and collects the samples, the order reversed every other
 * round: the virtual disk's host caches a file read just before, so a case that always
 * follows another reading the same bytes would be favoured.
 */
async function interleave(cases: Record<string, () => Promise<number>>): Promise<Record<string, number[]>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = Object.entries(cases);
    if (round % 2 === 1) order.reverse();
    for (const [name, measure] of order) samples[name]!.push(await measure());
  }
  return samples;
}

async function startMemfs(work: string, mnt: string): Promise<ChildProcess> {
  const binary = join(work, 'memfs');
  await shell(`cc -O2 -o ${binary} ${resolve(import.meta.dirname, 'memfs.c')} $(pkg-config fuse3 --cflags --libs)`);
  const child = spawn(binary, [mnt, String(FILE_BYTES)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((ok, fail) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('mounted') && ok());
    child.on('exit', (code) => fail(new Error(`memfs exited ${code}`)));
  });
  return child;
}

/** The same read-ahead the native path sets on its own mounts (one 1 MiB request), so the ceiling is comparable. */
async function setReadahead(mnt: string): Promise<void> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  const line = table.split('\n').find((l) => l.split(' ')[4] === mnt);
  if (line) await writeFile(`/sys/class/bdi/${line.split(' ')[2]}/read_ahead_kb`, '1024');
}

async function stop(daemon: StrataProcess): Promise<void> {
  const code = await daemon.stop('SIGTERM');
  if (code !== 0) throw new Error(`strata exited ${code}: ${daemon.stderr()}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(value: number, digits = 0): string {
  return value.toFixed(digits);
}

function row(name: string, values: number[], base: number, target: string, digits = 0): Row {
  const m = median(values);
  return [name, fmt(m, digits), `${fmt(Math.min(...values), digits)}-${fmt(Math.max(...values), digits)}`, `${(m / base).toFixed(2)}x${target === '-' ? '' : ` (${target})`}`];
}
