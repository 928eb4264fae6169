/**
 * Start-up of the `strata` command, the compiled package (bin/strata.js, dist/) against the
 * TypeScript sources run through tsx (bin/strata-dev.js, how every start ran before the
 * package was built), with `node -e 0` as the baseline, rounds interleaved:
 * - `strata --help` to exit;
 * - `strata mount file://...` from spawn to "strata: mounted" (FUSE mount up, API listening);
 * - after SIGKILL of a daemon serving a 4M-key table on the pmem tier, spawn of a new daemon
 *   to its first correct mget answer.
 *
 * Run: `npm run bench -- startup` (builds dist/ first). STARTUP_BENCH_KEYS, STARTUP_BENCH_ROUNDS;
 * STARTUP_BENCH_BEFORE=/path/to/other/bin/strata.js adds another build (an earlier commit's,
 * built in a worktree) as the entry `before`; STARTUP_BENCH_ENTRIES=built,before picks entries.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort } from '../test/fixtures/rgw.js';
import { printTable } from './lib/table.js';
import { median } from './lib/stats.js';

const REPO = resolve(import.meta.dirname, '..');
const KEYS = Number(process.env.STARTUP_BENCH_KEYS ?? 4_000_000);
const DIM = 16;
const ROUNDS = Number(process.env.STARTUP_BENCH_ROUNDS ?? 7);
/** Keys in the probe mget: enough to touch the index and values in several places. */
const PROBE_KEYS = 1_000;

const ENTRIES = {
  built: join(REPO, 'bin/strata.js'),
  sources: join(REPO, 'bin/strata-dev.js'),
  before: process.env.STARTUP_BENCH_BEFORE ?? '',
} as const;
type Entry = keyof typeof ENTRIES;
const CHOSEN = (process.env.STARTUP_BENCH_ENTRIES ?? (ENTRIES.before ? 'built,before,sources' : 'built,sources')).split(',') as Entry[];

function step(what: string): void {
  process.stderr.write(`startup: ${what}\n`);
}

export async function run(): Promise<Record<string, unknown>> {
  step('building dist/');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: REPO, stdio: 'inherit' });
  const work = await mkdtemp(join(tmpdir(), 'strata-startup-'));
  // The pool (and the tables beside it) on tmpfs, as a pmem tier would be memory.
  const shm = await mkdtemp('/dev/shm/strata-startup-');
  const children: ChildProcess[] = [];
  try {
    const samples: Record<string, number[]> = {};
    const add = (name: string, ms: number) => (samples[name] ??= []).push(ms);

    step('--help');
    for (let round = 0; round < ROUNDS * 2; round++) {
      add('node -e 0', await timeExit([process.execPath, '-e', '0']));
      for (const entry of order(round)) add(`${entry}: strata --help`, await timeExit([process.execPath, ENTRIES[entry], '--help']));
    }

    step('file:// mount');
    const lake = join(work, 'lake');
    await mkdir(join(lake, 'data'), { recursive: true });
    await (await open(join(lake, 'data/a.txt'), 'w')).close();
    for (let round = 0; round < ROUNDS; round++) {
      for (const entry of order(round)) add(`${entry}: mount ready`, await timeMount(entry, lake, join(work, `mnt-${entry}`), join(work, `state-${entry}`), children));
    }

    step(`building a ${KEYS}-key table (dim ${DIM})`);
    const input = join(work, 'emb.in');
    await writeInput(input);
    const store = join(work, 'store');
    await mkdir(store, { recursive: true });
    execFileSync(process.execPath, [ENTRIES.built, 'params', 'build', '--dim', String(DIM), input, join(store, 'emb.params')], { stdio: 'inherit' });
    await rm(input);
    const probe = probeBody();
    const port = await freePort();
    const mnt = join(work, 'mnt-params');
    await mkdir(mnt, { recursive: true });
    const flags = ['--pmem', `${join(shm, 'daemon.pool')}:64MiB`, '--state-dir', join(work, 'params-state'), '--api', `127.0.0.1:${port}`, '--log-level', 'warn'];
    const first = startDaemon('built', [`file://${store}`, mnt, ...flags], children);
    await waitFor(() => first.stdout.includes('strata: mounted'), first.child);
    const loaded = await fetch(`http://127.0.0.1:${port}/v1/params/tables`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'emb', source: `file://${store}/emb.params` }) });
    if (!loaded.ok) throw new Error(`load answered ${loaded.status}: ${await loaded.text()}`);
    await kill(first.child, 'SIGKILL');

    step('SIGKILL and restart to the first correct mget');
    for (let round = 0; round < ROUNDS; round++) {
      add('node -e 0 (params rounds)', await timeExit([process.execPath, '-e', '0']));
      for (const entry of order(round)) {
        const began = performance.now();
        const daemon = startDaemon(entry, [`file://${store}`, mnt, ...flags], children);
        for (;;) {
          if (daemon.child.exitCode !== null) throw new Error(`the daemon exited: ${daemon.stderr}`);
          const answer = await mget(port, probe).catch(() => undefined);
          if (answer && correct(probe, answer)) break;
          await new Promise((r) => setTimeout(r, 1));
        }
        add(`${entry}: SIGKILL -> first correct mget`, performance.now() - began);
        // Mounted before it is killed, so the next start finds the stale mount a crash leaves.
        await waitFor(() => daemon.stdout.includes('strata: mounted'), daemon.child);
        await kill(daemon.child, 'SIGKILL');
      }
    }
    execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });

    const base = median(samples['node -e 0']!);
    const paramsBase = median(samples['node -e 0 (params rounds)']!);
    const rows = Object.entries(samples).map(([name, ms]) => {
      const baseline = name.includes('mget') || name.includes('params rounds') ? paramsBase : base;
      return [name, median(ms), Math.min(...ms), Math.max(...ms), median(ms) / baseline];
    });
    printTable(`start-up, ms (${ROUNDS}-${ROUNDS * 2} interleaved rounds; x = median against node -e 0 of the same rounds; ${KEYS} keys x dim ${DIM})`, ['case', 'median', 'min', 'max', 'x node -e 0'], rows);
    return { keys: KEYS, dim: DIM, rounds: ROUNDS, samples };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    execFileSync('bash', ['-c', `for m in ${work}/mnt-*; do umount -l "$m" 2>/dev/null; done; true`]);
    await rm(work, { recursive: true, force: true });
    await rm(shm, { recursive: true, force: true });
  }
}

/** Rotates which entry goes first, so none always runs on a warmer page cache. */
function order(round: number): Entry[] {
  const shift = round % CHOSEN.length;
  return [...CHOSEN.slice(shift), ...CHOSEN.slice(0, shift)];
}

function timeExit(argv: string[]): Promise<number> {
  const began = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolvePromise(performance.now() - began) : reject(new Error(`${argv.join(' ')} exited ${code}`))));
  });
}

interface Daemon {
  child: ChildProcess;
  stdout: string;
  stderr: string;
}

function startDaemon(entry: Entry, args: string[], children: ChildProcess[]): Daemon {
  const child = spawn(process.execPath, [ENTRIES[entry], 'mount', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const daemon: Daemon = { child, stdout: '', stderr: '' };
  child.stdout!.on('data', (c: Buffer) => (daemon.stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (daemon.stderr += c.toString()));
  return daemon;
}

async function timeMount(entry: Entry, lake: string, mnt: string, stateDir: string, children: ChildProcess[]): Promise<number> {
  await mkdir(mnt, { recursive: true });
  const began = performance.now();
  const daemon = startDaemon(entry, [`file://${lake}`, mnt, '--api', '127.0.0.1:0', '--state-dir', stateDir, '--log-level', 'warn'], children);
  await waitFor(() => daemon.stdout.includes('strata: mounted'), daemon.child);
  const ms = performance.now() - began;
  await kill(daemon.child, 'SIGTERM');
  if (daemon.child.exitCode !== 0) throw new Error(`strata mount exited ${daemon.child.exitCode ?? daemon.child.signalCode} on SIGTERM: ${daemon.stderr}`);
  return ms;
}

async function waitFor(done: () => boolean, child: ChildProcess): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (!done()) {
    if (child.exitCode !== null) throw new Error(`strata exited ${child.exitCode} before it was ready`);
    if (performance.now() > deadline) throw new Error('strata was not ready within 60 s');
    await new Promise((r) => setTimeout(r, 1));
  }
}

function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill(signal);
  });
}

/** Keys 1..KEYS; the vector of key k is k + d for d < DIM (exact in float32 below 2^24). */
async function writeInput(path: string): Promise<void> {
  const perChunk = 65_536;
  const recordBytes = 8 + DIM * 4;
  const chunk = Buffer.alloc(perChunk * recordBytes);
  const handle = await open(path, 'w');
  try {
    for (let start = 1; start <= KEYS; start += perChunk) {
      const n = Math.min(perChunk, KEYS - start + 1);
      for (let i = 0; i < n; i++) {
        const at = i * recordBytes;
        chunk.writeBigUInt64LE(BigInt(start + i), at);
        for (let d = 0; d < DIM; d++) chunk.writeFloatLE(start + i + d, at + 8 + d * 4);
      }
      await handle.write(chunk, 0, n * recordBytes);
    }
  } finally {
    await handle.close();
  }
}

function probeBody(): Buffer {
  const body = Buffer.alloc(PROBE_KEYS * 8);
  for (let i = 0; i < PROBE_KEYS; i++) body.writeBigUInt64LE(BigInt(1 + Math.floor(Math.random() * KEYS)), i * 8);
  return body;
}

async function mget(port: number, body: Buffer): Promise<Buffer> {
  const answer = await fetch(`http://127.0.0.1:${port}/v1/params/emb/mget`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(body) });
  if (!answer.ok) throw new Error(String(answer.status));
  return Buffer.from(await answer.arrayBuffer());
}

/** Every key found and every vector the one written. */
function correct(body: Buffer, answer: Buffer): boolean {
  const n = body.length / 8;
  const bitmapBytes = Math.ceil(n / 32) * 4;
  if (answer.length !== bitmapBytes + n * DIM * 4) return false;
  for (let i = 0; i < n; i++) {
    if (((answer[i >> 3]! >> (i & 7)) & 1) === 0) return false;
    const key = Number(body.readBigUInt64LE(i * 8));
    for (let d = 0; d < DIM; d++) if (answer.readFloatLE(bitmapBytes + (i * DIM + d) * 4) !== key + d) return false;
  }
  return true;
}

