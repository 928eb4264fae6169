import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import Fastify, { type FastifyInstance, type InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerParamsRoutes } from '../api/index.js';
import { StrataError } from '../errors/index.js';
import { encodeDelta } from './delta-body.js';
import { ParamsService } from './params-service.js';
import { buildTable } from './table-builder.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from './testing/records.js';

let work: string;
let app: FastifyInstance;
let source: string;

beforeAll(async () => {
  work = await mkdtemp('/dev/shm/params-routes-');
  await writeRecords(join(work, 'in.bin'), Array.from({ length: 100 }, (_, i) => BigInt(i)), 4);
  source = join(work, 'emb.params');
  await buildTable(join(work, 'in.bin'), source, { dim: 4, shards: 2 });
  app = Fastify();
  // The same error rendering as daemon/api/server.ts.
  app.setErrorHandler((err: unknown, _request, reply) => {
    if (err instanceof StrataError) return reply.status(err.statusCode).send({ statusCode: err.statusCode, code: err.code, message: err.message });
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    return reply.status(status).send({ statusCode: status, code: status === 413 ? 'API_BODY_TOO_LARGE' : 'API_BAD_REQUEST', message: (err as Error).message });
  });
  await registerParamsRoutes(app, new ParamsService({ dir: join(work, 'tier') }));
  await app.ready();
});
afterAll(async () => {
  await app.close();
  await rm(work, { recursive: true, force: true });
});

const octet = { 'content-type': 'application/octet-stream' };

describe('/v1/params routes', () => {
  it('loads a table, lists it, answers mget and lookup', async () => {
    const load = await app.inject({ method: 'POST', url: '/v1/params/tables', payload: { name: 'emb', source } });
    expect(load.statusCode).toBe(200);
    expect(load.json()).toMatchObject({ name: 'emb', version: 1, keys: 100, dim: 4, tier: 'pmem' });
    const list = await app.inject({ method: 'GET', url: '/v1/params/tables' });
    expect(list.json().tables).toMatchObject([{ name: 'emb', version: 1, keys: 100, dim: 4, tier: 'pmem' }]);

    const mget = await app.inject({ method: 'POST', url: '/v1/params/emb/mget', headers: octet, payload: keysBody([3n, 500n, 99n]) });
    expect(mget.statusCode).toBe(200);
    expect(mget.headers['content-type']).toBe('application/octet-stream');
    expect(mget.rawPayload.length).toBe(4 + 3 * 16);
    expect(decodeAnswer(mget.rawPayload, 3, 4)).toEqual([vectorOf(3n, 4), undefined, vectorOf(99n, 4)]);

    const lookup = await app.inject({ method: 'POST', url: '/v1/params/emb/lookup', payload: { keys: ['3', '500'] } });
    expect(lookup.json()).toEqual({ found: [true, false], vectors: [Array.from(vectorOf(3n, 4)), null] });
  });

  it('applies a delta', async () => {
    const delta = encodeDelta(4, [[500n, [1, 2, 3, 4]]], [3n]);
    const res = await app.inject({ method: 'POST', url: '/v1/params/tables/emb/delta', headers: octet, payload: delta });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ version: 2, keys: 100 });
    const lookup = await app.inject({ method: 'POST', url: '/v1/params/emb/lookup', payload: { keys: ['3', '500'] } });
    expect(lookup.json()).toEqual({ found: [false, true], vectors: [null, [1, 2, 3, 4]] });
  });

  it.each([
    ['missing table (mget)', { method: 'POST', url: '/v1/params/nope/mget', headers: octet, payload: keysBody([1n]) }, 404, 'PARAMS_TABLE_NOT_FOUND'],
    ['missing table (lookup)', { method: 'POST', url: '/v1/params/nope/lookup', payload: { keys: ['1'] } }, 404, 'PARAMS_TABLE_NOT_FOUND'],
    ['missing table (delta)', { method: 'POST', url: '/v1/params/tables/nope/delta', headers: octet, payload: encodeDelta(4, [], []) }, 404, 'PARAMS_TABLE_NOT_FOUND'],
    ['mget with JSON', { method: 'POST', url: '/v1/params/emb/mget', payload: { keys: ['1'] } }, 415, 'PARAMS_UNSUPPORTED_MEDIA_TYPE'],
    ['mget with text', { method: 'POST', url: '/v1/params/emb/mget', headers: { 'content-type': 'text/plain' }, payload: 'abcdefgh' }, 415, 'PARAMS_UNSUPPORTED_MEDIA_TYPE'],
    ['lookup with bytes', { method: 'POST', url: '/v1/params/emb/lookup', headers: octet, payload: keysBody([1n]) }, 415, 'PARAMS_UNSUPPORTED_MEDIA_TYPE'],
    ['mget of 12 bytes', { method: 'POST', url: '/v1/params/emb/mget', headers: octet, payload: Buffer.alloc(12) }, 400, 'PARAMS_BAD_KEYS'],
    ['mget of 100,001 keys', { method: 'POST', url: '/v1/params/emb/mget', headers: octet, payload: Buffer.alloc(8 * 100_001) }, 413, 'PARAMS_BATCH_TOO_LARGE'],
    ['mget far above the limit', { method: 'POST', url: '/v1/params/emb/mget', headers: octet, payload: Buffer.alloc(8 * 300_000) }, 413, 'API_BODY_TOO_LARGE'],
    ['lookup of a bad key', { method: 'POST', url: '/v1/params/emb/lookup', payload: { keys: ['12x'] } }, 400, 'PARAMS_BAD_KEYS'],
    ['lookup without keys', { method: 'POST', url: '/v1/params/emb/lookup', payload: { key: ['1'] } }, 400, 'API_BAD_REQUEST'],
    ['a bad delta', { method: 'POST', url: '/v1/params/tables/emb/delta', headers: octet, payload: Buffer.from('nonsense') }, 400, 'PARAMS_BAD_DELTA'],
    ['load of a bad file', { method: 'POST', url: '/v1/params/tables', payload: { name: 'x', source: '/etc/hostname' } }, 422, 'PARAMS_BAD_TABLE'],
    ['load without a source', { method: 'POST', url: '/v1/params/tables', payload: { name: 'x' } }, 400, 'API_BAD_REQUEST'],
  ] as const)('%s answers %i %s', async (_what, request, status, code) => {
    const res = await app.inject(request as unknown as InjectOptions);
    expect(res.statusCode).toBe(status);
    expect(res.json()).toMatchObject({ statusCode: status, code });
  });

  it('answers an empty mget with an empty body', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/params/emb/mget', headers: octet, payload: Buffer.alloc(0) });
    expect(res.statusCode).toBe(200);
    expect(res.rawPayload.length).toBe(0);
  });
});

describe('mget over a real socket', () => {
  it('reuses answer buffers only once an answer is sent: concurrent batches each get their own keys', async () => {
    const keys = Array.from({ length: 40_000 }, (_, i) => BigInt(i) * 3n);
    await writeRecords(join(work, 'big.bin'), keys, 4);
    await buildTable(join(work, 'big.bin'), join(work, 'big.params'), { dim: 4, shards: 2 });
    for (const threads of [0, 2]) {
      const service = new ParamsService({ dir: join(work, `tier-socket-${threads}`), lookupThreads: threads });
      const server = Fastify();
      await registerParamsRoutes(server, service);
      try {
        await service.load('big', join(work, 'big.params'));
        await server.listen({ host: '127.0.0.1', port: 0 });
        const address = server.server.address();
        const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/v1/params/big/mget`;
        // 20,000-key batches (answers of 400 KB, pooled), 8 in flight, 4 rounds, each batch its own slice.
        for (let round = 0; round < 4; round++) {
          await Promise.all(
            Array.from({ length: 8 }, async (_, c) => {
              const asked = keys.slice((round * 8 + c) * 500, (round * 8 + c) * 500 + 20_000).concat([1n]);
              const res = await fetch(url, { method: 'POST', headers: octet, body: new Uint8Array(keysBody(asked)) });
              const answer = decodeAnswer(Buffer.from(await res.arrayBuffer()), asked.length, 4);
              expect(res.status).toBe(200);
              expect(answer.at(-1)).toBeUndefined();
              for (const i of [0, 9_999, asked.length - 2]) expect(answer[i], `threads ${threads}, key ${asked[i]}`).toEqual(vectorOf(asked[i]!, 4));
            }),
          );
        }
      } finally {
        await server.close();
        await service.close();
      }
    }
  });
});
