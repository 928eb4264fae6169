/**
 * `npm run bench params-cluster`: a parameter table on three daemons coordinated through
 * etcd (R = 2), against one daemon serving the whole table, in the same run:
 *
 * 1. 1,000-key batches: keys/s and p50/p99 through any of the three daemons (the batch is
 *    split by shard; keys of shards the daemon holds are answered in process, the rest by
 *    one more HTTP request to a replica) against the same batches to one daemon serving
 *    the whole table directly. Rounds interleaved, medians and ranges.
 * 2. Commit to every daemon serving: a tight loop of one-key lookups on each daemon
 *    watches for the new version's value; the time from the coordinator's commit
 *    (`committedAt` in the serving record) to the last daemon's first new answer.
 *
 * Everything runs on one machine: the three daemons, etcd and the load generator share
 * its cores, so the routed figures include the CPU the hop takes from the others.
 */
import { mkdir } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Etcd3 } from 'etcd3';
import { buildTable, mgetAnswerBytes } from '../params/index.js';
import { writeRecords } from '../params/testing/records.js';
import { startEtcd } from '../test/fixtures/etcd.js';
import { apiUrlOf, cleanupDir, runStrata, startServe, tempDir, type StrataProcess } from '../test/fixtures/strata-process.js';
import { shell } from './lib/harness.js';
import { printTable } from './lib/table.js';

/** 1M keys of dim 16 (64 MB of values): far past the caches, small enough to build in seconds. */
const KEYS = 1_000_000;
const DIM = 16;
/** 12 shards: each of 3 members holds 8 at R = 2, so a batch's keys split 2/3 local, 1/3 remote. */
const SHARDS = 12;
const BATCH = 1000;
/** Concurrent clients: enough to keep three daemons busy on two cores. */
const CLIENTS = 6;
const ROUND_MS = 3000;
const ROUNDS = 5;
/** Publishes timed for commit-to-serving. */
const SWITCHES = 9;
const NODES = ['b0', 'b1', 'b2'];

interface Rate {
  keysPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export async function run(): Promise<Record<string, unknown>> {
  const work = await tempDir('bench-cluster');
  const etcd = await startEtcd();
  const daemons: StrataProcess[] = [];
  try {
    step('building the tables');
    const keys = Array.from({ length: KEYS }, (_, i) => BigInt(i) * 2654435761n + 17n);
    for (let v = 0; v <= SWITCHES; v++) {
      await writeRecords(join(work, 'in.bin'), v === 0 ? keys : keys.slice(0, 1000), DIM, v);
      await buildTable(join(work, 'in.bin'), join(work, `t${v}.params`), { dim: DIM, shards: SHARDS });
    }
    step('starting etcd and three daemons');
    for (const node of NODES) {
      await mkdir(join(work, `mnt-${node}`), { recursive: true });
      daemons.push(await startServe(join(work, `mnt-${node}`), ['--state-dir', join(work, `state-${node}`), '--cluster', etcd.clusterUrl('bench'), '--node-name', node, '--dram', '64MiB', '--log-level', process.env.BENCH_LOG_LEVEL ?? 'warn']));
    }
    const apis = daemons.map(apiUrlOf);
    step('publishing (R = 2) and loading the whole table on one daemon');
    const published = await runStrata(['params', 'publish', 'emb', join(work, 't0.params'), '--replicas', '2', '--api', apis[0]!, '--json'], {}, 300_000);
    if (published.code !== 0) throw new Error(`publish failed: ${published.stderr}\n${daemons.map((d, i) => `--- ${NODES[i]}\n${d.stderr().slice(-4000)}`).join('\n')}`);
    const loaded = await runStrata(['params', 'load', 'whole', join(work, 't0.params'), '--api', apis[0]!], {}, 300_000);
    if (loaded.code !== 0) throw new Error(`load failed: ${loaded.stderr}`);

    const bodies = Array.from({ length: 64 }, () => {
      const body = Buffer.alloc(BATCH * 8);
      for (let i = 0; i < BATCH; i++) body.writeBigUInt64LE(keys[Math.floor(Math.random() * KEYS)]!, i * 8);
      return body;
    });
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS * 3 });
    const direct = (c: number, i: number) => ({ url: `${apis[0]}/v1/params/whole/mget`, body: bodies[(c + i) % bodies.length]! });
    const routed = (c: number, i: number) => ({ url: `${apis[(c + i) % 3]}/v1/params/emb/mget`, body: bodies[(c + i) % bodies.length]! });
    // The two paths answer the same bytes (checked once, before timing).
    for (const body of bodies.slice(0, 4)) {
      const [a, b] = await Promise.all([post(agent, `${apis[0]}/v1/params/whole/mget`, body), post(agent, `${apis[2]}/v1/params/emb/mget`, body)]);
      if (!a.equals(b)) throw new Error('the routed answer differs from the direct one');
    }
    const rounds: Array<{ direct: Rate; routed: Rate }> = [];
    for (let r = 0; r < ROUNDS; r++) {
      step(`round ${r + 1}/${ROUNDS}`);
      // Interleaved, order alternating, so drift in the machine's load hits both alike.
      const first = r % 2 === 0 ? direct : routed;
      const a = await rate(agent, first);
      const b = await rate(agent, first === direct ? routed : direct);
      rounds.push(first === direct ? { direct: a, routed: b } : { direct: b, routed: a });
    }
    const loadAvg = (await shell('cat /proc/loadavg')).split(' ').slice(0, 3).join(' ');
    const stat = (pick: (x: { direct: Rate; routed: Rate }) => number) => {
      const xs = rounds.map(pick).sort((x, y) => x - y);
      return { median: xs[Math.floor(xs.length / 2)]!, min: xs[0]!, max: xs[xs.length - 1]! };
    };
    const rows: Array<[string, ReturnType<typeof stat>, ReturnType<typeof stat>, ReturnType<typeof stat>]> = [
      ['one daemon, whole table', stat((x) => x.direct.keysPerSec / 1e6), stat((x) => x.direct.p50Ms), stat((x) => x.direct.p99Ms)],
      ['3 daemons, R=2, any daemon', stat((x) => x.routed.keysPerSec / 1e6), stat((x) => x.routed.p50Ms), stat((x) => x.routed.p99Ms)],
    ];
    const ratio = stat((x) => x.routed.keysPerSec / x.direct.keysPerSec);
    const fmt = (s: { median: number; min: number; max: number }, digits = 2) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}-${s.max.toFixed(digits)})`;
    printTable(
      `1,000-key batches, ${CLIENTS} clients, ${ROUNDS} interleaved rounds of ${ROUND_MS / 1000} s; median (range); load average ${loadAvg}`,
      ['path', 'Mkeys/s', 'p50 ms', 'p99 ms'],
      rows.map(([name, k, p50, p99]) => [name, fmt(k), fmt(p50), fmt(p99)]),
    );
    process.stdout.write(`routed / direct keys/s: ${fmt(ratio)}\n`);

    step('timing commit to every daemon serving');
    const switches: SwitchTiming[] = [];
    const client = new Etcd3({ hosts: [`http://${etcd.hostPort}`] });
    try {
      for (let v = 1; v <= SWITCHES; v++) switches.push(await timeSwitch(agent, client, apis, join(work, `t${v}.params`), keys[0]!, v));
    } finally {
      client.close();
    }
    agent.destroy();
    printTable(
      `commit to every daemon serving the new version (${SWITCHES} publishes of 1,000 keys; target under 100 ms)`,
      ['publish', 'commit -> all routing ms', 'per daemon', 'commit -> all answering ms', 'per daemon', 'whole publish ms'],
      switches.map((s, i) => [`v${i + 2}`, s.commitToAllMs, s.switchedMs.join(' / '), s.commitToAnswersMs, s.perDaemonMs.join(' / '), s.publishMs]),
    );
    for (const [label, pick] of [['routing', (s: SwitchTiming) => s.commitToAllMs], ['answering', (s: SwitchTiming) => s.commitToAnswersMs]] as const) {
      const xs = switches.map(pick).sort((x, y) => x - y);
      process.stdout.write(`commit to all ${label}: median ${xs[Math.floor(xs.length / 2)]!.toFixed(0)} ms, range ${xs[0]!.toFixed(0)}-${xs[xs.length - 1]!.toFixed(0)} ms\n`);
    }
    return { rounds, ratio, switches, loadAvg };
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    await etcd.stop();
    await cleanupDir(work);
  }
}

/**
 * Publishes `source` (whose key `probe` has salt `salt`) and answers how long after the
 * commit each daemon first answered with the new value, polling each in a tight loop.
 */
interface SwitchTiming {
  /** Commit to the last member's router taking the new version (each member's own clock reading; one machine, one clock). */
  commitToAllMs: number;
  switchedMs: number[];
  /** Commit to the last member's first answer with the new value seen by a polling client (adds up to one poll's round trip). */
  commitToAnswersMs: number;
  perDaemonMs: number[];
  publishMs: number;
}

async function timeSwitch(agent: Agent, client: Etcd3, apis: string[], source: string, probe: bigint, salt: number): Promise<SwitchTiming> {
  const body = Buffer.alloc(8);
  body.writeBigUInt64LE(probe);
  const expected = Number(probe % 1_000_003n) + salt;
  const firstNew: number[] = apis.map(() => 0);
  let stop = false;
  const pollers = apis.map(async (api, i) => {
    while (!stop && firstNew[i] === 0) {
      const answer = await post(agent, `${api}/v1/params/emb/mget`, body);
      // Wall clock, as the coordinator stamps committedAt (one machine, one clock).
      if (Math.round(answer.readFloatLE(4)) === expected) firstNew[i] = Date.now();
    }
  });
  const started = performance.now();
  const published = await runStrata(['params', 'publish', 'emb', source, '--replicas', '2', '--api', apis[1]!], {}, 300_000);
  const publishMs = performance.now() - started;
  if (published.code !== 0) throw new Error(`publish failed: ${published.stderr}`);
  const deadline = Date.now() + 10_000;
  while (firstNew.some((t) => t === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  stop = true;
  await Promise.all(pollers);
  const serving = JSON.parse((await client.get('bench/tables/emb/serving').string()) ?? '{}') as { committedAt: number; version: number };
  const perDaemonMs = firstNew.map((t) => (t === 0 ? Infinity : t - serving.committedAt));
  // Each member's own record of when its router took the new version.
  const switchedMs: number[] = [];
  for (const api of apis) {
    const status = (await (await fetch(`${api}/v1/params/cluster`)).json()) as { tables: Array<{ name: string; version: number; servingSince?: number }> };
    const table = status.tables.find((t) => t.name === 'emb' && t.version === serving.version);
    switchedMs.push(table?.servingSince === undefined ? Infinity : table.servingSince - serving.committedAt);
  }
  return { commitToAllMs: Math.max(...switchedMs), switchedMs, commitToAnswersMs: Math.max(...perDaemonMs), perDaemonMs, publishMs };
}

async function rate(agent: Agent, target: (client: number, i: number) => { url: string; body: Buffer }): Promise<Rate> {
  const latencies: number[] = [];
  const answerBytes = mgetAnswerBytes(BATCH, DIM);
  const begin = performance.now();
  const deadline = begin + ROUND_MS;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = 0; performance.now() < deadline; i++) {
        const { url, body } = target(c, i);
        const sent = performance.now();
        const answer = await post(agent, url, body);
        if (answer.length !== answerBytes) throw new Error(`answer of ${answer.length} bytes, expected ${answerBytes}`);
        latencies.push(performance.now() - sent);
      }
    }),
  );
  const seconds = (performance.now() - begin) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { keysPerSec: (latencies.length * BATCH) / seconds, p50Ms: at(0.5), p99Ms: at(0.99) };
}

function post(agent: Agent, url: string, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const answer = Buffer.concat(chunks);
        if (res.statusCode !== 200) reject(new Error(`${url} answered ${res.statusCode}: ${answer.toString().slice(0, 200)}`));
        else resolve(answer);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function step(what: string): void {
  process.stderr.write(`params-cluster: ${what}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
