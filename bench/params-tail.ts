/**
 * Where the tail of an mget comes from, and HTTP/1.1 against the params binary protocol
 * (docs/PARAMS.md, "Binary protocol"). One server child with 2 lookup threads serves a
 * 10M-key dim-16 table over HTTP and the binary protocol (TCP and a unix socket); a second
 * serves the binary protocol with lookups on its event loop; a third answers both without any
 * lookup (the transport alone); an in-process caller of the lookup threads has no transport
 * (queueing and lookup alone). The binary clients read answers into buffers of their own
 * (ParamsWireClient.mget's `into`), and, as the baseline, into a new buffer per answer.
 * 4 clients, each sending its next request when the answer is in, at 1,000- and 20,000-key
 * batches. A warm-up pass, then rounds run interleaved; the tables give medians and ranges
 * over rounds, the server's and the clients' CPU time per million keys and their GC pauses
 * (PerformanceObserver in the child and here). Redis 7 MGET of the same batch sizes is the
 * peer row when `redis-server` is installed.
 *
 *   npx tsx bench/params-tail.ts        (PARAMS_BENCH_KEYS=1000000 for a quick run)
 *
 * PARAMS_TAIL_CASES=a,b and PARAMS_TAIL_BATCHES=20000 run only the cases whose label holds one
 * of the strings, at those batch sizes; PARAMS_TAIL_PROF=DIR writes a V8 CPU profile of each
 * server child there (e.g. with one case, to see where its CPU goes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { buildTable, mgetAnswerBytes, ParamsService } from '../params/index.js';
import { ParamsWireClient } from '../params/wire-client.js';
import type { ParamsWireAddress } from '../params/wire-server.js';
import { freePort } from '../test/fixtures/rgw.js';
import { printTable } from './lib/table.js';
import { closedLoops, expectedValue, makeBodies, writeInput, type Rate } from './params-lookup.js';

const DIM = 16;
const CLIENTS = 4;
const THREADS = 2;
/** PARAMS_TAIL_BATCHES=20000 (comma-separated) measures only those batch sizes. */
const BATCHES = (process.env.PARAMS_TAIL_BATCHES?.split(',').map(Number) ?? [1_000, 20_000]) as readonly number[];
/** PARAMS_TAIL_CASES=binary,in-process (comma-separated) runs only the cases whose label contains one of them (a profile of one case). */
const ONLY = process.env.PARAMS_TAIL_CASES?.split(',');
/** Rounds of every case, interleaved, so the machine's other load falls on all cases alike. */
const ROUNDS = Number(process.env.PARAMS_TAIL_ROUNDS ?? 3);
/** One case of one round: a few hundred 20,000-key requests, enough for a p99. */
const RUN_MS = Number(process.env.PARAMS_BENCH_RUN_MS ?? 3_000);
/** Keys Redis holds: the peer row measures MGET of keys it has, so a subset of the table is enough. */
const REDIS_KEYS = 1_000_000;
const SERVER = join(import.meta.dirname, 'params-server.ts');

function step(what: string): void {
  process.stderr.write(`params-tail: ${what}\n`);
}

interface Server {
  child: ChildProcess;
  port: number;
  wirePort: number;
  /** The same binary protocol on a unix socket. */
  wirePath: string;
  lines: Interface;
}

interface Sample extends Rate {
  /** Server CPU (user + system, all its threads) per million keys answered. */
  cpuMsPerMkeys: number;
  gcCount: number;
  gcMaxMs: number;
  gcTotalMs: number;
  /** This process's CPU (the clients; every thread) per million keys, and its own longest GC pause. */
  clientCpuMsPerMkeys: number;
  clientGcMaxMs: number;
}

/** Before the rounds, each case runs this long unmeasured: first touches of the mappings' pages, JIT warm-up. */
const WARM_MS = Number(process.env.PARAMS_TAIL_WARM_MS ?? 1_000);

/** How long the case being run runs: WARM_MS in the warm-up pass, RUN_MS in the rounds. */
let caseMs = RUN_MS;

/** Longest GC pause of this process (the clients) since the last reset. */
let clientGcMaxMs = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) clientGcMaxMs = Math.max(clientGcMaxMs, entry.duration);
}).observe({ entryTypes: ['gc'] });

/** Runs `run` with this process's CPU time and longest GC pause over it. */
async function clientSide(batch: number, run: () => Promise<Omit<Sample, 'clientCpuMsPerMkeys' | 'clientGcMaxMs'>>): Promise<Sample> {
  clientGcMaxMs = 0;
  const cpu0 = process.cpuUsage();
  const sample = await run();
  const cpu = process.cpuUsage(cpu0);
  const mkeys = (sample.requests * batch) / 1e6;
  return { ...sample, clientCpuMsPerMkeys: mkeys > 0 ? (cpu.user + cpu.system) / 1000 / mkeys : 0, clientGcMaxMs };
}

export async function run(): Promise<Record<string, unknown>> {
  const work = await mkdtemp('/dev/shm/strata-params-tail-');
  const children: ChildProcess[] = [];
  try {
    const keysTotal = Number(process.env.PARAMS_BENCH_KEYS ?? 10_000_000);
    step(`writing and building ${keysTotal} keys`);
    const input = join(work, 'input.bin');
    const keys = await writeInput(input);
    await mkdir(join(work, 'store'));
    await buildTable(input, `file://${work}/store/emb.params`, { dim: DIM, shards: 4 });
    await rm(input);
    const bodies = Object.fromEntries(BATCHES.map((b) => [b, makeBodies(keys, b)])) as Record<number, Buffer[]>;

    const served = await startServer(join(work, 'tier'), ['load', 'emb', `file://${work}/store/emb.params`], THREADS, children);
    // The same table answered on the server's event loop (`--lookup-threads 0`): no hop to a lookup thread and back.
    const inline = await startServer(join(work, 'inline'), ['load', 'emb', `file://${work}/store/emb.params`], 0, children);
    await mkdir(join(work, 'empty'));
    const transport = await startServer(join(work, 'empty'), ['transport', String(DIM)], 0, children);
    step('in-process service (lookup threads, no transport), its own copy of the table');
    const inproc = new ParamsService({ dir: join(work, 'inproc'), lookupThreads: THREADS });
    await inproc.load('emb', `file://${work}/store/emb.params`);
    while (!inproc.runsOnThreads('emb')) await new Promise((r) => setTimeout(r, 10));

    const redis = existsSync('/usr/bin/redis-server') && (!ONLY || ONLY.some((o) => 'Redis'.includes(o))) ? await startRedis(work, keys, children) : undefined;

    const cases: Array<{ label: string; batch: number; run: () => Promise<Sample> }> = [];
    for (const batch of BATCHES) {
      cases.push({ label: `binary protocol, ${THREADS} lookup threads, a new buffer per answer`, batch, run: () => measured(served, batch, () => wireRate({ host: '127.0.0.1', port: served.wirePort }, bodies[batch]!, batch, true, false)) });
      cases.push({ label: `binary protocol, ${THREADS} lookup threads, answers into the callers' buffers`, batch, run: () => measured(served, batch, () => wireRate({ host: '127.0.0.1', port: served.wirePort }, bodies[batch]!, batch, true, true)) });
      cases.push({ label: `binary protocol on a unix socket, ${THREADS} lookup threads, callers' buffers`, batch, run: () => measured(served, batch, () => wireRate({ path: served.wirePath }, bodies[batch]!, batch, true, true)) });
      cases.push({ label: "binary protocol, lookups on the event loop (0 lookup threads), callers' buffers", batch, run: () => measured(inline, batch, () => wireRate({ host: '127.0.0.1', port: inline.wirePort }, bodies[batch]!, batch, true, true)) });
      cases.push({ label: `HTTP/1.1, ${THREADS} lookup threads`, batch, run: () => measured(served, batch, () => httpRate(served.port, bodies[batch]!, batch, true)) });
      cases.push({ label: "binary protocol, transport alone (no lookup), callers' buffers", batch, run: () => measured(transport, batch, () => wireRate({ host: '127.0.0.1', port: transport.wirePort }, bodies[batch]!, batch, false, true)) });
      cases.push({ label: 'HTTP/1.1, transport alone (no lookup)', batch, run: () => measured(transport, batch, () => httpRate(transport.port, bodies[batch]!, batch, false)) });
      cases.push({ label: `in-process, ${THREADS} lookup threads (queueing + lookup, no transport)`, batch, run: () => inProcess(inproc, bodies[batch]!, batch) });
      if (redis) cases.push({ label: `Redis 7 MGET (${REDIS_KEYS} keys held, 64-byte values)`, batch, run: () => clientSide(batch, () => redisRate(redis.port, redis.keys, batch)) });
    }
    if (ONLY) cases.splice(0, cases.length, ...cases.filter((c) => ONLY.some((o) => c.label.includes(o))));
    caseMs = WARM_MS;
    for (const c of cases) {
      step(`warm-up: ${c.label}, ${c.batch} keys`);
      await c.run();
    }
    caseMs = RUN_MS;
    const samples = new Map<string, Sample[]>();
    const loads: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      loads.push(loadavg().map((l) => l.toFixed(1)).join(' '));
      for (const c of cases) {
        step(`round ${round + 1}/${ROUNDS}: ${c.label}, ${c.batch} keys`);
        const key = `${c.label}|${c.batch}`;
        samples.set(key, [...(samples.get(key) ?? []), await c.run()]);
      }
    }
    await inproc.close();

    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const rng = (xs: number[]) => `${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}`;
    const rows = cases.map((c) => {
      const s = samples.get(`${c.label}|${c.batch}`)!;
      const mk = s.map((x) => x.keysPerSec / 1e6);
      const p99 = s.map((x) => x.p99Ms);
      return [`${c.label}, ${c.batch} keys`, med(mk), rng(mk), med(s.map((x) => x.p50Ms)), med(p99), rng(p99), med(s.map((x) => x.cpuMsPerMkeys)), med(s.map((x) => x.gcMaxMs)), med(s.map((x) => x.gcTotalMs)), med(s.map((x) => x.clientCpuMsPerMkeys)), med(s.map((x) => x.clientGcMaxMs))];
    });
    printTable(`mget of ${keysTotal} keys of dim ${DIM}, ${CLIENTS} clients, ${ROUNDS} interleaved rounds of ${RUN_MS} ms; load average at each round: ${loads.join(' | ')}`, ['case', 'Mkeys/s', 'range', 'p50 ms', 'p99 ms', 'p99 range', 'server CPU ms/Mkeys', 'GC max ms', 'GC total ms', 'client CPU ms/Mkeys', 'client GC max ms'], rows);
    return { keys: keysTotal, loads, samples: Object.fromEntries(samples) };
  } finally {
    // SIGTERM first (a server child then exits cleanly and writes its profile), SIGKILL after 5 s.
    await Promise.all(children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => new Promise<void>((resolve) => {
      const kill = setTimeout(() => c.kill('SIGKILL'), 5_000);
      c.once('exit', () => { clearTimeout(kill); resolve(); });
      c.kill('SIGTERM');
    })));
    await rm(work, { recursive: true, force: true });
  }
}

async function startServer(dir: string, args: string[], threads: number, children: ChildProcess[]): Promise<Server> {
  // PARAMS_TAIL_PROF=DIR: a V8 CPU profile of each server child into DIR (node refuses --cpu-prof in NODE_OPTIONS).
  const prof = process.env.PARAMS_TAIL_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PARAMS_TAIL_PROF}`] : [];
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', SERVER, dir, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PARAMS_LOOKUP_THREADS: String(threads) } });
  children.push(child);
  const lines = createInterface({ input: child.stdout! });
  const line = await nextLine(lines, child);
  const { port, wirePort, wirePath } = JSON.parse(line) as { port: number; wirePort: number; wirePath: string };
  return { child, port, wirePort, wirePath, lines };
}

function nextLine(lines: Interface, child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`params server exited (${code})`));
    child.once('exit', onExit);
    lines.once('line', (l) => {
      child.off('exit', onExit);
      resolve(l);
    });
  });
}

/** CPU time (ms, user + system, every thread) of a process so far, from /proc. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks of 1/100 s
}

/** Runs one case against `server`, with the server's CPU time and GC pauses over it. */
function measured(server: Server, batch: number, run: () => Promise<Rate>): Promise<Sample> {
  return clientSide(batch, () => serverSide(server, batch, run));
}

async function serverSide(server: Server, batch: number, run: () => Promise<Rate>): Promise<Omit<Sample, 'clientCpuMsPerMkeys' | 'clientGcMaxMs'>> {
  server.child.kill('SIGUSR2'); // resets the child's GC tally
  await nextLine(server.lines, server.child);
  const cpu0 = cpuMs(server.child.pid!);
  const rate = await run();
  const cpu = cpuMs(server.child.pid!) - cpu0;
  server.child.kill('SIGUSR2');
  const { gc } = JSON.parse(await nextLine(server.lines, server.child)) as { gc: { count: number; totalMs: number; maxMs: number } };
  const mkeys = (rate.requests * batch) / 1e6;
  return { ...rate, cpuMsPerMkeys: mkeys > 0 ? cpu / mkeys : 0, gcCount: gc.count, gcMaxMs: gc.maxMs, gcTotalMs: gc.totalMs };
}

function check(body: Buffer, answer: Buffer): void {
  const n = body.length / 8;
  const bitmapBytes = Math.ceil(n / 32) * 4;
  if (answer.length !== bitmapBytes + n * DIM * 4) throw new Error(`an answer of ${answer.length} bytes for ${n} keys`);
  for (const i of [0, n - 1]) {
    if (((answer[i >> 3]! >> (i & 7)) & 1) === 0) throw new Error(`key ${i} not found`);
    if (answer.readFloatLE(bitmapBytes + i * DIM * 4) !== expectedValue(body.readUInt32LE(i * 8), 0)) throw new Error(`key ${i}: wrong value`);
  }
}

/**
 * CLIENTS closed loops over the binary protocol. With `into`, each client reads its answers
 * into one buffer of its own, allocated here once (ParamsWireClient.mget's `into`); without,
 * every answer gets a new buffer (the client as it was before `into`).
 */
async function wireRate(address: ParamsWireAddress, bodies: Buffer[], batch: number, verify: boolean, into: boolean): Promise<Rate> {
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => ParamsWireClient.connect(address)));
  const answers = clients.map(() => (into ? Buffer.allocUnsafe(mgetAnswerBytes(batch, DIM)) : undefined));
  try {
    for (let c = 0; c < CLIENTS; c++) {
      const answer = await clients[c]!.mget('emb', bodies[c]!, answers[c]);
      if (verify) check(bodies[c]!, answer);
      else if (answer.length !== mgetAnswerBytes(batch, DIM)) throw new Error('transport answer of the wrong size');
    }
    return await closedLoops(CLIENTS, caseMs, batch, async (c, i) => {
      await clients[c]!.mget('emb', bodies[i % bodies.length]!, answers[c]);
    });
  } finally {
    for (const c of clients) c.close();
  }
}

async function httpRate(port: number, bodies: Buffer[], batch: number, verify: boolean): Promise<Rate> {
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
  const expect = mgetAnswerBytes(batch, DIM);
  const post = (body: Buffer) =>
    new Promise<Buffer>((resolve, reject) => {
      const req = request({ agent, host: '127.0.0.1', port, method: 'POST', path: '/v1/params/emb/mget', headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } }, (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          chunks.push(c);
        });
        res.on('end', () => (res.statusCode === 200 && bytes === expect ? resolve(Buffer.concat(chunks)) : reject(new Error(`HTTP ${res.statusCode}, ${bytes} bytes`))));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  try {
    for (let c = 0; c < CLIENTS; c++) {
      const answer = await post(bodies[c]!);
      if (verify) check(bodies[c]!, answer);
    }
    // The answer is gathered into one Buffer, as the binary protocol's client hands it over:
    // both clients do the work a user's client does with an answer.
    return await closedLoops(CLIENTS, caseMs, batch, async (_c, i) => {
      await post(bodies[i % bodies.length]!);
    });
  } finally {
    agent.destroy();
  }
}

function inProcess(service: ParamsService, bodies: Buffer[], batch: number): Promise<Sample> {
  return clientSide(batch, () => inProcessRate(service, bodies, batch));
}

async function inProcessRate(service: ParamsService, bodies: Buffer[], batch: number): Promise<Omit<Sample, 'clientCpuMsPerMkeys' | 'clientGcMaxMs'>> {
  check(bodies[0]!, await service.mgetAsync('emb', bodies[0]!));
  const rate = await closedLoops(CLIENTS, caseMs, batch, async (_c, i) => {
    const lease = await service.mgetLease('emb', bodies[i % bodies.length]!);
    lease.release();
  });
  return { ...rate, cpuMsPerMkeys: 0, gcCount: 0, gcMaxMs: 0, gcTotalMs: 0 };
}

// ---- Redis, the peer row --------------------------------------------------------------

/** A redis-server child holding REDIS_KEYS of the table's keys (8-byte binary keys, 64-byte values). */
async function startRedis(work: string, keys: Uint32Array, children: ChildProcess[]): Promise<{ port: number; keys: Buffer[] }> {
  const port = await freePort();
  const child = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', work], { stdio: 'ignore' });
  children.push(child);
  let socket: Socket | undefined;
  for (let tries = 0; !socket; tries++) {
    socket = await new Promise<Socket | undefined>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (!socket) await new Promise((r) => setTimeout(r, 50));
    if (tries > 200) throw new Error('redis-server did not start');
  }
  step(`loading ${REDIS_KEYS} keys into Redis`);
  const held: Buffer[] = [];
  const value = Buffer.alloc(64, 7);
  const perCommand = 1000;
  let replies = 0;
  const commands = Math.ceil(REDIS_KEYS / perCommand);
  const done = new Promise<void>((resolve) => {
    socket!.on('data', (c: Buffer) => {
      for (const byte of c) if (byte === 0x0a) replies++;
      if (replies >= commands) resolve();
    });
  });
  for (let start = 0; start < REDIS_KEYS; start += perCommand) {
    const parts: Buffer[] = [Buffer.from(`*${1 + 2 * perCommand}\r\n$4\r\nMSET\r\n`)];
    for (let i = start; i < start + perCommand; i++) {
      const key = Buffer.alloc(8);
      key.writeUInt32LE(keys[2 * i]!, 0);
      key.writeUInt32LE(keys[2 * i + 1]!, 4);
      held.push(key);
      parts.push(Buffer.from('$8\r\n'), key, Buffer.from('\r\n$64\r\n'), value, Buffer.from('\r\n'));
    }
    if (!socket.write(Buffer.concat(parts))) await new Promise((r) => socket!.once('drain', r));
  }
  await done;
  socket.destroy();
  return { port, keys: held };
}

/** MGET of `batch` held keys from CLIENTS connections, closed loops; every key is found (answer size checked). */
async function redisRate(port: number, held: Buffer[], batch: number): Promise<Omit<Sample, 'clientCpuMsPerMkeys' | 'clientGcMaxMs'>> {
  const commands = Array.from({ length: 16 }, () => {
    const parts: Buffer[] = [Buffer.from(`*${batch + 1}\r\n$4\r\nMGET\r\n`)];
    for (let i = 0; i < batch; i++) parts.push(Buffer.from('$8\r\n'), held[Math.floor(Math.random() * held.length)]!, Buffer.from('\r\n'));
    return Buffer.concat(parts);
  });
  // Every key is held and every value is 64 bytes: the reply's length is known.
  const replyBytes = `*${batch}\r\n`.length + batch * ('$64\r\n'.length + 64 + 2);
  const sockets = await Promise.all(
    Array.from({ length: CLIENTS }, () => new Promise<Socket>((resolve, reject) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    })),
  );
  const ask = (s: Socket, command: Buffer) =>
    new Promise<void>((resolve, reject) => {
      let got = 0;
      const onData = (c: Buffer) => {
        got += c.length;
        if (got < replyBytes) return;
        s.off('data', onData);
        if (got !== replyBytes) reject(new Error(`a Redis reply of ${got} bytes, expected ${replyBytes}`));
        else resolve();
      };
      s.on('data', onData);
      s.write(command);
    });
  try {
    const rate = await closedLoops(CLIENTS, caseMs, batch, (c, i) => ask(sockets[c]!, commands[i % commands.length]!));
    return { ...rate, cpuMsPerMkeys: 0, gcCount: 0, gcMaxMs: 0, gcTotalMs: 0 };
  } finally {
    for (const s of sockets) s.destroy();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
