/**
 * Parameter lookups, 10M keys of dim 16 (issue 7): builds the table, loads it from a
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
import { buildTable, ParamsService } from '../params/index.js';
import { printTable } from './lib/table.js';

const KEYS = Number(process.env.PARAMS_BENCH_KEYS ?? 10_000_000);
const DIM = 16;
const CLIENTS = 4;
/** Lookup threads of the second server: one per core of this 2-core machine. */
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

interface Rate {
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
      step(`HTTP, main thread, ${batch}-key batches`);
      http[`main-${batch}`] = await httpRate(first.port, bodies[batch]!, batch);
    }
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));

    step('SIGKILL and recover');
    // The crash: the same directory, a new process that recovers (and starts lookup threads).
    const again = await startServer(tierDir, ['recover'], bodies[1_000]![0]!, children, THREADS);
    // Give the threads time to map the table before measuring them.
    await new Promise((r) => setTimeout(r, 500));
    for (const batch of BATCHES) {
      step(`HTTP, ${THREADS} lookup threads, ${batch}-key batches`);
      http[`threads-${batch}`] = await httpRate(again.port, bodies[batch]!, batch);
    }
    again.child.kill('SIGKILL');
    await new Promise((r) => again.child.once('exit', r));

    step('in-process');
    // In-process: the same lookups without HTTP, on this thread and on lookup threads.
    const service = new ParamsService({ dir: tierDir, lookupThreads: THREADS });
    const recovered = await service.recover();
    await new Promise((r) => setTimeout(r, 500));
    const inproc: Record<string, Rate> = {};
    for (const batch of BATCHES) inproc[`main-${batch}`] = inProcessRate(service, bodies[batch]!, batch);
    for (const batch of BATCHES) inproc[`threads-${batch}`] = await pooledRate(service, bodies[batch]!, batch);
    await service.close();

    const row = (label: string, r: Rate) => [label, r.keysPerSec / 1e6, r.p50Ms, r.p99Ms, r.requests];
    printTable(`mget, ${KEYS} keys of dim ${DIM} (4 shards), random hits`, ['case', 'Mkeys/s', 'p50 ms', 'p99 ms', 'requests'], [
      ...BATCHES.map((b) => row(`HTTP, ${CLIENTS} clients, main thread, ${b} keys/batch`, http[`main-${b}`]!)),
      ...BATCHES.map((b) => row(`HTTP, ${CLIENTS} clients, ${THREADS} lookup threads, ${b} keys/batch`, http[`threads-${b}`]!)),
      ...BATCHES.map((b) => row(`in-process, 1 thread, ${b} keys/batch`, inproc[`main-${b}`]!)),
      ...BATCHES.map((b) => row(`in-process, ${CLIENTS} callers, ${THREADS} lookup threads, ${b} keys/batch`, inproc[`threads-${b}`]!)),
    ]);
    const other = (s: ServerStart, data: number) => s.firstAnswerMs - s.timings.entryMs - s.timings.importMs - data;
    printTable('start to first correct answer (server child)', ['case', 'total ms', 'process+imports ms', 'data ms', 'rest ms (listen, answer)'], [
      ['first load from the file:// store (copy, all checksums)', first.firstAnswerMs, first.timings.entryMs + first.timings.importMs, first.timings.loadMs, other(first, first.timings.loadMs)],
      ['restart after SIGKILL (recover: map, check index)', again.firstAnswerMs, again.timings.entryMs + again.timings.importMs, again.timings.recoverReportMs, other(again, again.timings.recoverReportMs)],
    ]);
    printTable('build', ['step', 'ms'], [
      [`write ${KEYS} random records (input)`, inputMs],
      [`build, 4 shards (${(built.bytes / 2 ** 20).toFixed(0)} MiB table)`, buildMs],
      ['recover in this process (open, map, check index)', recovered.ms],
    ]);
    return { keys: KEYS, dim: DIM, clients: CLIENTS, tableBytes: built.bytes, buildMs, http, inProcess: inproc, firstLoad: first, recovery: again, recoverInProcessMs: recovered.ms };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  }
}

/** Writes KEYS random records; values are a function of the key so answers can be checked. Answers the keys as uint32 halves. */
async function writeInput(path: string): Promise<Uint32Array> {
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

function expectedValue(lo: number, d: number): number {
  return (lo & 0xffff) + d;
}

function makeBodies(keys: Uint32Array, batch: number): Buffer[] {
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
async function startServer(tierDir: string, args: string[], probe: Buffer, children: ChildProcess[], threads: number): Promise<ServerStart> {
  const t0 = performance.now();
  // node itself with tsx's loader (not the tsx wrapper, which would run the server as a grandchild): SIGKILL must hit the server.
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER, tierDir, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PARAMS_LOOKUP_THREADS: String(threads) } });
  children.push(child);
  const lines = createInterface({ input: child.stdout! });
  const line = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`params server exited (${code}) before listening`)));
  });
  const timings = JSON.parse(line) as ServerStart['timings'] & { port: number };
  const agent = new Agent({ keepAlive: false });
  const answer = await post(agent, timings.port, probe);
  const firstAnswerMs = performance.now() - t0;
  if (!correct(probe, answer)) throw new Error('the first answer after start was wrong');
  return { child, port: timings.port, firstAnswerMs, timings };
}

function post(agent: Agent, port: number, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: '127.0.0.1', port, method: 'POST', path: '/v1/params/emb/mget', headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`mget answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`))));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** CLIENTS keep-alive connections, each sending the next request when its answer is in. */
async function httpRate(port: number, bodies: Buffer[], batch: number): Promise<Rate> {
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
  for (let i = 0; i < CLIENTS; i++) if (!correct(bodies[i]!, await post(agent, port, bodies[i]!))) throw new Error('wrong answer over HTTP');
  const latencies: number[] = [];
  const deadline = performance.now() + RUN_MS;
  const begin = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = c; performance.now() < deadline; i += CLIENTS) {
        const sent = performance.now();
        await post(agent, port, bodies[i % bodies.length]!);
        latencies.push(performance.now() - sent);
      }
    }),
  );
  const seconds = (performance.now() - begin) / 1000;
  agent.destroy();
  return summarise(latencies, batch, seconds);
}

/** The same batches through ParamsService.mget on this thread, back to back. */
function inProcessRate(service: ParamsService, bodies: Buffer[], batch: number): Rate {
  for (const body of bodies.slice(0, 4)) if (!correct(body, service.mget('emb', body))) throw new Error('wrong answer in-process');
  const latencies: number[] = [];
  const deadline = performance.now() + RUN_MS;
  const begin = performance.now();
  for (let i = 0; performance.now() < deadline; i++) {
    const sent = performance.now();
    service.mget('emb', bodies[i % bodies.length]!);
    latencies.push(performance.now() - sent);
  }
  return summarise(latencies, batch, (performance.now() - begin) / 1000);
}

/** CLIENTS concurrent callers of ParamsService.mgetAsync (the lookup threads answer). */
async function pooledRate(service: ParamsService, bodies: Buffer[], batch: number): Promise<Rate> {
  if (!correct(bodies[0]!, await service.mgetAsync('emb', bodies[0]!))) throw new Error('wrong answer from the lookup threads');
  const latencies: number[] = [];
  const deadline = performance.now() + RUN_MS;
  const begin = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = c; performance.now() < deadline; i += CLIENTS) {
        const sent = performance.now();
        await service.mgetAsync('emb', bodies[i % bodies.length]!);
        latencies.push(performance.now() - sent);
      }
    }),
  );
  return summarise(latencies, batch, (performance.now() - begin) / 1000);
}

function summarise(latencies: number[], batch: number, seconds: number): Rate {
  const sorted = latencies.sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { keysPerSec: (latencies.length * batch) / seconds, p50Ms: at(0.5), p99Ms: at(0.99), requests: latencies.length };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
