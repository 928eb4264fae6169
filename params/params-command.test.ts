import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerParamsRoutes } from '../api/index.js';
import { runParams } from '../cli/index.js';
import { StrataError } from '../errors/index.js';
import { ParamsService } from './params-service.js';
import { writeRecords } from './testing/records.js';

let work: string;
let app: FastifyInstance;
let api: string;

beforeAll(async () => {
  work = await mkdtemp('/dev/shm/params-cli-');
  app = Fastify();
  app.setErrorHandler((err: unknown, _request, reply) => {
    const e = err as StrataError;
    return reply.status(e.statusCode ?? 500).send({ statusCode: e.statusCode, code: e.code, message: e.message });
  });
  await registerParamsRoutes(app, new ParamsService({ dir: join(work, 'tier') }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  api = `127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
});
afterAll(async () => {
  await app.close();
  await rm(work, { recursive: true, force: true });
});

/** Runs a params subcommand, answering its exit code and what it printed. */
async function cli(sub: string, values: Record<string, string | boolean>, positionals: string[]) {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
  try {
    return { code: await runParams(sub, values, positionals), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('strata params', () => {
  it('builds with progress lines, loads through the API and prints vectors with mget', async () => {
    await writeRecords(join(work, 'in.bin'), [1n, 2n, 3n, 2n], 2);
    const built = await cli('build', { dim: '2', shards: '2' }, [join(work, 'in.bin'), join(work, 'emb.params')]);
    expect(built.code).toBe(0);
    expect(built.stdout).toMatch(/^built .*emb\.params: 3 keys of dim 2 in 2 shard\(s\), .*1 duplicate records replaced/);
    expect(built.stderr).toMatch(/\[#+\] 100% /); // not a terminal: plain progress lines
    expect((await stat(join(work, 'emb.params'))).size).toBeGreaterThan(0);

    const loaded = await cli('load', { api }, ['emb', join(work, 'emb.params')]);
    expect(loaded).toMatchObject({ code: 0, stdout: 'loaded emb version 1: 3 keys of dim 2 into pmem\n' });

    const found = await cli('mget', { api }, ['emb', '2', '9']);
    expect(found.stdout).toBe('2\t2 2.0625\n9\t(missing)\n');
    expect(found.code).toBe(1); // a missing key is a failed lookup for scripts
    const json = await cli('mget', { api, json: true }, ['emb', '1']);
    expect(JSON.parse(json.stdout)).toEqual([{ key: '1', found: true, vector: [1, 1.0625] }]);
  });

  it('prints float32 values with float32 digits, and lists tables with ls', async () => {
    const input = join(work, 'tenths.bin');
    const record = Buffer.alloc(8 + 3 * 4);
    record.writeBigUInt64LE(7n, 0);
    [0.1, -2.675, 3e-8].forEach((v, d) => record.writeFloatLE(v, 8 + d * 4));
    await writeFile(input, record);
    await cli('build', { dim: '3' }, [input, join(work, 'tenths.params')]);
    await cli('load', { api }, ['tenths', join(work, 'tenths.params')]);
    expect((await cli('mget', { api }, ['tenths', '7'])).stdout).toBe('7\t0.1 -2.675 3e-8\n');
    expect(JSON.parse((await cli('mget', { api, json: true }, ['tenths', '7'])).stdout)).toEqual([{ key: '7', found: true, vector: [0.1, -2.675, 3e-8] }]);

    const listed = await cli('ls', { api }, []);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^NAME\s+VERSION\s+KEYS\s+DIM\s+SHARDS\s+TIER\s+SIZE\s+SOURCE\n/);
    expect(listed.stdout).toMatch(/\ntenths\s+1\s+1\s+3\s+1\s+pmem\s+[\d.]+ KiB\s+\S+tenths\.params\n/);
    const json = JSON.parse((await cli('ls', { api, json: true }, [])).stdout) as { tables: Array<{ name: string; keys: number }>; cluster?: unknown };
    expect(json.tables.map((t) => t.name)).toContain('tenths');
    expect(json.cluster).toBeUndefined();
    await expect(cli('ls', { api }, ['extra'])).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('refuses bad command lines and reports API errors', async () => {
    await expect(cli('build', {}, [join(work, 'in.bin'), join(work, 'x.params')])).rejects.toMatchObject({ code: 'USAGE', message: expect.stringContaining('--dim') });
    await expect(cli('build', { dim: '0' }, [join(work, 'in.bin'), join(work, 'x.params')])).rejects.toMatchObject({ code: 'USAGE' });
    await expect(cli('build', { dim: '3' }, [join(work, 'in.bin'), join(work, 'x.params')])).rejects.toMatchObject({ code: 'PARAMS_BAD_INPUT' });
    await expect(cli('mget', { api }, ['nope', '1'])).rejects.toMatchObject({ message: expect.stringContaining('404') });
    await expect(cli('load', { api }, ['x', '/etc/hostname'])).rejects.toMatchObject({ message: expect.stringContaining('422') });
    await expect(cli('frob', {}, [])).rejects.toMatchObject({ code: 'USAGE' });
  });
});
