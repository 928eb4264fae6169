import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { cleanupDir, tempDir } from '../test/fixtures/strata-process.js';
import { JobManager } from './job-manager.js';
import { LinkRegistry, overlaps } from '../links/index.js';
import { linkCreateSchema } from '../links/index.js';
import { decodeEventKey, objectEvents, s3EventSchema } from '../links/index.js';
import { matcher } from './prefetch.js';

const link = (name: string, path: string) => linkCreateSchema.parse({ name, path, store: 's3://bucket/p' });

describe('LinkRegistry', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir('links');
  });
  afterEach(async () => {
    await cleanupDir(dir);
  });

  it('persists links and refuses duplicates and overlaps', async () => {
    const registry = await LinkRegistry.open(dir);
    await registry.add(link('a', '/datasets/a'));
    await expect(registry.add(link('a', '/x'))).rejects.toMatchObject({ code: 'LINK_EXISTS' });
    await expect(registry.add(link('b', '/datasets/a/inner'))).rejects.toMatchObject({ code: 'LINK_OVERLAP' });
    await expect(registry.add(link('c', '/datasets'))).rejects.toMatchObject({ code: 'LINK_OVERLAP' });
    await registry.add(link('d', '/datasets/ab'));
    await registry.update('a', { import: { mode: 'eager', onEvent: 'preload' } });
    const reopened = await LinkRegistry.open(dir);
    expect(reopened.list().map((l) => [l.name, l.path, l.import.mode])).toEqual([
      ['a', '/datasets/a', 'eager'],
      ['d', '/datasets/ab', 'lazy'],
    ]);
    await reopened.remove('a');
    expect((await LinkRegistry.open(dir)).list().map((l) => l.name)).toEqual(['d']);
    expect(() => reopened.get('a')).toThrow(expect.objectContaining({ code: 'LINK_NOT_FOUND' }));
  });

  it('serialises concurrent adds so two overlapping links cannot both win', async () => {
    const registry = await LinkRegistry.open(dir);
    const results = await Promise.allSettled([registry.add(link('x', '/same')), registry.add(link('y', '/same'))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it('knows what overlaps', () => {
    expect(overlaps('/a', '/a/b')).toBe(true);
    expect(overlaps('/a', '/ab')).toBe(false);
    expect(overlaps('/', '/x')).toBe(true);
  });
});

describe('JobManager', () => {
  it('runs jobs with progress, cancels them, and reports failures', async () => {
    const jobs = new JobManager(silentLogger(), 1);
    const done = jobs.submit('t', async (p) => {
      p.addTotal(2, 20);
      p.addDone(2, 20);
    });
    const blocker = jobs.submit('t', (p) => new Promise<void>((resolve) => p.signal.addEventListener('abort', () => resolve())));
    const queued = jobs.submit('t', async () => {});
    expect(jobs.get(queued.id).state).toBe('queued');
    expect(jobs.cancel(queued.id).state).toBe('cancelled');
    expect(await jobs.wait(done.id)).toMatchObject({ state: 'done', filesDone: 2, filesTotal: 2, bytesDone: 20 });
    jobs.cancel(blocker.id);
    expect((await jobs.wait(blocker.id)).state).toBe('cancelled');
    const failing = jobs.submit('t', async () => {
      throw new Error('store on fire');
    });
    expect(await jobs.wait(failing.id)).toMatchObject({ state: 'failed', error: 'store on fire' });
    expect(() => jobs.get('nope')).toThrow(expect.objectContaining({ code: 'JOB_NOT_FOUND' }));
  });

  it('waitUpTo answers when the job ends, or after the wait with the job still running', async () => {
    const jobs = new JobManager(silentLogger());
    let finish!: () => void;
    const job = jobs.submit('t', () => new Promise<void>((resolve) => (finish = resolve)));
    const started = Date.now();
    expect((await jobs.waitUpTo(job.id, 50)).state).toBe('running');
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    const waiting = jobs.waitUpTo(job.id, 60_000);
    finish();
    expect((await waiting).state).toBe('done');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('S3 events and globs', () => {
  it('decodes keys as S3 encodes them and keeps only created/removed events', () => {
    expect(decodeEventKey('dir/a+b%2Bc%C3%BC.bin')).toBe('dir/a b+cü.bin');
    const body = s3EventSchema.parse({
      Records: [
        { eventName: 'ObjectCreated:Put', s3: { bucket: { name: 'b' }, object: { key: 'k+1', eTag: '"abc"' } } },
        { eventName: 'ObjectRemoved:Delete', s3: { bucket: { name: 'b' }, object: { key: 'k2' } } },
        { eventName: 's3:TestEvent', s3: { bucket: { name: 'b' }, object: { key: 'k3' } } },
      ],
    });
    expect(objectEvents(body)).toEqual([
      { kind: 'created', bucket: 'b', key: 'k 1', etag: 'abc' },
      { kind: 'removed', bucket: 'b', key: 'k2' },
    ]);
  });

  it('matches include and exclude globs over keys', () => {
    const m = matcher(['train/**'], ['**/*.tmp']);
    expect(m('train/a/b.bin')).toBe(true);
    expect(m('train/a/b.tmp')).toBe(false);
    expect(m('val/a.bin')).toBe(false);
    expect(matcher()('anything')).toBe(true);
  });
});
