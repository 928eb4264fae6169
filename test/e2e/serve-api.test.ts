import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, testS3, testS3Client } from '../fixtures/s3.js';
import { sh, shResult } from '../fixtures/shell.js';
import { apiUrlOf, cleanupDir, runStrata, startServe, tempDir, type StrataProcess } from '../fixtures/strata-process.js';

async function api(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, any>) : undefined };
}

describe('strata serve: links, prefetch, events and the admin API over a real mount', () => {
  let client: S3Client;
  let bucket: string;
  let work: string;
  let mnt: string;
  let daemon: StrataProcess;
  let base: string;
  const args = () => ['--state-dir', join(work, 'state'), '--metadata-ttl', '600', '--log-level', 'warn'];

  beforeAll(async () => {
    testS3();
    client = testS3Client();
    bucket = await createTestBucket('serve');
    for (let i = 0; i < 12; i++) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `imagenet/train/img_${i}.bin`, Body: Buffer.alloc(50_000 + i, i) }));
    }
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'imagenet/labels.txt', Body: 'cat\ndog\n' }));
    work = await tempDir('serve');
    mnt = join(work, 'mnt');
    await sh(`mkdir -p ${mnt}`);
    daemon = await startServe(mnt, args());
    base = apiUrlOf(daemon);
  });

  afterAll(async () => {
    const code = daemon ? await daemon.stop('SIGTERM') : 0;
    client?.destroy();
    if (work) await cleanupDir(work);
    expect(code).toBe(0);
  });

  it('starts with an empty mount and answers health and an OpenAPI description', async () => {
    expect(await sh(`ls -A ${mnt}`)).toBe('');
    expect(await api(base, 'GET', '/healthz')).toEqual({ status: 200, body: { ok: true } });
    const openapi = await api(base, 'GET', '/v1/openapi.json');
    expect(openapi.body!.openapi).toBe('3.1.0');
    expect(Object.keys(openapi.body!.paths)).toContain('/v1/links/{name}');
  });

  it('validates link bodies with 400 naming the field', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ name: 'Bad Name', path: '/x', store: `s3://${bucket}` }, /^name:/],
      [{ name: 'ok', path: 'relative', store: `s3://${bucket}` }, /^path:/],
      [{ name: 'ok', path: '/a/../b', store: `s3://${bucket}` }, /^path:/],
      [{ name: 'ok', path: '/x', store: 'ftp://nope' }, /^store:/],
      [{ name: 'ok', path: '/x', store: `s3://${bucket}`, import: { mode: 'sometimes' } }, /^import\.mode:/],
      [{ name: 'ok', path: '/x', store: `s3://${bucket}`, surprise: 1 }, /surprise/],
    ];
    for (const [body, message] of cases) {
      const answer = await api(base, 'POST', '/v1/links', body);
      expect(answer.status).toBe(400);
      expect(answer.body).toMatchObject({ statusCode: 400, code: 'API_BAD_REQUEST' });
      expect(answer.body!.message).toMatch(message);
    }
    const broken = await api(base, 'POST', '/v1/links', '{"name": ');
    expect(broken.status).toBe(400);
    expect(broken.body!.code).toBe('API_BAD_REQUEST');
  });

  it('refuses a link to a missing bucket', async () => {
    const answer = await api(base, 'POST', '/v1/links', { name: 'ghost', path: '/ghost', store: 's3://no-such-bucket-strata', endpoint: testS3().endpoint });
    expect(answer.status).toBe(404);
    expect(answer.body!.code).toBe('STORE_BUCKET_NOT_FOUND');
  });

  it('links a bucket prefix with the CLI and shows it in the mount', async () => {
    const added = await runStrata(['links', 'add', 'imagenet', '/datasets/imagenet', `s3://${bucket}/imagenet`, '--endpoint', testS3().endpoint, '--api', base]);
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    expect(await sh(`ls ${mnt}`)).toBe('datasets\n');
    expect(await sh(`ls ${mnt}/datasets/imagenet`)).toBe('labels.txt\ntrain\n');
    expect(await sh(`cat ${mnt}/datasets/imagenet/labels.txt`)).toBe('cat\ndog\n');
    const listed = await runStrata(['links', 'ls', '--api', base]);
    expect(listed.stdout).toMatch(/imagenet\s+\/datasets\/imagenet\s+s3:\/\//);
  });

  it('changes a link with strata links set, keeping what it does not name, and refuses bad changes', async () => {
    const include = await runStrata(['links', 'set', 'imagenet', '--include', 'train/**', '--on-event', 'preload', '--api', base]);
    expect(include.stderr).toBe('');
    expect(include.stdout).toBe('updated link "imagenet": import lazy, export async\n');
    const mode = await runStrata(['links', 'set', 'imagenet', '--export', 'sync', '--json', '--api', base]);
    expect(JSON.parse(mode.stdout)).toMatchObject({ name: 'imagenet', import: { mode: 'lazy', include: ['train/**'], onEvent: 'preload' }, export: { mode: 'sync' } });
    const bad = await runStrata(['links', 'set', 'imagenet', '--import', 'sometimes', '--api', base]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^strata: .*import/);
    const nothing = await runStrata(['links', 'set', 'imagenet', '--api', base]);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/needs an option to change/);
    const missing = await runStrata(['links', 'set', 'nope', '--export', 'none', '--api', base]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope/);
    // Back as the later tests expect it.
    const back = await api(base, 'PATCH', '/v1/links/imagenet', { import: { mode: 'lazy' }, export: { mode: 'async' } });
    expect(back.status).toBe(200);
  });

  it('refuses overlapping links and duplicate names with 409', async () => {
    const inside = await api(base, 'POST', '/v1/links', { name: 'inner', path: '/datasets/imagenet/train', store: `s3://${bucket}`, endpoint: testS3().endpoint });
    expect(inside).toMatchObject({ status: 409, body: { code: 'LINK_OVERLAP' } });
    const same = await api(base, 'POST', '/v1/links', { name: 'imagenet', path: '/other', store: `s3://${bucket}`, endpoint: testS3().endpoint });
    expect(same).toMatchObject({ status: 409, body: { code: 'LINK_EXISTS' } });
  });

  it('warms a folder with strata warmup and then reads it without the store', async () => {
    const warm = await runStrata(['warmup', `${mnt}/datasets/imagenet/train`, '--api', base]);
    expect(warm.code).toBe(0);
    expect(warm.stdout).toMatch(/warmup done: 12\/12 files/);
    const before = await storeBytes(base);
    await sh(`cat ${mnt}/datasets/imagenet/train/* > /dev/null`);
    expect(await storeBytes(base)).toBe(before);
    const jobs = await api(base, 'GET', '/v1/jobs');
    const done = jobs.body!.jobs.find((j: { state: string; filesDone: number }) => j.state === 'done' && j.filesDone === 12);
    expect(done).toBeDefined();
    // A finished job answers a long poll at once; a bad wait is refused naming the field.
    const started = Date.now();
    expect(await api(base, 'GET', `/v1/jobs/${done.id}?waitMs=10000`)).toMatchObject({ status: 200, body: { state: 'done' } });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await api(base, 'GET', `/v1/jobs/${done.id}?waitMs=soon`)).toMatchObject({ status: 400, body: { code: 'API_BAD_REQUEST' } });
  });

  it('applies S3 event notifications at once, despite a long metadata TTL', async () => {
    await sh(`ls ${mnt}/datasets/imagenet`); // cached for 600 s
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'imagenet/new model+v2.bin', Body: 'fresh' }));
    expect(await sh(`ls ${mnt}/datasets/imagenet`)).not.toContain('new model+v2.bin');
    const event = { Records: [{ eventName: 'ObjectCreated:Put', s3: { bucket: { name: bucket }, object: { key: 'imagenet/new+model%2Bv2.bin', size: 5 } } }] };
    const answer = await api(base, 'POST', '/v1/events', event);
    expect(answer).toMatchObject({ status: 202, body: { records: 1, matched: 1 } });
    expect(await sh(`cat '${mnt}/datasets/imagenet/new model+v2.bin'`)).toBe('fresh');
    expect((await api(base, 'POST', '/v1/events', { Records: 'nope' })).status).toBe(400);
  });

  it('syncs a link: changed objects are dropped from the cache and seen at once', async () => {
    const path = `${mnt}/datasets/imagenet/train/img_3.bin`;
    expect(await sh(`stat -c %s ${path}`)).toBe('50003\n');
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'imagenet/train/img_3.bin', Body: Buffer.alloc(10, 9) }));
    const sync = await api(base, 'POST', '/v1/links/imagenet/sync');
    expect(sync.status).toBe(202);
    let job = sync.body!;
    while (job.state === 'queued' || job.state === 'running') job = (await api(base, 'GET', `/v1/jobs/${job.id}`)).body!;
    expect(job).toMatchObject({ kind: 'sync', state: 'done', bytesDone: 50003 });
    expect(job.filesDone).toBeGreaterThanOrEqual(14);
    await new Promise((r) => setTimeout(r, 1100)); // the kernel keeps attributes for a second
    expect(await sh(`stat -c %s ${path}`)).toBe('10\n');
    expect((await sh(`od -An -tx1 ${path}`)).trim()).toBe('09 09 09 09 09 09 09 09 09 09');
  });

  it('imports eagerly what a link includes', async () => {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'eager/keep/a.bin', Body: Buffer.alloc(70_000, 1) }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'eager/skip/b.bin', Body: Buffer.alloc(70_000, 2) }));
    const created = await api(base, 'POST', '/v1/links', { name: 'eager', path: '/eager', store: `s3://${bucket}/eager`, endpoint: testS3().endpoint, import: { mode: 'eager', include: ['keep/**'] } });
    expect(created.status).toBe(201);
    let jobs: Array<{ kind: string; state: string; filesDone: number }> = [];
    for (let i = 0; i < 100 && !jobs.some((j) => j.kind === 'eager-import' && j.state === 'done'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      jobs = (await api(base, 'GET', '/v1/jobs')).body!.jobs;
    }
    expect(jobs.find((j) => j.kind === 'eager-import')).toMatchObject({ state: 'done', filesDone: 1 });
    const before = await storeBytes(base);
    expect(await sh(`cat ${mnt}/eager/keep/a.bin | wc -c`)).toBe('70000\n');
    expect(await storeBytes(base)).toBe(before);
    await sh(`cat ${mnt}/eager/skip/b.bin > /dev/null`);
    expect(await storeBytes(base)).toBe(before + 70_000);
    expect((await api(base, 'DELETE', '/v1/links/eager')).status).toBe(204);
  });

  it('answers unknown routes with 404, oversized bodies with 413, bad job ids with 400/404', async () => {
    expect(await api(base, 'GET', '/v1/nothing')).toMatchObject({ status: 404, body: { code: 'API_NOT_FOUND' } });
    // curl, because fetch reports EPIPE when the server answers before the body is sent. curl
    // may report the same (exit 55) once it has read the answer, when the server closes while
    // the rest of the body is still on its way: the answer is what is checked.
    const bigFile = join(work, 'big.json');
    await sh(`head -c ${9 * 1024 * 1024} /dev/zero | tr '\\0' x > ${bigFile}`);
    // The server's close can also reset the connection before curl reads the answer (a reset
    // discards what the client has not read yet): an empty answer is asked again, at most twice.
    let big = '';
    for (let attempt = 0; attempt < 3 && big === ''; attempt++) {
      big = await sh(`curl -s -H 'content-type: application/json' --data-binary @${bigFile} ${base}/v1/prefetch || true`);
    }
    expect(JSON.parse(big)).toMatchObject({ statusCode: 413, code: 'API_BODY_TOO_LARGE' });
    expect((await api(base, 'GET', '/v1/jobs/not-a-uuid')).status).toBe(400);
    expect(await api(base, 'GET', '/v1/jobs/00000000-0000-4000-8000-000000000000')).toMatchObject({ status: 404, body: { code: 'JOB_NOT_FOUND' } });
    expect((await api(base, 'POST', '/v1/prefetch', { paths: ['/datasets/none'] })).status).toBe(202);
    expect((await api(base, 'POST', '/v1/prefetch', { paths: [] })).status).toBe(400);
  });

  it('keeps links across a restart and removes them', async () => {
    expect(await daemon.stop('SIGTERM')).toBe(0);
    daemon = await startServe(mnt, args());
    base = apiUrlOf(daemon);
    expect(await sh(`ls ${mnt}/datasets/imagenet/train | wc -l`)).toBe('12\n');
    const removed = await runStrata(['links', 'rm', 'imagenet', '--api', base]);
    expect(removed.code).toBe(0);
    await new Promise((r) => setTimeout(r, 1100)); // the kernel keeps names for a second
    expect((await shResult(`ls ${mnt}/datasets`)).code).not.toBe(0);
    expect(await api(base, 'DELETE', '/v1/links/imagenet')).toMatchObject({ status: 404, body: { code: 'LINK_NOT_FOUND' } });
  });

  it('prints one clear line when the CLI cannot reach a daemon', async () => {
    const result = await runStrata(['status', '--api', '127.0.0.1:1']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^strata: no Strata daemon answers at http:\/\/127\.0\.0\.1:1/);
    expect(result.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });
});

describe('admin API auth', () => {
  const TOKEN = 't0ken-t0ken-t0ken';
  it('requires the bearer token on every route but /healthz, and refuses a public bind without one', async () => {
    const work = await tempDir('auth');
    const mnt = join(work, 'mnt');
    await sh(`mkdir -p ${mnt}`);
    const daemon = await startServe(mnt, ['--state-dir', join(work, 'state'), '--log-level', 'warn'], { STRATA_TOKEN: TOKEN });
    try {
      const base = apiUrlOf(daemon);
      expect((await api(base, 'GET', '/healthz')).status).toBe(200);
      expect(await api(base, 'GET', '/v1/links')).toMatchObject({ status: 401, body: { code: 'API_UNAUTHORIZED' } });
      expect((await api(base, 'GET', '/v1/links', undefined, { authorization: 'Bearer wrong' })).status).toBe(401);
      expect((await api(base, 'GET', '/v1/links', undefined, { authorization: `Bearer ${TOKEN}` })).status).toBe(200);
      const cli = await runStrata(['status', '--api', base], { STRATA_TOKEN: TOKEN });
      expect(cli.code).toBe(0);
      expect(cli.stdout).toMatch(/^mount \S+: (native FUSE threads|fuse-native)/);
      expect(cli.stdout).toMatch(/^tier\s+capacity/m);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    const open = await runStrata(['serve', '--mount', mnt, '--api', '0.0.0.0:0', '--state-dir', join(work, 'state')], { STRATA_TOKEN: '' });
    expect(open.code).toBe(2);
    expect(open.stderr).toMatch(/--api: binding to 0\.0\.0\.0 needs STRATA_TOKEN/);
    const short = await runStrata(['serve', '--mount', mnt, '--state-dir', join(work, 'state')], { STRATA_TOKEN: 'short' });
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/STRATA_TOKEN: must be at least 16 characters/);
    await cleanupDir(work);
  });
});

async function storeBytes(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('strata_cache_store_bytes_total '));
  return Number(line?.split(' ')[1] ?? 'NaN');
}
