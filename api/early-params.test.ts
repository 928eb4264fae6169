import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParamsService, buildTable } from '../params/index.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from '../params/testing/records.js';
import { silentLogger } from '../telemetry/index.js';
import { listenEarly, type EarlyApi } from './early-params.js';

let work: string;
let params: ParamsService;

beforeAll(async () => {
  work = await mkdtemp('/dev/shm/early-params-');
  await writeRecords(join(work, 'in.bin'), Array.from({ length: 100 }, (_, i) => BigInt(i)), 4);
  await buildTable(join(work, 'in.bin'), join(work, 'emb.params'), { dim: 4, shards: 2 });
  params = new ParamsService({ dir: join(work, 'tier') });
  await params.load('emb', join(work, 'emb.params'));
});
afterAll(async () => {
  await params.close();
  await rm(work, { recursive: true, force: true });
});

const octet = { 'content-type': 'application/octet-stream' };

async function withEarly(token: string | undefined, body: (early: EarlyApi, url: string) => Promise<void>): Promise<void> {
  const early = await listenEarly({ host: '127.0.0.1', port: 0, params, logger: silentLogger(), token });
  try {
    await body(early, `http://127.0.0.1:${early.port}`);
  } finally {
    await early.close();
  }
}

describe('the admin API socket during start-up (listenEarly)', () => {
  it('answers mget and the table list as the full API does, every other route 503 API_STARTING', async () => {
    await withEarly(undefined, async (_early, url) => {
      const mget = await fetch(`${url}/v1/params/emb/mget`, { method: 'POST', headers: octet, body: new Uint8Array(keysBody([3n, 500n, 99n])) });
      expect(mget.status).toBe(200);
      expect(mget.headers.get('content-type')).toBe('application/octet-stream');
      const answer = Buffer.from(await mget.arrayBuffer());
      expect(decodeAnswer(answer, 3, 4)).toEqual([vectorOf(3n, 4), undefined, vectorOf(99n, 4)]);

      const list = await fetch(`${url}/v1/params/tables`);
      expect((await list.json()).tables).toMatchObject([{ name: 'emb', keys: 100, dim: 4 }]);

      const missing = await fetch(`${url}/v1/params/nope/mget`, { method: 'POST', headers: octet, body: new Uint8Array(keysBody([1n])) });
      expect(missing.status).toBe(404);
      expect((await missing.json()).code).toBe('PARAMS_TABLE_NOT_FOUND');

      const json = await fetch(`${url}/v1/params/emb/mget`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(json.status).toBe(415);
      expect((await json.json()).code).toBe('PARAMS_UNSUPPORTED_MEDIA_TYPE');

      const tooLong = await fetch(`${url}/v1/params/${'x'.repeat(129)}/mget`, { method: 'POST', headers: octet, body: new Uint8Array(keysBody([1n])) });
      expect(tooLong.status).toBe(400);
      expect((await tooLong.json()).code).toBe('API_BAD_REQUEST');

      const links = await fetch(`${url}/v1/links`);
      expect(links.status).toBe(503);
      expect(links.headers.get('retry-after')).toBe('1');
      expect((await links.json()).code).toBe('API_STARTING');

      const health = await fetch(`${url}/healthz`);
      expect(health.status).toBe(503);
      expect(await health.json()).toEqual({ ok: false });
    });
  });

  it('requires the token like the full API, except on /healthz', async () => {
    await withEarly('s3cret-token', async (_early, url) => {
      const anonymous = await fetch(`${url}/v1/params/emb/mget`, { method: 'POST', headers: octet, body: new Uint8Array(keysBody([3n])) });
      expect(anonymous.status).toBe(401);
      expect((await anonymous.json()).code).toBe('API_UNAUTHORIZED');
      const signed = await fetch(`${url}/v1/params/emb/mget`, { method: 'POST', headers: { ...octet, authorization: 'Bearer s3cret-token' }, body: new Uint8Array(keysBody([3n])) });
      expect(signed.status).toBe(200);
      expect((await fetch(`${url}/healthz`)).status).toBe(503);
    });
  });

  it('hands its socket to fastify once that is ready, with no connection refused in between', async () => {
    await withEarly(undefined, async (early, url) => {
      const app = Fastify({
        serverFactory: (handler) => {
          early.handOver(handler);
          return early.server;
        },
      });
      app.get('/v1/links', async () => ({ links: [] }));
      // Handed over but not switched: the early answers stand until fastify is ready.
      expect((await fetch(`${url}/v1/links`)).status).toBe(503);
      await app.ready();
      early.switchOver();
      const links = await fetch(`${url}/v1/links`);
      expect(links.status).toBe(200);
      expect(await links.json()).toEqual({ links: [] });
      await app.close();
    });
  });
});
