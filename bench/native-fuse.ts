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
 * - the same from the pmem tier (a pool on /dev/shm) on the native path, whole (passthrough to
 *   the object's file beside the pool) and as blocks only, against `dd` of a plain file on /dev/shm;
 * - a second `ls -lR` of 10,000 objects within --metadata-ttl 60 against the first;
 * - `fio --rw=randread --bs=128k --numjobs=4` on a file warm in the NVMe tier against the same
 *   fio run on the plain local copy, page cache dropped before each (fio is installed with apt
 *   when missing; the case is skipped, saying why, only when it cannot be);
 * - 1, 2, 4 and 8 parallel readers of different files warm in the NVMe tier (their block
 *   files in the page cache, the mount's pages dropped): aggregate throughput and the
 *   daemon's CPU seconds per GiB read (utime + stime of /proc/PID/stat);
 * - the 1 GiB object whole in the NVMe tier (one whole-object file, made after the first read)
 *   read through passthrough after a restart, page cache dropped: `dd` against `dd` of the local
 *   copy, and fio randread (as above) against fio on the local copy, rounds interleaved.
 * The NVMe, fio and parallel cases keep block files (--nvme-whole-files off): they measure the
 * FUSE threads' reads of blocks, which objects not yet whole still get.
 * NATIVE_FUSE_CASES=dram,nvme,pmem,listing,fio,parallel,whole (comma-separated) runs some cases only;
 * "dram" is the DRAM and passthrough tables.
 *
 * Freed memory is held in the guest during the run (bench/lib/page-reporting.ts). Every "page
 * cache dropped" read frees the pages of the read before it; with the development VM's free page
 * reporting those went to the host at once, and the next GiB read into the page cache faulted them
 * in again, whoever read it: a `dd` of the local copy right after a fio run over it read at
 * 930-1,750 MiB/s against 3,400-3,900 otherwise, and the same through passthrough. Which case
 * came right after such a drop decided its round.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { startRgw } from '../test/fixtures/rgw.js';
import { apiUrlOf, cleanupDir, startMount, tempDir, type StrataProcess } from '../test/fixtures/strata-process.js';
import { createBucket, dropPageCache, metric, putMany, s3Client, shell, timeCommand, uploadLarge, waitForMetric } from './lib/harness.js';
import { withFreedMemoryHeld } from './lib/page-reporting.js';
import { printTable } from './lib/table.js';
import { median } from './lib/stats.js';

const MiB = 1024 * 1024;
const FILE_BYTES = 1024 * MiB;
/** Interleaved rounds per case (the order alternating); the table shows the median and the range. */
const ROUNDS = 4;
/** Rounds of the cases that restart daemons each round (NVMe after a restart, listings). */
const RESTART_ROUNDS = 3;
const LISTED_OBJECTS = 10_000;
/** Files of the parallel-readers case, one per reader at most: 8 of 128 MiB. */
const PARALLEL_FILES = 8;
const PARALLEL_FILE_BYTES = 128 * MiB;
const PARALLEL_READERS = [1, 2, 4, 8];
/** Bytes each fio job reads (4 jobs: 1 GiB in all, the file's size). */
const FIO_IO_SIZE = '256m';
/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ is 100 on Linux). */
const USER_HZ = 100;
const CASES = new Set((process.env.NATIVE_FUSE_CASES ?? 'dram,nvme,pmem,listing,fio,parallel,whole').split(','));

type Row = [string, string, string, string];

export async function run(): Promise<Record<string, unknown>> {
  return withFreedMemoryHeld(measureAll);
}

async function measureAll(): Promise<Record<string, unknown>> {
  const rgw = await startRgw();
  const work = await tempDir('bench-native-fuse');
  const daemons: StrataProcess[] = [];
  const result: Record<string, unknown> = {};
  try {
    const client = s3Client(rgw);
    await createBucket(client, 'bench');
    const body = randomBytes(FILE_BYTES);
    await uploadLarge(client, 'bench', 'model.bin', body);
    if (CASES.has('listing')) await putMany(client, 'bench', Array.from({ length: LISTED_OBJECTS }, (_, i) => ({ key: `tree/d${i % 100}/f${i}.bin`, body: Buffer.alloc(16) })));
    if (CASES.has('parallel')) {
      for (let i = 0; i < PARALLEL_FILES; i++) await uploadLarge(client, 'bench', `shards/s${i}.bin`, body.subarray(i * PARALLEL_FILE_BYTES, (i + 1) * PARALLEL_FILE_BYTES));
    }
    client.destroy();
    const env = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region };
    const localDir = join(work, 'local');
    await shell(`mkdir -p ${localDir}`);
    await writeFile(join(localDir, 'model.bin'), body);
    const mounts = ['memfs', 'native', 'fusenative', 'passthrough'].map((name) => join(work, `mnt-${name}`));
    await shell(`mkdir -p ${mounts.join(' ')}`);
    const [memfsMnt, nativeMnt, fuseNativeMnt, passthroughMnt] = mounts as [string, string, string, string];

    result.loadAverageAtStart = loadavg();
    const s3Mount = (mnt: string, args: string[]) => startMount('s3://bench', mnt, ['--endpoint', rgw.endpoint, '--log-level', 'warn', ...args], env);
    if (CASES.has('dram')) Object.assign(result, await dramAndPassthrough(work, localDir, s3Mount, memfsMnt, nativeMnt, fuseNativeMnt, passthroughMnt, daemons));
    if (CASES.has('nvme')) result.nvme = await nvmeAfterRestart(work, s3Mount, nativeMnt, fuseNativeMnt);
    if (CASES.has('pmem')) result.pmem = await pmemAfterRestart(body, s3Mount, nativeMnt);
    if (CASES.has('fio')) result.fio = await fioRandread(work, s3Mount, nativeMnt);
    if (CASES.has('parallel')) result.parallel = await parallelReaders(work, s3Mount, nativeMnt);
    if (CASES.has('whole')) result.whole = await wholeFileReads(work, s3Mount, nativeMnt);
    if (CASES.has('listing')) result.listing = await secondListing(s3Mount, nativeMnt, fuseNativeMnt, work);
    result.loadAverageAtEnd = loadavg();
    process.stdout.write(`load average: ${(result.loadAverageAtStart as number[]).map((l) => l.toFixed(1)).join(' ')} at start, ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end\n`);
    return result;
  } finally {
    for (const daemon of daemons) await daemon.stop('SIGTERM').catch(() => undefined);
    await cleanupDir(work).catch(() => undefined);
    await rgw.stop();
  }
}

/** The DRAM and passthrough tables: warm DRAM on both paths against memfs; passthrough against the file itself. */
async function dramAndPassthrough(
  work: string,
  localDir: string,
  s3Mount: (mnt: string, args: string[]) => Promise<StrataProcess>,
  memfsMnt: string,
  nativeMnt: string,
  fuseNativeMnt: string,
  passthroughMnt: string,
  daemons: StrataProcess[],
): Promise<Record<string, unknown>> {
  let memfs: ChildProcess | undefined;
  try {
    memfs = await startMemfs(work, memfsMnt);
    await setReadahead(memfsMnt);
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
    return { samples };
  } finally {
    memfs?.kill('SIGTERM');
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
  const tierArgs = (name: string) => nvmeTierArgs(work, name);
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
  const samples: Record<string, number[]> = { native: [], fuseNative: [], plainFile: [], nativeCpuPerGiB: [], fuseNativeCpuPerGiB: [] };
  try {
    for (let round = 0; round < RESTART_ROUNDS; round++) {
      if (round > 0) {
        for (let i = 0; i < daemons.length; i++) {
          await stop(daemons[i]!);
          daemons[i] = await s3Mount(paths[i]![1], ['--fuse', paths[i]![2], ...tierArgs(paths[i]![0])]);
        }
      }
      let cpu = cpuSeconds(daemons[0]!);
      samples.native!.push(await read(`${nativeMnt}/model.bin`));
      samples.nativeCpuPerGiB!.push(cpuSeconds(daemons[0]!) - cpu);
      cpu = cpuSeconds(daemons[1]!);
      samples.fuseNative!.push(await read(`${fuseNativeMnt}/model.bin`));
      samples.fuseNativeCpuPerGiB!.push(cpuSeconds(daemons[1]!) - cpu);
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
  process.stdout.write(`daemon CPU per GiB read: native ${median(samples.nativeCpuPerGiB!).toFixed(2)} s, fuse-native ${median(samples.fuseNativeCpuPerGiB!).toFixed(2)} s\n`);
  return samples;
}

/**
 * 1 GiB from the pmem tier (a pool on /dev/shm, which a restart keeps) after a restart, 64 MiB
 * of DRAM, on the native path, next to `dd` of the same bytes as a plain file on /dev/shm: with
 * whole files (the default: the object whole beside the pool, read by the kernel through
 * passthrough) and with blocks only (`--pmem-whole-files off`: the FUSE threads read the pool's
 * slots). Each is filled by one cold read from the store (reported, for the warm/cold ratio);
 * the whole file is made once that read closes. Restarted every round, page cache dropped.
 */
async function pmemAfterRestart(body: Buffer, s3Mount: (mnt: string, args: string[]) => Promise<StrataProcess>, mnt: string): Promise<Record<string, number[]>> {
  const shm = await mkdtemp(join('/dev/shm', 'strata-bench-pmem-'));
  const samples: Record<string, number[]> = { whole: [], blocks: [], plainFile: [], cold: [], wholeCpuPerGiB: [], blocksCpuPerGiB: [], passthroughOpens: [] };
  const configs = {
    whole: ['--fuse', 'native', '--state-dir', join(shm, 'state-whole'), '--dram', '64MiB', '--memory', '160MiB', '--pmem', `${join(shm, 'whole.pool')}:1100MiB`, '--pmem-scrub-rate', '0'],
    blocks: ['--fuse', 'native', '--state-dir', join(shm, 'state-blocks'), '--dram', '64MiB', '--memory', '160MiB', '--pmem', `${join(shm, 'blocks.pool')}:1100MiB`, '--pmem-whole-files', 'off'],
  };
  try {
    const plain = join(shm, 'model.bin');
    await writeFile(plain, body);
    for (const [name, args] of Object.entries(configs)) {
      const filling = await s3Mount(mnt, args);
      try {
        samples.cold!.push(FILE_BYTES / MiB / (await timeCommand(`dd if=${mnt}/model.bin of=/dev/null bs=1M status=none`)));
        if (name === 'whole' && (await waitForMetric(apiUrlOf(filling), 'strata_cache_whole_files_assembled_total', 1, 120_000)) < 1) {
          throw new Error('the object was not made whole in the pmem tier within 120 s of its first read');
        }
      } finally {
        await stop(filling);
      }
    }
    const read = async (file: string) => {
      await dropPageCache();
      return FILE_BYTES / MiB / (await timeCommand(`dd if=${file} of=/dev/null bs=1M status=none`));
    };
    for (let round = 0; round < RESTART_ROUNDS; round++) {
      const order = round % 2 === 0 ? (['whole', 'blocks'] as const) : (['blocks', 'whole'] as const);
      for (const name of order) {
        const daemon = await s3Mount(mnt, configs[name]);
        try {
          const cpu = cpuSeconds(daemon);
          samples[name]!.push(await read(`${mnt}/model.bin`));
          samples[`${name}CpuPerGiB`]!.push(cpuSeconds(daemon) - cpu);
          if (name === 'whole') samples.passthroughOpens!.push(await metric(apiUrlOf(daemon), 'strata_fuse_passthrough_files_total'));
        } finally {
          await stop(daemon);
        }
      }
      samples.plainFile!.push(await read(plain));
    }
  } finally {
    await cleanupDir(shm);
  }
  const base = median(samples.plainFile!);
  printTable('Warm 1 GiB from the pmem tier (pool on /dev/shm) after a restart, 64 MiB DRAM (MiB/s)', ['case', 'MiB/s median', 'range', 'ratio (target)'], [
    row('dd of a plain file on /dev/shm', samples.plainFile!, base, '-'),
    row('Strata, whole file (passthrough)', samples.whole!, base, '>= 0.8x'),
    row('Strata, blocks only (FUSE threads)', samples.blocks!, base, '-'),
    row('cold read from the store (the fills)', samples.cold!, base, '-'),
  ]);
  process.stdout.write(
    `whole file / cold read: ${(median(samples.whole!) / median(samples.cold!)).toFixed(1)}x (target >= 5x); daemon CPU per GiB read: whole ${median(samples.wholeCpuPerGiB!).toFixed(2)} s, blocks ${median(samples.blocksCpuPerGiB!).toFixed(2)} s; passthrough opens per whole round: ${samples.passthroughOpens!.join(', ')}\n`,
  );
  return samples;
}

/** A daemon over a 64 MiB DRAM tier and a 1,100 MiB NVMe tier of block files, its folders named after `name`. */
function nvmeTierArgs(work: string, name: string): string[] {
  return ['--state-dir', join(work, `state-nvme-${name}`), '--dram', '64MiB', '--memory', '160MiB', '--nvme', `${join(work, `nvme-${name}`)}:1100MiB`, '--nvme-whole-files', 'off'];
}

/**
 * The 1 GiB object whole in the NVMe tier, read through passthrough after a restart: `dd` and
 * fio randread (as fioRandread) against the same on the local copy, page cache dropped before
 * each, rounds interleaved. The tier has room for the blocks and the whole file side by side
 * while the file is made (the blocks are dropped once it is). The scrub is off, so it does not
 * read the disk during the measurements.
 */
async function wholeFileReads(work: string, s3Mount: (mnt: string, args: string[]) => Promise<StrataProcess>, mnt: string): Promise<Record<string, number[]> | { skipped: string }> {
  const args = ['--fuse', 'native', '--state-dir', join(work, 'state-whole'), '--dram', '64MiB', '--memory', '160MiB', '--nvme', `${join(work, 'nvme-whole')}:2200MiB`, '--nvme-scrub-rate', '0'];
  const filling = await s3Mount(mnt, args);
  await timeCommand(`dd if=${mnt}/model.bin of=/dev/null bs=1M status=none`);
  const made = await waitForMetric(apiUrlOf(filling), 'strata_cache_whole_files_assembled_total', 1, 120_000);
  await stop(filling);
  if (made < 1) throw new Error('the object was not made whole in the NVMe tier within 120 s');
  const daemon = await s3Mount(mnt, args);
  const api = apiUrlOf(daemon);
  const passthroughBefore = await metric(api, 'strata_fuse_passthrough_files_total');
  const readsBefore = await metric(api, 'strata_fuse_operation_seconds_count{op="read"}');
  const local = join(work, 'local', 'model.bin');
  const fio = await ensureFio();
  const dd = async (file: string) => {
    await dropPageCache();
    return FILE_BYTES / MiB / (await timeCommand(`dd if=${file} of=/dev/null bs=1M status=none`));
  };
  let samples: Record<string, number[]>;
  try {
    samples = await interleave({
      localDd: () => dd(local),
      wholeDd: () => dd(`${mnt}/model.bin`),
      ...(fio === undefined ? { localFio: () => fioRandreadRun(local), wholeFio: () => fioRandreadRun(`${mnt}/model.bin`) } : {}),
    });
    // Every open went through passthrough: no READ reached the daemon.
    const reads = (await metric(api, 'strata_fuse_operation_seconds_count{op="read"}')) - readsBefore;
    samples.passthroughOpens = [(await metric(api, 'strata_fuse_passthrough_files_total')) - passthroughBefore];
    samples.daemonReads = [reads];
  } finally {
    await stop(daemon);
  }
  const rows: Row[] = [
    row('dd of the local copy', samples.localDd!, median(samples.localDd!), '-'),
    row('dd through passthrough', samples.wholeDd!, median(samples.localDd!), '>= 0.8x'),
  ];
  if (fio === undefined) {
    rows.push(row('fio randread, local copy', samples.localFio!, median(samples.localFio!), '-'));
    rows.push(row('fio randread, passthrough', samples.wholeFio!, median(samples.localFio!), '>= 0.8x'));
  } else {
    process.stdout.write(`fio rows skipped: ${fio}\n`);
  }
  printTable('1 GiB whole in the NVMe tier, read through passthrough after a restart, page cache dropped (MiB/s)', ['case', 'MiB/s median', 'range', 'ratio (target)'], rows);
  process.stdout.write(`passthrough opens: ${samples.passthroughOpens![0]}, READ requests that reached the daemon: ${samples.daemonReads![0]}\n`);
  return samples;
}

/** Starts a native-path daemon over the NVMe tier `name` whose tier holds `files` (read once through it, then restarted). */
async function warmNvmeDaemon(
  work: string,
  name: string,
  s3Mount: (mnt: string, args: string[]) => Promise<StrataProcess>,
  mnt: string,
  files: string[],
): Promise<StrataProcess> {
  const args = ['--fuse', 'native', ...nvmeTierArgs(work, name)];
  const filling = await s3Mount(mnt, args);
  for (const file of files) await timeCommand(`dd if=${mnt}/${file} of=/dev/null bs=1M status=none`);
  await stop(filling);
  return s3Mount(mnt, args);
}

/**
 * `fio --rw=randread --bs=128k --numjobs=4` (psync, 256 MiB a job) on the 1 GiB file warm in
 * the NVMe tier, through the native path, against the same run on the plain local copy; the
 * page cache dropped before each run, rounds interleaved.
 */
async function fioRandread(work: string, s3Mount: (mnt: string, args: string[]) => Promise<StrataProcess>, mnt: string): Promise<Record<string, number[]> | { skipped: string }> {
  const fio = await ensureFio();
  if (fio !== undefined) {
    process.stdout.write(`fio case skipped: ${fio}\n`);
    return { skipped: fio };
  }
  const daemon = await warmNvmeDaemon(work, 'fio', s3Mount, mnt, ['model.bin']);
  const samples: Record<string, number[]> = { local: [], native: [] };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order: Array<[string, string]> = [['local', join(work, 'local', 'model.bin')], ['native', `${mnt}/model.bin`]];
      if (round % 2 === 1) order.reverse();
      for (const [name, file] of order) samples[name]!.push(await fioRandreadRun(file));
    }
  } finally {
    await stop(daemon);
  }
  const base = median(samples.local!);
  printTable('fio randread, bs 128k, 4 jobs, page cache dropped: 1 GiB file warm in the NVMe tier vs the local copy (MiB/s)', ['case', 'MiB/s median', 'range', 'ratio (target)'], [
    row('plain local copy', samples.local!, base, '-'),
    row('Strata native path, NVMe tier', samples.native!, base, '>= 0.8x'),
  ]);
  return samples;
}

/** One `fio --rw=randread --bs=128k --numjobs=4` run (psync, 256 MiB a job) of `file`, page cache dropped first: MiB/s. */
async function fioRandreadRun(file: string): Promise<number> {
  await dropPageCache();
  const out = await shell(`fio --name=randread --filename=${file} --readonly --rw=randread --bs=128k --numjobs=4 --ioengine=psync --io_size=${FIO_IO_SIZE} --group_reporting --output-format=json`);
  const report = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ read: { bw_bytes: number } }> };
  return report.jobs[0]!.read.bw_bytes / MiB;
}

/** undefined once fio is on the PATH (installed with apt when missing), else why it is not. */
async function ensureFio(): Promise<string | undefined> {
  if (await shell('command -v fio').then(() => true, () => false)) return undefined;
  try {
    await shell('DEBIAN_FRONTEND=noninteractive apt-get install -y fio > /dev/null 2>&1');
    return undefined;
  } catch (err) {
    return `fio is not installed and apt-get install fio failed: ${(err as Error).message.split('\n')[0]}`;
  }
}

/**
 * 1, 2, 4 and 8 readers, each `dd` of a different 128 MiB file warm in the NVMe tier, all at
 * once: aggregate MiB/s and the daemon's CPU seconds per GiB. Before each measurement the page
 * cache is dropped and the tier's block files are read back into it, so the readers measure
 * the FUSE path (threads, copies), not the disk.
 */
async function parallelReaders(work: string, s3Mount: (mnt: string, args: string[]) => Promise<StrataProcess>, mnt: string): Promise<Record<string, number[]>> {
  const files = Array.from({ length: PARALLEL_FILES }, (_, i) => `shards/s${i}.bin`);
  const daemon = await warmNvmeDaemon(work, 'parallel', s3Mount, mnt, files);
  const samples: Record<string, number[]> = {};
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 1 ? [...PARALLEL_READERS].reverse() : PARALLEL_READERS;
      for (const readers of order) {
        await dropPageCache();
        await shell(`find ${join(work, 'nvme-parallel')} -name '*.blk' -exec cat {} + > /dev/null`);
        const cpu = cpuSeconds(daemon);
        const seconds = await timeCommand(files.slice(0, readers).map((f) => `dd if=${mnt}/${f} of=/dev/null bs=1M status=none &`).join(' ') + ' wait');
        const gib = (readers * PARALLEL_FILE_BYTES) / (1024 * MiB);
        (samples[`r${readers}`] ??= []).push((readers * PARALLEL_FILE_BYTES) / MiB / seconds);
        (samples[`cpu${readers}`] ??= []).push((cpuSeconds(daemon) - cpu) / gib);
      }
    }
  } finally {
    await stop(daemon);
  }
  const one = median(samples.r1!);
  printTable('Parallel readers of different 128 MiB files warm in the NVMe tier, block files in the page cache (aggregate MiB/s; ratio to one reader)', ['readers', 'MiB/s median', 'range', 'ratio', 'daemon CPU s/GiB'], PARALLEL_READERS.map((n) => [...row(String(n), samples[`r${n}`]!, one, '-'), median(samples[`cpu${n}`]!).toFixed(2)]));
  return samples;
}

/** User plus system CPU seconds the daemon has used so far (/proc/PID/stat fields 14 and 15). */
function cpuSeconds(daemon: StrataProcess): number {
  const stat = readFileSync(`/proc/${daemon.child.pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
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

function fmt(value: number, digits = 0): string {
  return value.toFixed(digits);
}

function row(name: string, values: number[], base: number, target: string, digits = 0): Row {
  const m = median(values);
  return [name, fmt(m, digits), `${fmt(Math.min(...values), digits)}-${fmt(Math.max(...values), digits)}`, `${(m / base).toFixed(2)}x${target === '-' ? '' : ` (${target})`}`];
}
