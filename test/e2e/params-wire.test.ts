import { mkdir, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTable, ParamsWireClient, type ParamsWireAddress } from '../../params/index.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from '../../params/testing/records.js';
import { apiUrlOf, cleanupDir, runStrata, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

const DIM = 8;
const TOKEN = 'wire-e2e-token-0123456789';

/** A raw connection to the binary protocol: what it received, and when the daemon closed it. */
async function raw(address: ParamsWireAddress): Promise<{ socket: Socket; received: () => Buffer; closed: Promise<void> }> {
  const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host);
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => Buffer.concat(chunks), closed };
}

/** The frames in `bytes` as id, status and error code. */
function frames(bytes: Buffer): Array<{ id: number; status: number; code?: string }> {
  const out = [];
  for (let at = 0; at + 12 <= bytes.length; ) {
    const length = bytes.readUInt32LE(at);
    const status = bytes.readUInt16LE(at + 8);
    out.push({ id: bytes.readUInt32LE(at + 4), status, ...(status === 0 ? {} : { code: (JSON.parse(bytes.subarray(at + 12, at + length).toString()) as { code: string }).code }) });
    at += length;
  }
  return out;
}

describe('the params binary protocol in a running daemon (--params-wire)', () => {
  let work: string;
  let lake: string;
  let mnt: string;
  let pool: string;
  const keys = Array.from({ length: 30_000 }, (_, i) => BigInt(i) * 104_729n + 3n);

  beforeAll(async () => {
    work = await tempDir('params-wire');
    lake = join(work, 'lake');
    mnt = join(work, 'mnt');
    pool = `/dev/shm/strata-params-wire-e2e-${process.pid}.pool`;
    await mkdir(join(lake, 'tables'), { recursive: true });
    await mkdir(mnt);
    await writeRecords(join(work, 'in.bin'), keys, DIM);
    await buildTable(join(work, 'in.bin'), join(lake, 'tables/emb.params'), { dim: DIM, shards: 3 });
  });
  afterAll(async () => {
    await rm(pool, { force: true });
    await rm(`${pool}.params`, { recursive: true, force: true });
    await rm(`${pool}.whole`, { recursive: true, force: true });
    if (work) await cleanupDir(work);
  });

  it('answers lookups as the HTTP route does, refuses a wrong token, survives bad frames, and stops with the daemon', async () => {
    const env = { STRATA_TOKEN: TOKEN };
    const args = ['--state-dir', join(work, 'state'), '--pmem', `${pool}:16MiB`, '--params-wire', '127.0.0.1:0', '--log-level', 'warn'];
    const daemon: StrataProcess = await startMount(`file://${lake}`, mnt, args, env);
    let stopped = false;
    try {
      const api = apiUrlOf(daemon);
      const auth = { authorization: `Bearer ${TOKEN}` };
      const loaded = await fetch(`${api}/v1/params/tables`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'emb', source: `file://${lake}/tables/emb.params` }) });
      expect(loaded.status).toBe(200);

      // Where it listens: in the table list and in `strata status`.
      const list = (await (await fetch(`${api}/v1/params/tables`, { headers: auth })).json()) as { wire: { host: string; port: number } };
      expect(list.wire).toMatchObject({ host: '127.0.0.1' });
      expect(list.wire.port).toBeGreaterThan(0);
      const wire = list.wire;
      const status = await runStrata(['status', '--api', api, '--json'], env);
      expect(JSON.parse(status.stdout)).toMatchObject({ paramsWire: wire });
      expect((await runStrata(['status', '--api', api], env)).stdout).toContain(`parameter lookups over the binary protocol: 127.0.0.1:${wire.port}\n`);

      // Lookups: byte-identical to the HTTP route's answers, pipelined on one connection.
      const client = await ParamsWireClient.connect(wire, TOKEN);
      const batches = [keys.slice(0, 20_000), [keys[29_999]!, 1n, keys[7]!], keys.slice(20_000).reverse()];
      const answers = await Promise.all(batches.map((batch) => client.mget('emb', keysBody(batch))));
      for (const [i, batch] of batches.entries()) {
        const http = await fetch(`${api}/v1/params/emb/mget`, { method: 'POST', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: new Uint8Array(keysBody(batch)) });
        expect(Buffer.from(await http.arrayBuffer()).equals(answers[i]!)).toBe(true);
      }
      expect(decodeAnswer(answers[1]!, 3, DIM)).toEqual([vectorOf(keys[29_999]!, DIM), undefined, vectorOf(keys[7]!, DIM)]);
      expect(decodeAnswer(answers[0]!, 20_000, DIM)[19_999]).toEqual(vectorOf(keys[19_999]!, DIM));
      await expect(client.mget('nope', keysBody([1n]))).rejects.toMatchObject({ code: 'PARAMS_TABLE_NOT_FOUND' });

      // Authentication: the API's token, and nothing else.
      await expect(ParamsWireClient.connect(wire, 'not-the-token-at-all')).rejects.toMatchObject({ code: 'API_UNAUTHORIZED' });
      const anonymous = await ParamsWireClient.connect(wire);
      await expect(anonymous.mget('emb', keysBody([keys[0]!]))).rejects.toMatchObject({ code: 'API_UNAUTHORIZED' });
      anonymous.close();

      // Bad frames: an error frame and that connection closed; the daemon and other connections go on.
      const tiny = await raw(wire);
      tiny.socket.write(Buffer.from([5, 0, 0, 0, 1, 0, 0, 0, 2]));
      await tiny.closed;
      expect(frames(tiny.received())).toEqual([{ id: 0, status: 400, code: 'PARAMS_BAD_KEYS' }]);
      const huge = await raw(wire);
      const header = Buffer.alloc(12);
      header.writeUInt32LE(64 * 1024 * 1024, 0);
      huge.socket.write(header);
      await huge.closed;
      expect(frames(huge.received())).toEqual([{ id: 0, status: 413, code: 'PARAMS_BATCH_TOO_LARGE' }]);
      const garbage = await raw(wire);
      garbage.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      await garbage.closed;
      expect(frames(garbage.received())[0]).toMatchObject({ id: 0, code: expect.stringMatching(/^PARAMS_/) });
      expect(decodeAnswer(await client.mget('emb', keysBody([keys[42]!])), 1, DIM)).toEqual([vectorOf(keys[42]!, DIM)]);
      expect((await fetch(`${api}/v1/params/tables`, { headers: auth })).status).toBe(200);

      // Shutdown closes the connection and the listener.
      const lost = client.mget('emb', keysBody(keys.slice(0, 5))).catch((err: unknown) => err);
      stopped = true;
      expect(await daemon.stop('SIGTERM')).toBe(0);
      await lost; // answered before the stop or failed by it: either way settled, never hanging
      await expect(ParamsWireClient.connect(wire, TOKEN)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      client.close();
    } finally {
      if (!stopped) await daemon.stop('SIGKILL');
    }
  });

  it('serves a unix socket again after a SIGKILL left its file behind', async () => {
    const path = join(work, 'params.sock');
    const args = ['--state-dir', join(work, 'state'), '--pmem', `${pool}:16MiB`, '--params-wire', path, '--log-level', 'warn'];
    // The table the first test loaded is recovered from the pool's params folder.
    let daemon = await startMount(`file://${lake}`, mnt, args, { STRATA_TOKEN: '' });
    try {
      const first = await ParamsWireClient.connect({ path });
      expect(decodeAnswer(await first.mget('emb', keysBody([keys[1]!])), 1, DIM)).toEqual([vectorOf(keys[1]!, DIM)]);
      first.close();
      await daemon.stop('SIGKILL');
      expect((await stat(path)).isSocket()).toBe(true);
      daemon = await startMount(`file://${lake}`, mnt, args, { STRATA_TOKEN: '' });
      const again = await ParamsWireClient.connect({ path });
      expect(decodeAnswer(await again.mget('emb', keysBody([keys[2]!, 0n])), 2, DIM)).toEqual([vectorOf(keys[2]!, DIM), undefined]);
      again.close();
    } finally {
      expect(await daemon.stop('SIGTERM')).toBe(0);
    }
  });
});
