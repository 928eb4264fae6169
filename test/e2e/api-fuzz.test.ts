import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIGNATURE_HEADER, signRequest, TIME_HEADER } from '../../p2p/index.js';
import { freePort } from '../fixtures/rgw.js';
import { testS3 } from '../fixtures/s3.js';
import { sh } from '../fixtures/shell.js';
import { cleanupDir, startMount, tempDir, type StrataProcess } from '../fixtures/strata-process.js';
import { prng } from '../fixtures/prng.js';

const SECRET = 'fuzz-peer-secret-5f0c2e91';
/** Requests per route and method: 28 operations × 60 ≈ 1,700 requests, a few seconds on loopback. */
const CASES_PER_OPERATION = 60;
/** Requests in flight at once: enough to overlap handlers, few enough not to measure the machine. */
const IN_FLIGHT = 8;


const JUNK_STRINGS = ['', '%', '%zz', '..', '/..', '/a/../b', '\u0000', 'a\u0000b', 'é'.repeat(3000), 'x'.repeat(5000), '/' + 'n'.repeat(256), '/', '//', 'root', 'emb', 's3://', 's3://bucket', 'file:///etc', 'http://user:pw@127.0.0.1:1', `http://127.0.0.1:1/${'p'.repeat(5000)}`, 'ftp://x', '00000000-0000-0000-0000-000000000000', '-1', '1e309', 'NaN', '\ud800', '<script>', '{"a":1}'];
const JUNK_VALUES: unknown[] = [null, true, 0, -1, 1.5, 2 ** 64, -0, [], [null], {}, { a: null }, 'x', ...JUNK_STRINGS, [JUNK_STRINGS[8]], Array.from({ length: 2000 }, () => '/a')];
const PATH_PARAMS = ['%', '%zz', '%00', 'é'.repeat(300), 'x'.repeat(5000), '..', 'emb', 'root', 'nope', '00000000-0000-0000-0000-000000000000', '0', ' ', '%2F', 'a%2F..%2Fb'];
const QUERIES = ['', '?waitMs=-1', '?waitMs=1e99', '?waitMs=5', '?x=%', '?a=1&a=2', '?waitMs=' + '9'.repeat(400), '?store=x&key=%00&etag=%22&size=1&start=0&length=1'];
const CONTENT_TYPES = ['application/json', 'application/octet-stream', 'text/plain', undefined, 'application/json; charset=utf-16', 'multipart/form-data; boundary=x'];

type Rng = () => number;
const pick = <T>(rng: Rng, from: readonly T[]): T => from[Math.floor(rng() * from.length)]!;

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  enum?: unknown[];
}

/** A value shaped like `schema` where each part is, by chance, right-typed or junk. */
function shaped(rng: Rng, schema: JsonSchema | undefined, depth = 0): unknown {
  if (!schema || depth > 4 || rng() < 0.3) return pick(rng, JUNK_VALUES);
  if (schema.enum && rng() < 0.6) return pick(rng, schema.enum);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (schema.properties || type === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, sub] of Object.entries(schema.properties ?? {})) if (rng() < 0.8) out[key] = shaped(rng, sub, depth + 1);
    if (rng() < 0.2) out[pick(rng, ['extra', '__proto__', 'constructor'])] = pick(rng, JUNK_VALUES);
    return out;
  }
  if (type === 'array') return Array.from({ length: Math.floor(rng() * 4) }, () => shaped(rng, schema.items, depth + 1));
  if (type === 'string') return pick(rng, JUNK_STRINGS);
  if (type === 'boolean') return rng() < 0.5;
  if (type === 'integer' || type === 'number') return pick(rng, [0, 1, -1, 2 ** 53, 1.5, 1e308]);
  return pick(rng, JUNK_VALUES);
}

/** A request body: schema-shaped JSON mostly, else raw junk (bad JSON, deep nesting, binary, a big string). */
function bodyFor(rng: Rng, schema: JsonSchema | undefined): string | Buffer | undefined {
  const roll = rng();
  if (roll < 0.55) return JSON.stringify(shaped(rng, schema));
  if (roll < 0.65) return pick(rng, ['null', '[]', '"x"', '1e309', '{', '{"paths":', '\u0000', '']);
  if (roll < 0.7) return '['.repeat(5000) + ']'.repeat(5000);
  if (roll < 0.8) return Buffer.from(Array.from({ length: Math.floor(rng() * 64) }, () => Math.floor(rng() * 256)));
  if (roll < 0.85) return JSON.stringify({ paths: ['/' + 'z'.repeat(1_000_000)] });
  return undefined;
}

describe('the admin API under fuzzed input', () => {
  let work: string;
  let mnt: string;
  let daemon: StrataProcess;
  let api: string;

  beforeAll(async () => {
    work = await tempDir('fuzz');
    mnt = join(work, 'mnt');
    await sh(`mkdir -p ${mnt} ${work}/store/data && head -c 100000 /dev/urandom > ${work}/store/data/file.bin`);
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    daemon = await startMount(`file://${work}/store`, mnt, ['--api', `127.0.0.1:${port}`, '--state-dir', join(work, 'state'), '--nvme', join(work, 'nvme'), '--peers', api, '--log-level', 'fatal'], {
      STRATA_PEER_SECRET: SECRET,
      // Links the fuzzer adds with s3:// stores talk to the test gateway, never to the internet.
      AWS_ENDPOINT_URL: testS3().endpoint,
    });
    // A table, so the params routes reach their handlers' inner checks.
    await sh(`python3 -c "import struct,sys; sys.stdout.buffer.write(b''.join(struct.pack('<Q4f', k, k, 1, 2, 3) for k in range(100)))" > ${work}/records.bin`);
    await sh(`node bin/strata-dev.js params build --dim 4 ${work}/records.bin ${work}/emb.params`, { cwd: join(import.meta.dirname, '../..') });
    const loaded = await fetch(`${api}/v1/params/tables`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'emb', source: `${work}/emb.params` }) });
    expect(loaded.status).toBe(200);
  });

  afterAll(async () => {
    const code = daemon ? await daemon.stop() : 0;
    if (work) await cleanupDir(work);
    expect(code).toBe(0);
  });

  it('answers every operation of the OpenAPI document with no 5xx for bad input, and stays up', async () => {
    const doc = (await (await fetch(`${api}/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: JsonSchema }> } }>> };
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path, method: method.toUpperCase(), schema: op.requestBody?.content['application/json']?.schema })));
    expect(operations.length).toBeGreaterThanOrEqual(28);
    const seed = Number(process.env.STRATA_FUZZ_SEED ?? 20261206);
    const rng = prng(seed);
    const requests = operations.flatMap((op) =>
      Array.from({ length: CASES_PER_OPERATION }, () => {
        const path = op.path.replace(/\{[^}]+\}/g, () => encodeURI(pick(rng, PATH_PARAMS)).replaceAll('%25', rng() < 0.5 ? '%' : '%25'));
        // fetch sends no body with a GET; a DELETE carries one now and then.
        const withBody = op.method === 'GET' ? false : op.method !== 'DELETE' || rng() < 0.5;
        const body = withBody ? bodyFor(rng, op.schema) : undefined;
        const contentType = body === undefined ? undefined : pick(rng, CONTENT_TYPES);
        const signed = op.path.startsWith('/v1/p2p/') && rng() < 0.7;
        return { method: op.method, url: `${path}${pick(rng, QUERIES)}`, body, contentType, signed };
      }),
    );
    const failures: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < requests.length) {
        const r = requests[next++]!;
        const headers: Record<string, string> = {};
        if (r.contentType) headers['content-type'] = r.contentType;
        if (r.signed) {
          const time = Date.now();
          headers[TIME_HEADER] = String(time);
          headers[SIGNATURE_HEADER] = signRequest(SECRET, { method: r.method, path: r.url, body: Buffer.from(r.body ?? ''), time });
        }
        try {
          const response = await fetch(`${api}${r.url}`, { method: r.method, headers, ...(r.body !== undefined ? { body: typeof r.body === 'string' ? r.body : new Uint8Array(r.body) } : {}), signal: AbortSignal.timeout(30_000) });
          const text = await response.text();
          // 503 from /healthz would mean the mount is gone; a 503 elsewhere must still carry a catalogue code.
          if (response.status >= 500) failures.push(`${response.status} ${r.method} ${r.url.slice(0, 80)} ${String(r.body ?? '').slice(0, 80)} -> ${text.slice(0, 200)}`);
          else if (response.status >= 400 && !/"code":"[A-Z0-9_]+"/.test(text)) failures.push(`no code: ${response.status} ${r.method} ${r.url.slice(0, 80)} -> ${text.slice(0, 200)}`);
        } catch (err) {
          failures.push(`no answer: ${r.method} ${r.url.slice(0, 80)}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    expect(failures, `seed ${seed}, ${requests.length} requests`).toEqual([]);
    expect(daemon.child.exitCode).toBeNull();
    expect((await fetch(`${api}/healthz`)).status).toBe(200);
    expect((await sh(`cat ${mnt}/data/file.bin | wc -c`)).trim()).toBe('100000');
  }, 300_000);
});
