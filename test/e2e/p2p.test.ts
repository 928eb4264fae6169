import { freePort } from '../fixtures/rgw.js';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh } from '../fixtures/shell.js';
import { cleanupDir, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';
import { blockRequestPath, DISTRIBUTE_PATH, SIGNATURE_HEADER, signRequest, TIME_HEADER } from '../../p2p/index.js';

const MiB = 1024 * 1024;
const SECRET = 'e2e-peer-secret-7d1c9a40';
/** The goal: the store serves each block about once, whatever the number of readers. */
const STORE_BYTES_FACTOR = 1.15;


/** The value of an unlabelled counter in a daemon's /metrics (0 when absent). */
async function counterOf(api: string, name: string): Promise<number> {
  const text = await (await fetch(`${api}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('three daemons sharing blocks over Ceph RGW', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  const daemons: StrataProcess[] = [];
  const apis: string[] = [];
  const mounts: string[] = [];
  const model = randomBytes(64 * MiB);
  /**
   * 15 blocks of 4 MiB: the chance that the stopped daemon owns none of them, so that no
   * read notices it is gone, is (2/3)^15, about 0.2%.
   */
  const second = randomBytes(56 * MiB + 12345);
  const spread = randomBytes(16 * MiB);

  /**
   * Bytes the daemons pulled from the store, summed. The cache's strata_cache_store_bytes_total
   * counts every miss it filled, from a peer or the store; the bytes that came from peers are
   * taken off, and the result must agree with the peer layer's own store counter.
   */
  const storeBytes = async (indexes: readonly number[]) => {
    let sum = 0;
    for (const i of indexes) {
      const filled = await counterOf(apis[i]!, 'strata_cache_store_bytes_total');
      const fromPeers = await counterOf(apis[i]!, 'strata_p2p_bytes_from_peers_total');
      expect(filled - fromPeers).toBe(await counterOf(apis[i]!, 'strata_p2p_store_bytes_total'));
      sum += filled - fromPeers;
    }
    return sum;
  };

  beforeAll(async () => {
    testS3();
    client = testS3Client();
    bucket = await createTestBucket('p2p');
    for (const [key, body] of [['model.bin', model], ['second.bin', second], ['spread/w.bin', spread]] as const) {
      await new Upload({ client, params: { Bucket: bucket, Key: key, Body: body }, partSize: 8 * MiB }).done();
    }
    work = await tempDir('p2p');
    const ports = [await freePort(), await freePort(), await freePort()];
    const peers = ports.map((p) => `http://127.0.0.1:${p}`).join(',');
    for (let i = 0; i < 3; i += 1) {
      const mnt = join(work, `mnt${i}`);
      await sh(`mkdir -p ${mnt}`);
      mounts.push(mnt);
      apis.push(`http://127.0.0.1:${ports[i]}`);
      const args = ['--endpoint', testS3().endpoint, '--state-dir', join(work, `state${i}`), '--dram', '128MiB', '--log-level', 'warn', '--api', `127.0.0.1:${ports[i]}`, '--peers', peers];
      daemons.push(await startMount(`s3://${bucket}`, mnt, args, { STRATA_PEER_SECRET: SECRET }));
    }
  });

  afterAll(async () => {
    for (const daemon of daemons) await daemon.stop();
    client?.destroy();
    if (work) await cleanupDir(work);
  });

  it('lists every daemon as a peer, itself included', async () => {
    const view = (await (await fetch(`${apis[0]}/v1/p2p/peers`)).json()) as { enabled: boolean; self: string; peers: Array<{ id: string; up: boolean }> };
    expect(view.enabled).toBe(true);
    expect(view.self).toBe(apis[0]);
    expect(view.peers.map((p) => p.id).sort()).toEqual([...apis].sort());
  });

  it('refuses an unsigned peer request with 401 P2P_UNAUTHORIZED', async () => {
    const response = await fetch(`${apis[1]}/v1/p2p/blocks?store=x&key=y&etag=z&size=10&start=0&length=10`);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ statusCode: 401, code: 'P2P_UNAUTHORIZED' });
  });

  it('refuses bad, lying and replayed signed requests with a 4xx, and a lying size poisons nothing', async () => {
    const signed = async (base: string, method: 'GET' | 'POST', path: string, body = '') => {
      const time = Date.now();
      const signature = signRequest(SECRET, { method, path, body: Buffer.from(body), time });
      const headers = { [SIGNATURE_HEADER]: signature, [TIME_HEADER]: String(time), 'content-type': 'application/json' };
      const send = async () => {
        const response = await fetch(`${base}${path}`, { method, headers, ...(method === 'POST' ? { body } : {}) });
        return { status: response.status, code: response.headers.get('content-type')?.includes('json') ? ((await response.json()) as { code?: string }).code : undefined };
      };
      return { first: await send(), again: send };
    };
    // An object of its own: reading it through every mount must not warm what later tests count.
    const target = randomBytes(12 * MiB + 7);
    await new Upload({ client, params: { Bucket: bucket, Key: 'poison.bin', Body: target }, partSize: 8 * MiB }).done();
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'poison.bin' }));
    const ref = { storeId: `s3://${bucket}@${testS3().endpoint}`, key: 'poison.bin', etag: head.ETag!.replaceAll('"', ''), size: target.length };
    // Every daemon is asked, so the owner of block 0 is among them.
    for (const api of apis) {
      const lying = await signed(api, 'GET', blockRequestPath({ ref: { ...ref, size: 100 }, start: 0, length: 100 }));
      expect(lying.first.status, 'a size that is not the object\'s').toBe(412);
      const past = await signed(api, 'GET', blockRequestPath({ ref: { ...ref, size: target.length + 10 * MiB }, start: target.length, length: 4 * MiB }));
      expect([412, 416], 'a size past the object\'s end').toContain(past.first.status);
      for (const bad of [{ key: 'a\0b' }, { key: 'k'.repeat(5000) }, { etag: 'bad"etag' }]) {
        const answer = await signed(api, 'GET', blockRequestPath({ ref: { ...ref, ...bad }, start: 0, length: 10 }));
        expect(answer.first, JSON.stringify(bad).slice(0, 40)).toEqual({ status: 400, code: 'API_BAD_REQUEST' });
      }
      expect((await signed(api, 'POST', DISTRIBUTE_PATH, 'null')).first).toEqual({ status: 400, code: 'API_BAD_REQUEST' });
    }
    // A path with nothing under it: the job starts (and fails at once) without warming any cache the later tests measure.
    const distribute = await signed(apis[0]!, 'POST', DISTRIBUTE_PATH, JSON.stringify({ paths: ['/nothing-here'] }));
    expect(distribute.first.status).toBe(202);
    expect(await distribute.again()).toEqual({ status: 401, code: 'P2P_UNAUTHORIZED' });
    // Every daemon still reads the whole object.
    const sums = await Promise.all(mounts.map((m) => sh(`sha256sum < ${m}/poison.bin`)));
    for (const sum of sums) expect(sum.split(' ')[0]).toBe(sha256(target));
  });

  it('three readers of one 64 MiB object get every byte while the store serves it about once', async () => {
    const before = await storeBytes([0, 1, 2]);
    const sums = await Promise.all(mounts.map((mnt) => sh(`sha256sum ${mnt}/model.bin`)));
    for (const sum of sums) expect(sum.split(' ')[0]).toBe(sha256(model));
    const pulled = (await storeBytes([0, 1, 2])) - before;
    expect(pulled).toBeGreaterThanOrEqual(model.length);
    expect(pulled).toBeLessThanOrEqual(STORE_BYTES_FACTOR * model.length);
    let fromPeers = 0;
    for (const api of apis) fromPeers += await counterOf(api, 'strata_p2p_bytes_from_peers_total');
    expect(fromPeers).toBeGreaterThan(model.length);
  });

  it('distribute spreads a folder to every peer with one store read per block', async () => {
    const before = await storeBytes([0, 1, 2]);
    const response = await fetch(`${apis[0]}/v1/distribute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ paths: [`${mounts[0]}/spread`] }) });
    expect(response.status).toBe(202);
    const started = (await response.json()) as { id: string; peers: Array<{ peer: string; job?: { id: string }; error?: string }> };
    expect(started.peers).toHaveLength(2);
    const jobs = [{ api: apis[0]!, id: started.id }, ...started.peers.map((p) => ({ api: p.peer, id: p.job!.id }))];
    for (const job of jobs) {
      for (;;) {
        const status = (await (await fetch(`${job.api}/v1/jobs/${job.id}`)).json()) as { state: string; bytesDone: number; error?: string };
        if (status.state !== 'queued' && status.state !== 'running') {
          expect(status).toMatchObject({ state: 'done', bytesDone: spread.length });
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const pulled = (await storeBytes([0, 1, 2])) - before;
    expect(pulled).toBeGreaterThanOrEqual(spread.length);
    expect(pulled).toBeLessThanOrEqual(STORE_BYTES_FACTOR * spread.length);
    // Every daemon now has every block: reading it pulls nothing more.
    const sums = await Promise.all(mounts.map((mnt) => sh(`sha256sum ${mnt}/spread/w.bin`)));
    for (const sum of sums) expect(sum.split(' ')[0]).toBe(sha256(spread));
    expect((await storeBytes([0, 1, 2])) - before).toBe(pulled);
  });

  it('with one daemon gone, the others still read every byte', async () => {
    expect(await daemons[2]!.stop()).toBe(0);
    const sums = await Promise.all(mounts.slice(0, 2).map((mnt) => sh(`sha256sum ${mnt}/second.bin`)));
    for (const sum of sums) expect(sum.split(' ')[0]).toBe(sha256(second));
    const view = (await (await fetch(`${apis[0]}/v1/p2p/peers`)).json()) as { peers: Array<{ id: string; up: boolean; failures: number }> };
    expect(view.peers.find((p) => p.id === apis[2])?.failures).toBeGreaterThan(0);
  });
});
