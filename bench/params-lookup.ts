/**
 * Parameter lookups, 10M keys of dim 16: builds the table, loads it from a
 * file:// store into a server child, measures mget over loopback HTTP with 4 concurrent
 * clients at 1,000- and 20,000-key batches, the same lookups in-process, and recovery
 * after SIGKILL next to the first load.
 *
 *   npx tsx bench/params-lookup.ts          (PARAMS_BENCH_KEYS=1000000 for a quick run)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { open, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { closeSync, openSync, readSync } from 'node:fs';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { buildTable, defaultTableMapper, mgetAnswerBytes, ParamsService, ServedTable } from '../params/index.js';
import { REGION_THREADS } from '../params/crc32c.js';
import { lookupBinding } from '../params/lookup-binding.js';
import { freePort } from '../test/fixtures/rgw.js';
import { spawnStrata, startMount } from '../test/fixtures/strata-process.js';
import { printTable } from './lib/table.js';

const KEYS = Number(process.env.PARAMS_BENCH_KEYS ?? 10_000_000);
const DIM = 16;
const CLIENTS = 4;
/** Lookup threads of the second server: one per core of a 2-core machine. */
const THREADS = Number(process.env.PARAMS_LOOKUP_THREADS ?? 2);
const BATCHES = [1_000, 20_000] as const;
/** Each configuration runs this long: enough for thousands of 1,000-key requests and a stable p99. */
const RUN_MS = Number(process.env.PARAMS_BENCH_RUN_MS ?? 5_000);
/** Distinct request bodies per batch size, cycled: random keys without generating them during the run. */
const BODIES = 64;
const SERVER = join(import.meta.dirname, 'params-server.ts');

/** Progress on stderr, so a long run shows where it is. */
function step(what: string): void {
  process.stderr.write(`params-lookup: ${what}\n`);
}

export interface Rate {
  keysPerSec: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
}

export async function run(): Promise<Record<string, unknown>> {
  // /dev/shm: the tier directory stands in for pmem, the store for a fast object store.
  const work = await mkdtemp('/dev/shm/strata-params-bench-');
  const storeDir = join(work, 'store');
  const tierDir = join(work, 'tier');
  await mkdir(storeDir);
  await mkdir(join(work, 'empty'));
  const children: ChildProcess[] = [];
  try {
    const input = join(work, 'input.bin');
    step(`writing ${KEYS} records`);
    let started = performance.now();
    const keys = await writeInput(input);
    const inputMs = performance.now() - started;
    step('building');
    started = performance.now();
    const built = await buildTable(input, `file://${storeDir}/emb.params`, { dim: DIM, shards: 4 });
    const buildMs = performance.now() - started;
    await rm(input);
    const bodies = Object.fromEntries(BATCHES.map((b) => [b, makeBodies(keys, b)])) as Record<number, Buffer[]>;

    step('first load from the store');
    // First load from the store, in a fresh server process answering on its main thread.
    const first = await startServer(tierDir, ['load', 'emb', `file://${storeDir}/emb.params`], bodies[1_000]![0]!, children, 0);
    const http: Record<string, Rate> = {};
    for (const batch of BATCHES) {
      step(`HTTP, native kernel on the event loop, ${batch}-key batches`);
      http[`native-${batch}`] = await httpRate(first.port, bodies[batch]!, batch);
    }
    step('HTTP, one client, 20,000-key batches');
    http['native-1client-20000'] = await httpRate(first.port, bodies[20_000]!, 20_000, 1);
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));

    step('SIGKILL and recover');
    // The crash: the same directory, a new process that recovers and answers on its event loop.
    const again = await startServer(tierDir, ['recover'], bodies[1_000]![0]!, children, 0);
    again.child.kill('SIGKILL');
    await new Promise((r) => again.child.once('exit', r));

    // The same table served by the JavaScript kernel (the baseline), then by lookup threads.
    const js = await startServer(tierDir, ['recover'], bodies[1_000]![0]!, children, 0, { STRATA_PARAMS_NATIVE: '0' });
    for (const batch of BATCHES) {
      step(`HTTP, JavaScript kernel on the event loop, ${batch}-key batches`);
      http[`js-${batch}`] = await httpRate(js.port, bodies[batch]!, batch);
    }
    js.child.kill('SIGKILL');
    // The server answers once its lookup threads have the table mapped.
    const pooled = await startServer(tierDir, ['recover'], bodies[1_000]![0]!, children, THREADS);
    for (const batch of BATCHES) {
      step(`HTTP, native kernel on ${THREADS} lookup threads, ${batch}-key batches`);
      http[`threads-${batch}`] = await httpRate(pooled.port, bodies[batch]!, batch);
    }
    pooled.child.kill('SIGKILL');
    // HTTP alone: the same route, bodies and answer sizes, no lookup.
    const transport = await startServer(join(work, 'empty'), ['transport', String(DIM)], undefined, children, 0);
    for (const batch of BATCHES) {
      step(`HTTP transport alone, ${batch}-key batches`);
      http[`transport-${batch}`] = await httpRate(transport.port, bodies[batch]!, batch, CLIENTS, false);
    }
    transport.child.kill('SIGKILL');

    step('the daemon: first load from the store, SIGKILL, restart');
    const daemon = await daemonRecovery(work, storeDir, bodies[1_000]![0]!);

    step('in-process');
    // In-process: the same lookups without HTTP, on this thread and on lookup threads.
    const service = new ParamsService({ dir: tierDir, lookupThreads: THREADS });
    step('in-process: recover');
    const recovered = await service.recover();
    while (!service.runsOnThreads('emb')) await new Promise((r) => setTimeout(r, 10));
    step('in-process: lookups');
    const jsTable = ServedTable.open(service.table('emb').path, defaultTableMapper(), { kernel: 'js', trusted: true });
    const inproc: Record<string, Rate> = {};
    for (const batch of BATCHES) inproc[`js-${batch}`] = inProcessRate((body) => mgetWith(jsTable, body), bodies[batch]!, batch);
    for (const batch of BATCHES) inproc[`native-${batch}`] = inProcessRate((body) => service.mget('emb', body), bodies[batch]!, batch);
    step('in-process: lookup threads');
    for (const batch of BATCHES) inproc[`threads-${batch}`] = await pooledRate(service, bodies[batch]!, batch);
    step('in-process: index checks');
    const indexCheck = indexCheckTimes(service.table('emb').path);
    await service.close();

    const row = (label: string, r: Rate, base?: Rate) => [label, r.keysPerSec / 1e6, base ? r.keysPerSec / base.keysPerSec : '', r.p50Ms, r.p99Ms, r.requests];
    printTable(`mget, ${KEYS} keys of dim ${DIM} (4 shards), random hits; x = rate against the JavaScript kernel in the same run`, ['case', 'Mkeys/s', 'x JS', 'p50 ms', 'p99 ms', 'requests'], [
      ...BATCHES.map((b) => row(`HTTP, ${CLIENTS} clients, JS kernel, event loop, ${b} keys/batch`, http[`js-${b}`]!)),
      ...BATCHES.map((b) => row(`HTTP, ${CLIENTS} clients, native kernel, event loop, ${b} keys/batch`, http[`native-${b}`]!, http[`js-${b}`])),
      ...BATCHES.map((b) => row(`HTTP, ${CLIENTS} clients, native kernel, ${THREADS} lookup threads, ${b} keys/batch`, http[`threads-${b}`]!, http[`js-${b}`])),
      row('HTTP, 1 client, native kernel, event loop, 20000 keys/batch', http['native-1client-20000']!),
      ...BATCHES.map((b) => row(`HTTP transport alone (no lookup), ${CLIENTS} clients, ${b} keys/batch`, http[`transport-${b}`]!)),
      ...BATCHES.map((b) => row(`in-process, 1 thread, JS kernel, ${b} keys/batch`, inproc[`js-${b}`]!)),
      ...BATCHES.map((b) => row(`in-process, 1 thread, native kernel, ${b} keys/batch`, inproc[`native-${b}`]!, inproc[`js-${b}`])),
      ...BATCHES.map((b) => row(`in-process, ${CLIENTS} callers, ${THREADS} lookup threads, native, ${b} keys/batch`, inproc[`threads-${b}`]!, inproc[`js-${b}`])),
    ]);
    const other = (s: ServerStart, data: number) => s.firstAnswerMs - s.timings.entryMs - s.timings.importMs - data;
    printTable('start to first correct answer (server child)', ['case', 'total ms', 'process+imports ms', 'data ms', 'rest ms (listen, answer)'], [
      ['first load from the file:// store (copy, all checksums)', first.firstAnswerMs, first.timings.entryMs + first.timings.importMs, first.timings.loadMs, other(first, first.timings.loadMs)],
      ['restart after SIGKILL (recover: map, check index)', again.firstAnswerMs, again.timings.entryMs + again.timings.importMs, again.timings.recoverReportMs, other(again, again.timings.recoverReportMs)],
    ]);
    printTable('the daemon (strata mount with --pmem): load, SIGKILL, restart', ['case', 'ms'], [
      ['first load from the file:// store through the API (copy, all checksums, switch)', daemon.loadMs],
      ['restart: spawn to first correct mget answer', daemon.firstAnswerMs],
      ['  of which the data part (parameter tables recovered: manifest, open, map, index check)', daemon.dataMs],
      ['  spawn to mounted (process start, imports, tiers, link check, API, FUSE mount)', daemon.mountedMs],
    ]);
    printTable('build and checks', ['step', 'ms'], [
      [`write ${KEYS} random records (input)`, inputMs],
      [`build, 4 shards (${(built.bytes / 2 ** 20).toFixed(0)} MiB table)`, buildMs],
      ['recover in this process (open, map, check index)', recovered.ms],
      [`index check as recovery does it: map (populated) + CRC-32C natively, ${REGION_THREADS} threads (format 2), ${(indexCheck.bytes / 2 ** 20).toFixed(0)} MiB`, indexCheck.crc32cMs],
      ['index check, node:zlib CRC-32 over reads (format 1, the old way)', indexCheck.zlibMs],
    ]);
    return { keys: KEYS, dim: DIM, clients: CLIENTS, tableBytes: built.bytes, buildMs, http, inProcess: inproc, firstLoad: first, recovery: again, recoverInProcessMs: recovered.ms, indexCheck, daemon };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  }
}

/** Writes KEYS random records; values are a function of the key so answers can be checked. Answers the keys as uint32 halves. */
export async function writeInput(path: string): Promise<Uint32Array> {
  const keys = new Uint32Array(KEYS * 2);
  randomFillSync(keys);
  const recordWords = 2 + DIM;
  const perChunk = 65_536;
  const chunk = new Uint32Array(perChunk * recordWords);
  const floats = new Float32Array(chunk.buffer);
  const handle = await open(path, 'w');
  try {
    for (let start = 0; start < KEYS; start += perChunk) {
      const n = Math.min(perChunk, KEYS - start);
      for (let i = 0; i < n; i++) {
        const w = i * recordWords;
        chunk[w] = keys[2 * (start + i)]!;
        chunk[w + 1] = keys[2 * (start + i) + 1]!;
        for (let d = 0; d < DIM; d++) floats[w + 2 + d] = expectedValue(chunk[w]!, d);
      }
      await handle.write(new Uint8Array(chunk.buffer, 0, n * recordWords * 4));
    }
  } finally {
    await handle.close();
  }
  return keys;
}

export function expectedValue(lo: number, d: number): number {
  return (lo & 0xffff) + d;
}

export function makeBodies(keys: Uint32Array, batch: number): Buffer[] {
  const total = keys.length / 2;
  return Array.from({ length: BODIES }, () => {
    const body = Buffer.allocUnsafeSlow(batch * 8);
    const words = new Uint32Array(body.buffer, body.byteOffset, batch * 2);
    for (let i = 0; i < batch; i++) {
      const k = Math.floor(Math.random() * total);
      words[2 * i] = keys[2 * k]!;
      words[2 * i + 1] = keys[2 * k + 1]!;
    }
    return body;
  });
}

/** Checks an mget answer for `body`: every key found, every vector the one written. */
function correct(body: Buffer, answer: Buffer): boolean {
  const n = body.length / 8;
  const bitmapBytes = Math.ceil(n / 32) * 4;
  if (answer.length !== bitmapBytes + n * DIM * 4) return false;
  for (const i of [0, n >> 1, n - 1]) {
    if (((answer[i >> 3]! >> (i & 7)) & 1) === 0) return false;
    const lo = body.readUInt32LE(i * 8);
    for (let d = 0; d < DIM; d++) if (answer.readFloatLE(bitmapBytes + (i * DIM + d) * 4) !== expectedValue(lo, d)) return false;
  }
  return true;
}

interface ServerStart {
  child: ChildProcess;
  port: number;
  firstAnswerMs: number;
  timings: { entryMs: number; importMs: number; recoverMs: number; recoverReportMs: number; loadMs: number; listeningAtMs: number };
}

/** Spawns the server child and times spawn to its first correct mget answer. */
async function startServer(tierDir: string, args: string[], probe: Buffer | undefined, children: ChildProcess[], threads: number, env: NodeJS.ProcessEnv = {}): Promise<ServerStart> {
  const t0 = performance.now();
  // node itself with tsx's loader (not the tsx wrapper, which would run the server as a grandchild): SIGKILL must hit the server.
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER, tierDir, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env, PARAMS_LOOKUP_THREADS: String(threads) } });
  children.push(child);
  const lines = createInterface({ input: child.stdout! });
  const line = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`params server exited (${code}) before listening`)));
  });
  const timings = JSON.parse(line) as ServerStart['timings'] & { port: number };
  const agent = new Agent({ keepAlive: false });
  let firstAnswerMs = performance.now() - t0;
  if (probe) {
    const answer = await post(agent, timings.port, probe);
    firstAnswerMs = performance.now() - t0;
    if (!correct(probe, answer)) throw new Error('the first answer after start was wrong');
  }
  return { child, port: timings.port, firstAnswerMs, timings };
}

/**
 * POSTs an mget body and answers the answer bytes. With `expectBytes` (the timed loops) the
 * chunks are only counted, not joined: joining a 1.3 MB answer per request made this client
 * collect garbage often enough to show in the p99 of every server it measured.
 */
function post(agent: Agent, port: number, body: Buffer, expectBytes?: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: '127.0.0.1', port, method: 'POST', path: '/v1/params/emb/mget', headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (expectBytes === undefined || res.statusCode !== 200) chunks.push(c);
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`mget answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`));
          if (expectBytes === undefined) return resolve(Buffer.concat(chunks));
          return bytes === expectBytes ? resolve(EMPTY) : reject(new Error(`mget answered ${bytes} bytes, expected ${expectBytes}`));
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `clients` keep-alive connections, each sending the next request when its answer is in. */
const EMPTY = Buffer.alloc(0);

async function httpRate(port: number, bodies: Buffer[], batch: number, clients = CLIENTS, check = true): Promise<Rate> {
  const answerBytes = mgetAnswerBytes(batch, DIM);
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  for (let i = 0; i < clients; i++) {
    const answer = await post(agent, port, bodies[i]!);
    if (check && !correct(bodies[i]!, answer)) throw new Error('wrong answer over HTTP');
  }
  const rate = await closedLoops(clients, RUN_MS, batch, async (_, i) => {
    await post(agent, port, bodies[i % bodies.length]!, answerBytes);
  });
  agent.destroy();
  return rate;
}

/** An mget answer from one table, as ParamsService.mget makes it. */
function mgetWith(table: ServedTable, body: Buffer): Buffer {
  const n = body.length / 8;
  const out = Buffer.allocUnsafeSlow(mgetAnswerBytes(n, table.dim));
  table.mgetInto(new Uint32Array(body.buffer, body.byteOffset, n * 2), n, new Uint32Array(out.buffer, out.byteOffset, out.length / 4));
  return out;
}

/** The same batches through `mget` on this thread, back to back. */
function inProcessRate(mget: (body: Buffer) => Buffer, bodies: Buffer[], batch: number): Rate {
  for (const body of bodies.slice(0, 4)) if (!correct(body, mget(body))) throw new Error('wrong answer in-process');
  const latencies: number[] = [];
  const deadline = performance.now() + RUN_MS;
  const begin = performance.now();
  for (let i = 0; performance.now() < deadline; i++) {
    const sent = performance.now();
    mget(bodies[i % bodies.length]!);
    latencies.push(performance.now() - sent);
  }
  return summarise(latencies, batch, (performance.now() - begin) / 1000);
}

/** CLIENTS concurrent callers of ParamsService.mgetAsync (the lookup threads answer). */
async function pooledRate(service: ParamsService, bodies: Buffer[], batch: number): Promise<Rate> {
  if (!correct(bodies[0]!, await service.mgetAsync('emb', bodies[0]!))) throw new Error('wrong answer from the lookup threads');
  return closedLoops(CLIENTS, RUN_MS, batch, async (_, i) => {
    await service.mgetAsync('emb', bodies[i % bodies.length]!);
  });
}

/**
 * The whole daemon: `strata mount` of the store with a pmem tier, the table loaded through the
 * API, SIGKILL, and a new daemon timed from spawn to its first correct mget answer (the API
 * starts before the FUSE mount, so the answer may come first). The data part and the mount
 * time come from the daemon's own log lines.
 */
async function daemonRecovery(work: string, storeDir: string, probe: Buffer): Promise<{ loadMs: number; firstAnswerMs: number; dataMs: number; mountedMs: number }> {
  const mnt = join(work, 'mnt');
  await mkdir(mnt, { recursive: true });
  const port = await freePort();
  // A fixed port (the later --api wins over startMount's), so the restarted daemon can be asked before it says where it listens.
  const flags = ['--pmem', `${join(work, 'daemon.pool')}:64MiB`, '--state-dir', join(work, 'daemon-state'), '--api', `127.0.0.1:${port}`, '--log-level', 'info'];
  const first = await startMount(`file://${storeDir}`, mnt, flags);
  let began = performance.now();
  let loadMs: number;
  try {
    const loaded = await fetch(`http://127.0.0.1:${port}/v1/params/tables`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'emb', source: `file://${storeDir}/emb.params` }) });
    if (!loaded.ok) throw new Error(`the daemon's load answered ${loaded.status}: ${await loaded.text()}`);
    loadMs = performance.now() - began;
  } finally {
    await first.stop('SIGKILL'); // the crash (and the cleanup if the load failed)
  }

  const spawnedAt = Date.now();
  began = performance.now();
  const again = spawnStrata(['mount', `file://${storeDir}`, mnt, ...flags]);
  try {
    const agent = new Agent({ keepAlive: false });
    for (;;) {
      try {
        if (correct(probe, await post(agent, port, probe))) break;
      } catch {
        // not listening yet, or the table not served yet: ask again
      }
      if (again.child.exitCode !== null) throw new Error(`the restarted daemon exited:\n${again.stderr()}`);
      await new Promise((r) => setTimeout(r, 1));
    }
    const firstAnswerMs = performance.now() - began;
    const deadline = performance.now() + 60_000;
    // Its "mounted" log line (stderr), which the timing below reads, and its "strata: mounted"
    // (stdout), printed once it handles SIGTERM, so the stop below unmounts.
    while (!again.stderr().includes('"msg":"mounted"') || !again.stdout().includes('strata: mounted')) {
      if (performance.now() > deadline) throw new Error('the restarted daemon did not mount within 60 s');
      await new Promise((r) => setTimeout(r, 5));
    }
    const log = again.stderr().split('\n').flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return []; // not a log line
      }
    });
    const recoveredLine = log.find((l) => l.msg === 'parameter tables recovered');
    const mountedLine = log.find((l) => l.msg === 'mounted');
    return { loadMs, firstAnswerMs, dataMs: Number(recoveredLine?.ms ?? NaN), mountedMs: Number(mountedLine?.time ?? NaN) - spawnedAt };
  } finally {
    await again.stop('SIGTERM');
  }
}

/**
 * `clients` closed loops of `send` for `runMs`: client `c` sends requests c, c + clients, ...,
 * each after the previous answer. Rate and latency percentiles of all the requests.
 */
export async function closedLoops(clients: number, runMs: number, batch: number, send: (client: number, i: number) => Promise<void>): Promise<Rate> {
  const latencies: number[] = [];
  const deadline = performance.now() + runMs;
  const begin = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = c; performance.now() < deadline; i += clients) {
        const sent = performance.now();
        await send(c, i);
        latencies.push(performance.now() - sent);
      }
    }),
  );
  return summarise(latencies, batch, (performance.now() - begin) / 1000);
}

/**
 * The recovery-time index check both ways on the same file: CRC-32C natively over a fresh
 * mapping (format 2, what recovery does now) and node:zlib's CRC-32 over 1 MiB reads
 * (format 1, what it did before). Each in its own fresh mapping or read, best of three.
 */
function indexCheckTimes(path: string): { bytes: number; crc32cMs: number; zlibMs: number } {
  const head = Buffer.alloc(128);
  const fd = openSync(path, 'r');
  readSync(fd, head, 0, 128, 0);
  const offset = Number(head.readBigUInt64LE(56));
  const bytes = Number(head.readBigUInt64LE(64));
  const best = (f: () => void) => Math.min(...[0, 1, 2].map(() => {
    const t = performance.now();
    f();
    return performance.now() - t;
  }));
  const native = lookupBinding();
  if (!native) throw new Error('the native addon is not built; run npm install');
  const keyCount = Number(head.readBigUInt64LE(16));
  const crc32cMs = best(() => {
    // What recovery does: the addon maps (index populated) and checksums on REGION_THREADS threads.
    const handle = native.mapTable(fd, offset, bytes, Number(head.readBigUInt64LE(40)), Number(head.readBigUInt64LE(48)), new Float64Array([0]), new Float64Array([1]), head.readUInt32LE(12), 0, keyCount);
    native.crc32cOf(handle, 0, 0, REGION_THREADS);
    native.unmapTable(handle);
  });
  const chunk = Buffer.allocUnsafeSlow(1024 * 1024);
  const zlibMs = best(() => {
    let crc = 0;
    for (let done = 0; done < bytes; ) {
      const n = readSync(fd, chunk, 0, Math.min(chunk.length, bytes - done), offset + done);
      crc = zlibCrc32(chunk.subarray(0, n), crc);
      done += n;
    }
  });
  closeSync(fd);
  return { bytes, crc32cMs, zlibMs };
}

export function summarise(latencies: number[], batch: number, seconds: number): Rate {
  const sorted = latencies.sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { keysPerSec: (latencies.length * batch) / seconds, p50Ms: at(0.5), p99Ms: at(0.99), requests: latencies.length };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
