import { join } from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTable } from '../../params/index.js';
import { encodeDelta } from '../../params/index.js';
import { keysBody, vectorOf, writeRecords } from '../../params/testing/records.js';
import { startEtcd, type EtcdHandle } from '../fixtures/etcd.js';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, runStrata, startServe, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const DIM = 8;
const SHARDS = 12;
const BATCH = 1000;
const NODES = ['m0', 'm1', 'm2'];

interface Status {
  enabled: boolean;
  coordinator?: string;
  members: Array<{ node: string }>;
  tables: Array<{ name: string; version: number; state: string; underReplicated: number; switch?: unknown }>;
}

/** The salt of every found vector of an answer (vectorOf(key, dim, salt) puts it in element 0), and the keys missing. */
function salts(answer: Buffer, keys: readonly bigint[]): { salts: Set<number>; missing: number } {
  const n = keys.length;
  const bitmap = Math.ceil(n / 32) * 4;
  const out = new Set<number>();
  let missing = 0;
  for (let i = 0; i < n; i++) {
    if (((answer[i >> 3]! >> (i & 7)) & 1) === 0) {
      missing++;
      continue;
    }
    out.add(Math.round(answer.readFloatLE(bitmap + i * DIM * 4) - Number(keys[i]! % 1_000_003n)));
  }
  return { salts: out, missing };
}

async function mget(api: string, name: string, keys: readonly bigint[]): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(`${api}/v1/params/${name}/mget`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(keysBody(keys)) });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

async function status(api: string): Promise<Status> {
  return (await (await fetch(`${api}/v1/params/cluster`)).json()) as Status;
}

/** Every daemon's stderr, for the message of a failed wait. */
let daemonLogs: () => string = () => '';

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe().catch(() => undefined);
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the daemons said:\n${daemonLogs()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Clients sending 1,000-key batches through `apis` (round robin) until stopped; every
 * answer is checked to come from one version whole.
 */
function load(apis: () => string[], keys: readonly bigint[], clients = 3) {
  let stopped = false;
  const failures: string[] = [];
  const mixed: string[] = [];
  const seen = new Set<number>();
  let answers = 0;
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let round = 0; !stopped; round++) {
      const targets = apis();
      const api = targets[(round + c) % targets.length]!;
      const start = Math.floor(Math.random() * (keys.length - BATCH));
      const batch = keys.slice(start, start + BATCH);
      try {
        const { status: code, body } = await mget(api, 'emb', batch);
        if (code !== 200) {
          failures.push(`${api}: ${code} ${body.toString().slice(0, 200)}`);
          continue;
        }
        const got = salts(body, batch);
        answers++;
        if (got.salts.size !== 1 || got.missing > 0) mixed.push(`${api}: salts ${[...got.salts].join(',')}, ${got.missing} missing`);
        for (const s of got.salts) seen.add(s);
      } catch (err) {
        failures.push(`${api}: ${(err as Error).message}`);
      }
    }
  });
  return {
    failures,
    mixed,
    seen,
    answers: () => answers,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

describe('a parameter table across three daemons coordinated through etcd', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  let etcd: EtcdHandle;
  const daemons = new Map<string, StrataProcess>();
  const apis = new Map<string, string>();
  const keys = Array.from({ length: 20_000 }, (_, i) => BigInt(i) * 7919n + 5n);
  /** v3 is larger, so its prepare lasts long enough to kill the coordinator during it. */
  const bigKeys = Array.from({ length: 400_000 }, (_, i) => BigInt(i) * 7919n + 5n);

  const startMember = async (node: string) => {
    const mnt = join(work, `mnt-${node}`);
    const proc = await startServe(mnt, ['--state-dir', join(work, `state-${node}`), '--endpoint', testS3().endpoint, '--cluster', etcd.clusterUrl('it'), '--node-name', node, '--lookup-threads', '0', '--dram', '64MiB', '--log-level', 'warn']);
    daemons.set(node, proc);
    apis.set(node, apiUrlOf(proc));
  };

  /** Keys the delta changes (salt 5) and deletes; the load generator leaves them out. */
  const deltaKeys = keys.slice(0, 100);
  const deletedKeys = keys.slice(100, 110);
  const loadKeys = keys.slice(200);
  const checkDelta = async (nodes: readonly string[]) => {
    for (const node of nodes) {
      const changed = await mget(apis.get(node)!, 'emb', [...deltaKeys, 3n]);
      expect(salts(changed.body, [...deltaKeys, 3n]), `delta through ${node}`).toEqual({ salts: new Set([5]), missing: 0 });
      const gone = await mget(apis.get(node)!, 'emb', deletedKeys);
      expect(salts(gone.body, deletedKeys)).toEqual({ salts: new Set(), missing: deletedKeys.length });
      const rest = keys.slice(110, 200);
      expect(salts((await mget(apis.get(node)!, 'emb', rest)).body, rest)).toEqual({ salts: new Set([1]), missing: 0 });
    }
  };

  const publish = (via: string, version: string, replicas = 2) => runStrata(['params', 'publish', 'emb', `s3://${bucket}/tables/emb-${version}.params`, '--replicas', String(replicas), '--api', apis.get(via)!, '--json'], {}, 120_000);

  beforeAll(async () => {
    daemonLogs = () => [...daemons].map(([node, d]) => `--- ${node}\n${d.stderr().slice(-3000)}`).join('\n');
    testS3();
    client = testS3Client();
    bucket = await createTestBucket('params-cluster');
    work = await tempDir('params-cluster');
    etcd = await startEtcd();
    for (const [version, salt, set] of [['v1', 0, keys], ['v2', 1, keys], ['v3', 2, bigKeys]] as const) {
      await writeRecords(join(work, `${version}.bin`), set, DIM, salt);
      await buildTable(join(work, `${version}.bin`), join(work, `emb-${version}.params`), { dim: DIM, shards: SHARDS });
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `tables/emb-${version}.params`, Body: await readFile(join(work, `emb-${version}.params`)) }));
    }
    for (const node of NODES) await mkdir(join(work, `mnt-${node}`), { recursive: true });
    await Promise.all(NODES.map((node) => startMember(node)));
  }, 180_000);

  afterAll(async () => {
    await Promise.all([...daemons.values()].map((d) => d.stop()));
    // A SIGKILLed daemon leaves its FUSE mount behind.
    for (const node of NODES) await sh(`fusermount -uz ${join(work, `mnt-${node}`)} 2>/dev/null || true`);
    await etcd?.stop();
    client?.destroy();
    if (work) await cleanupDir(work);
  });

  it('answers through every daemon byte for byte as one daemon serving the whole table', async () => {
    const published = await publish('m1', 'v1');
    expect(published.code, published.stderr).toBe(0);
    expect(JSON.parse(published.stdout)).toMatchObject({ name: 'emb', version: 1 });
    // The single-node answer of the same table, on one of the daemons, under another name.
    const single = await fetch(`${apis.get('m0')}/v1/params/tables`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'whole', source: `s3://${bucket}/tables/emb-v1.params` }) });
    expect(single.status).toBe(200);
    const asked = [...keys.slice(0, 3000), 6n, 2n ** 64n - 1n, ...keys.slice(17_000)];
    const expected = await mget(apis.get('m0')!, 'whole', asked);
    for (const node of NODES) {
      const got = await mget(apis.get(node)!, 'emb', asked);
      expect(got.status).toBe(200);
      expect(got.body.equals(expected.body), `answer through ${node}`).toBe(true);
    }
    const st = await status(apis.get('m2')!);
    expect(st.members.map((m) => m.node)).toEqual(NODES);
    expect(st.tables).toMatchObject([{ name: 'emb', version: 1, state: 'replicated', underReplicated: 0 }]);
    // Bad input: one line and a non-zero exit; the cluster keeps serving version 1.
    const missing = await runStrata(['params', 'publish', 'emb', `s3://${bucket}/tables/nope.params`, '--api', apis.get('m1')!]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^strata: params publish: 404 .*no such object\n$/);
    const tooMany = await runStrata(['params', 'publish', 'emb', `s3://${bucket}/tables/emb-v1.params`, '--replicas', '4', '--api', apis.get('m1')!]);
    expect(tooMany.stderr).toMatch(/^strata: params publish: 409 4 replicas need 4 members; the cluster has 3/);
    const ls = await runStrata(['params', 'ls', '--api', apis.get('m0')!]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/cluster it: 3 member\(s\)/);
    expect(ls.stdout).toMatch(/emb\s+1\s+20000\s+8\s+12\s+2\s+replicated/);
  });

  it('publishes v2 under continuous load with no failed request and no answer mixing versions', async () => {
    const traffic = load(() => NODES.map((n) => apis.get(n)!), loadKeys);
    await new Promise((r) => setTimeout(r, 500));
    const published = await publish('m0', 'v2');
    expect(published.code, published.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 2500)); // past the drop of v1 on every member
    await traffic.stop();
    expect(traffic.failures).toEqual([]);
    expect(traffic.mixed).toEqual([]);
    expect([...traffic.seen].sort()).toEqual([0, 1]);
    expect(traffic.answers()).toBeGreaterThan(20);
    for (const node of NODES) expect(salts((await mget(apis.get(node)!, 'emb', keys.slice(0, BATCH))).body, keys.slice(0, BATCH)).salts).toEqual(new Set([1]));
  });

  it('applies a delta to every replica of the shards it touches, through any member', async () => {
    // Two deltas: the replicas of shards both touch copy a table whose first delta went in place.
    const deltas = [encodeDelta(DIM, deltaKeys.map((k) => [k, vectorOf(k, DIM, 5)] as const), []), encodeDelta(DIM, [[3n, vectorOf(3n, DIM, 5)]], deletedKeys)];
    for (const [i, body] of deltas.entries()) {
      const res = await fetch(`${apis.get(NODES[2 - i]!)}/v1/params/tables/emb/delta`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(body) });
      expect(res.status, await res.clone().text()).toBe(200);
      expect(await res.json()).toMatchObject({ name: 'emb', version: 3 + i });
    }
    await checkDelta(NODES);
  });

  it('routes around a daemon killed under load without a failed request, and restores two replicas', async () => {
    const victim = 'm2';
    const survivors = NODES.filter((n) => n !== victim);
    const traffic = load(() => survivors.map((n) => apis.get(n)!), loadKeys);
    await new Promise((r) => setTimeout(r, 500));
    await daemons.get(victim)!.stop('SIGKILL');
    // The coordinator notices once the member's lease expires, and places its shards again.
    const repaired = await until('two live replicas of every shard', async () => {
      const st = await status(apis.get(survivors[0]!)!);
      const table = st.tables[0];
      return st.members.length === 2 && table && table.version > 4 && table.state === 'replicated' && !table.switch ? table : undefined;
    });
    await new Promise((r) => setTimeout(r, 500));
    await traffic.stop();
    expect(traffic.failures).toEqual([]);
    expect(traffic.mixed).toEqual([]);
    expect(repaired.underReplicated).toBe(0);
    // The new replicas copied their rows from the old ones: the delta is still there.
    await checkDelta(survivors);
    daemons.delete(victim);
    await startMember(victim); // back for the next test
    await until('three members', async () => ((await status(apis.get('m0')!)).members.length === 3 ? true : undefined));
  });

  it('finishes or aborts a publish whose coordinator is killed during the prepare, and serves one version whole', async () => {
    const coordinator = (await status(apis.get('m0')!)).coordinator!;
    expect(NODES).toContain(coordinator);
    const asker = NODES.find((n) => n !== coordinator)!;
    const survivors = NODES.filter((n) => n !== coordinator);
    const publishing = publish(asker, 'v3');
    await until('the v3 switch to start', async () => ((await status(apis.get(asker)!)).tables[0]?.switch ? true : undefined), 60_000);
    await daemons.get(coordinator)!.stop('SIGKILL');
    daemons.delete(coordinator);
    const outcome = await publishing;
    const st = await until('a new coordinator and no running switch', async () => {
      const s = await status(apis.get(asker)!);
      return s.coordinator && s.coordinator !== coordinator && !s.tables[0]?.switch ? s : undefined;
    });
    const served = st.tables[0]!.version;
    if (outcome.code === 0) {
      expect(served).toBeGreaterThanOrEqual(JSON.parse(outcome.stdout).version);
    } else {
      expect(outcome.stderr).toMatch(/aborted/);
    }
    // Whichever it is, every survivor answers from one version whole.
    const sample = keys.slice(5000, 5000 + BATCH);
    const expectSalt = outcome.code === 0 ? 2 : 1;
    for (const node of survivors) {
      const got = await until(`an answer through ${node}`, async () => {
        const r = await mget(apis.get(node)!, 'emb', sample);
        return r.status === 200 ? r : undefined;
      });
      expect(salts(got.body, sample)).toEqual({ salts: new Set([expectSalt]), missing: 0 });
    }
  });
});
