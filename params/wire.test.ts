import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParamsService } from './params-service.js';
import { mgetAnswerBytes } from './served-table.js';
import { buildTable } from './table-builder.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from './testing/records.js';
import { ParamsWireClient } from './wire-client.js';
import { MAX_REQUEST_BYTES, requestHeader, WIRE_OPS } from './wire-frames.js';
import { ParamsWireServer, type ParamsWireAddress } from './wire-server.js';

const TOKEN = 's3cret-token';
let work: string;
let service: ParamsService;
let open: ParamsWireServer;
let guarded: ParamsWireServer;
let openAt: ParamsWireAddress;
let guardedAt: ParamsWireAddress;

beforeAll(async () => {
  work = await mkdtemp('/dev/shm/params-wire-');
  await writeRecords(join(work, 'in.bin'), Array.from({ length: 1000 }, (_, i) => BigInt(i)), 4);
  await buildTable(join(work, 'in.bin'), join(work, 'emb.params'), { dim: 4, shards: 2 });
  service = new ParamsService({ dir: join(work, 'tier') });
  await service.load('emb', join(work, 'emb.params'));
  const mget = (name: string, keys: Uint8Array) => service.mgetLease(name, keys);
  open = new ParamsWireServer({ mget });
  openAt = await open.listen({ host: '127.0.0.1', port: 0 });
  guarded = new ParamsWireServer({ mget, token: TOKEN });
  guardedAt = await guarded.listen({ path: join(work, 'params.sock') });
});
afterAll(async () => {
  await open.close();
  await guarded.close();
  await service.close();
  await rm(work, { recursive: true, force: true });
});

/** A raw connection: what it receives, and whether the server closed it. */
async function raw(address: ParamsWireAddress): Promise<{ socket: Socket; received: () => Buffer; closed: Promise<void> }> {
  const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host);
  await new Promise((resolve) => socket.once('connect', resolve));
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => Buffer.concat(chunks), closed };
}

/** The error frames in `bytes`: id, status and code of each. */
function errorFrames(bytes: Buffer): Array<{ id: number; status: number; code: string }> {
  const out = [];
  for (let at = 0; at + 12 <= bytes.length; ) {
    const len = bytes.readUInt32LE(at);
    const status = bytes.readUInt16LE(at + 8);
    const body = bytes.subarray(at + 12, at + len);
    out.push({ id: bytes.readUInt32LE(at + 4), status, code: status === 0 ? '' : (JSON.parse(body.toString()) as { code: string }).code });
    at += len;
  }
  return out;
}

describe('params binary protocol', () => {
  it('answers mget as the REST route does, over TCP, many requests pipelined on one connection', async () => {
    const client = await ParamsWireClient.connect(openAt);
    const batches = Array.from({ length: 50 }, (_, b) => Array.from({ length: 1 + b * 7 }, (_, i) => BigInt((b * 131 + i * 17) % 1500)));
    const answers = await Promise.all(batches.map((keys) => client.mget('emb', keysBody(keys))));
    batches.forEach((keys, b) => {
      const answer = answers[b]!;
      expect(answer.equals(service.mget('emb', keysBody(keys)))).toBe(true);
      expect(decodeAnswer(answer, keys.length, 4)).toEqual(keys.map((k) => (k < 1000n ? vectorOf(k, 4) : undefined)));
    });
    client.close();
  });

  it('writes answers into the buffers callers give, pipelined, and gives an answer too large for its buffer one of its own', async () => {
    const client = await ParamsWireClient.connect(openAt);
    // Answers of 3,000 keys (48 KB) and more span several socket reads.
    const batches = Array.from({ length: 12 }, (_, b) => Array.from({ length: 1 + b * 300 }, (_, i) => BigInt((b * 97 + i * 13) % 1300)));
    const intos = batches.map((keys) => Buffer.alloc(mgetAnswerBytes(keys.length, 4) + 64, 0xee));
    const answers = await Promise.all(batches.map((keys, b) => client.mget('emb', keysBody(keys), intos[b])));
    batches.forEach((keys, b) => {
      const answer = answers[b]!;
      expect(answer.buffer).toBe(intos[b]!.buffer);
      expect(answer.byteOffset).toBe(intos[b]!.byteOffset);
      expect(answer.equals(service.mget('emb', keysBody(keys)))).toBe(true);
      expect(intos[b]!.subarray(answer.length).every((x) => x === 0xee)).toBe(true);
    });
    // Reusing one buffer for request after request.
    const again = Buffer.alloc(1 << 16);
    for (let i = 0; i < 5; i++) {
      const keys = Array.from({ length: 500 }, (_, k) => BigInt((i * 500 + k) % 1100));
      const answer = await client.mget('emb', keysBody(keys), again);
      expect(decodeAnswer(answer, keys.length, 4)).toEqual(keys.map((k) => (k < 1000n ? vectorOf(k, 4) : undefined)));
    }
    const small = Buffer.alloc(8);
    const big = await client.mget('emb', keysBody([1n, 2n, 3n]), small);
    expect(big.buffer).not.toBe(small.buffer);
    expect(decodeAnswer(big, 3, 4)).toEqual([vectorOf(1n, 4), vectorOf(2n, 4), vectorOf(3n, 4)]);
    expect(small.every((x) => x === 0)).toBe(true);
    await expect(client.mget('nope', keysBody([1n]), again)).rejects.toMatchObject({ code: 'PARAMS_TABLE_NOT_FOUND' });
    client.close();
  });

  it('answers a request error with its code and keeps the connection', async () => {
    const client = await ParamsWireClient.connect(openAt);
    await expect(client.mget('nope', keysBody([1n]))).rejects.toMatchObject({ code: 'PARAMS_TABLE_NOT_FOUND' });
    await expect(client.mget('emb', Buffer.alloc(12))).rejects.toMatchObject({ code: 'PARAMS_BAD_KEYS' });
    expect(decodeAnswer(await client.mget('emb', keysBody([5n])), 1, 4)).toEqual([vectorOf(5n, 4)]);
    client.close();
  });

  it('requires the token on a guarded server (unix socket), closing a connection that lacks it', async () => {
    const client = await ParamsWireClient.connect(guardedAt, TOKEN);
    expect(decodeAnswer(await client.mget('emb', keysBody([7n])), 1, 4)).toEqual([vectorOf(7n, 4)]);
    client.close();
    await expect(ParamsWireClient.connect(guardedAt, 'wrong')).rejects.toMatchObject({ code: 'API_UNAUTHORIZED' });
    const anonymous = await ParamsWireClient.connect(guardedAt);
    await expect(anonymous.mget('emb', keysBody([7n]))).rejects.toMatchObject({ code: 'API_UNAUTHORIZED' });
    await expect(anonymous.mget('emb', keysBody([7n]))).rejects.toMatchObject({ code: expect.any(String) });
  });

  it('answers framing errors with a code and closes that connection only; the server goes on', async () => {
    const cases: Array<{ bytes: Buffer; code: string }> = [
      { bytes: Buffer.from([5, 0, 0, 0, 1, 0, 0, 0]), code: 'PARAMS_BAD_KEYS' }, // shorter than a header
      { bytes: (() => { const b = Buffer.alloc(12); b.writeUInt32LE(MAX_REQUEST_BYTES + 1, 0); return b; })(), code: 'PARAMS_BATCH_TOO_LARGE' },
      { bytes: (() => { const b = requestHeader(9, WIRE_OPS.mget, Buffer.alloc(0), 0); b.writeUInt8(200, 9); return b; })(), code: 'PARAMS_BAD_KEYS' }, // name past the frame
    ];
    for (const { bytes, code } of cases) {
      const conn = await raw(openAt);
      conn.socket.write(bytes);
      await conn.closed;
      expect(errorFrames(conn.received())).toMatchObject([{ code }]);
    }
    // An unknown operation is answered and the connection stays.
    const conn = await raw(openAt);
    conn.socket.write(requestHeader(3, 77 as never, Buffer.alloc(0), 0));
    const name = Buffer.from('emb');
    conn.socket.write(Buffer.concat([requestHeader(4, WIRE_OPS.mget, name, 8), keysBody([1n])]));
    await new Promise((r) => setTimeout(r, 200));
    expect(errorFrames(conn.received())).toMatchObject([{ id: 3, code: 'PARAMS_BAD_INPUT' }, { id: 4, status: 0 }]);
    conn.socket.destroy();
    const client = await ParamsWireClient.connect(openAt);
    expect(decodeAnswer(await client.mget('emb', keysBody([2n])), 1, 4)).toEqual([vectorOf(2n, 4)]);
    client.close();
  });

  it('a client that never reads its answers, or sends half a frame, stalls no other client', async () => {
    // 2,000 pipelined requests of 1,000 keys (about 34 MB of answers), none read.
    const greedy = await raw(openAt);
    greedy.socket.pause();
    const body = Buffer.concat([requestHeader(1, WIRE_OPS.mget, Buffer.from('emb'), 8000), keysBody(Array.from({ length: 1000 }, (_, i) => BigInt(i)))]);
    for (let i = 0; i < 2000; i++) greedy.socket.write(body);
    // Half a frame, never finished.
    const slow = await raw(openAt);
    slow.socket.write(body.subarray(0, 100));
    await new Promise((r) => setTimeout(r, 300));
    const client = await ParamsWireClient.connect(openAt);
    const started = Date.now();
    for (let i = 0; i < 20; i++) expect(decodeAnswer(await client.mget('emb', keysBody([BigInt(i)])), 1, 4)).toEqual([vectorOf(BigInt(i), 4)]);
    expect(Date.now() - started).toBeLessThan(5000);
    client.close();
    greedy.socket.destroy();
    slow.socket.destroy();
  });
});

describe('ParamsService.listenWire', () => {
  it('serves the service over a unix socket, replacing one a killed process left behind, reports its address, and stops with the service', async () => {
    const path = join(work, 'left-behind.sock');
    // A socket file nobody accepts on, as a SIGKILLed daemon leaves it.
    const { spawnSync } = await import('node:child_process');
    const killed = spawnSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(killed.signal).toBe('SIGKILL');
    const { copyFile, stat } = await import('node:fs/promises');
    expect((await stat(path)).isSocket()).toBe(true);
    await copyFile(join(work, 'emb.params'), join(work, 'emb2.params'));

    const own = new ParamsService({ dir: join(work, 'own') });
    await own.load('emb', join(work, 'emb2.params'));
    expect(own.wireAddress).toBeUndefined();
    const at = await own.listenWire({ path }, TOKEN);
    expect(own.wireAddress).toEqual({ path });
    expect(((await stat(path)).mode & 0o777).toString(8)).toBe('600');
    await expect(own.listenWire({ host: '127.0.0.1', port: 0 })).rejects.toMatchObject({ code: 'INTERNAL' });
    const client = await ParamsWireClient.connect(at, TOKEN);
    const keys = [3n, 999n, 5000n];
    expect(decodeAnswer(await client.mget('emb', keysBody(keys)), keys.length, 4)).toEqual([vectorOf(3n, 4), vectorOf(999n, 4), undefined]);
    await own.close();
    expect(own.wireAddress).toBeUndefined();
    await expect(client.mget('emb', keysBody(keys))).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(ParamsWireClient.connect(at, TOKEN)).rejects.toThrow();
  });

  it('refuses a unix socket another server accepts on', async () => {
    const path = join(work, 'taken.sock');
    const first = new ParamsService({ dir: join(work, 'first') });
    const second = new ParamsService({ dir: join(work, 'second') });
    try {
      await first.listenWire({ path });
      await expect(second.listenWire({ path })).rejects.toMatchObject({ code: 'EADDRINUSE' });
      expect(second.wireAddress).toBeUndefined();
    } finally {
      await first.close();
      await second.close();
    }
  });
});

describe('the example frame of docs/PARAMS.md', () => {
  it('is answered as the doc says', async () => {
    const { socket, received } = await raw(openAt);
    socket.write(Buffer.from('27000000' + '07000000' + '02' + '03' + '0000' + '656d62' + '0100000000000000' + '0200000000000000' + '0300000000000000', 'hex'));
    while (received().length < 64) await new Promise((r) => setTimeout(r, 5));
    const answer = received();
    expect(answer.length).toBe(64);
    expect(answer.subarray(0, 16).toString('hex')).toBe('40000000' + '07000000' + '0000' + '0000' + '07000000');
    expect(decodeAnswer(answer.subarray(12), 3, 4)).toEqual([vectorOf(1n, 4), vectorOf(2n, 4), vectorOf(3n, 4)]);
    socket.destroy();
  });
});

describe('frames gathered from many chunks', () => {
  it('answers each of many pipelined large requests with its own keys, on lookup threads', async () => {
    const threaded = new ParamsService({ dir: join(work, 'threaded'), lookupThreads: 2 });
    await threaded.load('emb', join(work, 'emb.params'));
    while (!threaded.runsOnThreads('emb')) await new Promise((r) => setTimeout(r, 10));
    const server = new ParamsWireServer({ mget: (name, keys) => threaded.mgetLease(name, keys) });
    const at = await server.listen({ host: '127.0.0.1', port: 0 });
    const client = await ParamsWireClient.connect(at);
    try {
      // 240 KB frames: each spans several socket reads and is gathered into the connection's one buffer.
      const batches = Array.from({ length: 12 }, (_, b) => Array.from({ length: 30_000 }, (_, i) => BigInt((i * 7 + b * 101) % 1500)));
      const answers = await Promise.all(batches.map((keys) => client.mget('emb', keysBody(keys))));
      batches.forEach((keys, b) => expect(answers[b]!.equals(service.mget('emb', keysBody(keys)))).toBe(true));
    } finally {
      client.close();
      await server.close();
      await threaded.close();
    }
  });
});
