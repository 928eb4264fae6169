import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Namespace } from '../namespace/index.js';
import { MountRoutes } from '../namespace/index.js';
import { openStore, type ObjectStore } from '../store/index.js';
import { silentLogger } from '../telemetry/index.js';
import { DirectReader } from '../test/fixtures/direct-reader.js';
import { cleanupDir, tempDir } from '../test/fixtures/strata-process.js';
import { JobManager } from './job-manager.js';
import { prefetchJob, type PrefetchSource } from './prefetch.js';

describe('prefetchJob', () => {
  let dir: string;
  let store: ObjectStore;
  let source: Omit<PrefetchSource, 'writesSettled'>;

  beforeEach(async () => {
    dir = await tempDir('prefetch');
    await mkdir(join(dir, 'set/a'), { recursive: true });
    for (let i = 0; i < 5; i++) await writeFile(join(dir, `set/a/f${i}.bin`), Buffer.alloc(3000, i));
    store = openStore(`file://${dir}`, {});
    const namespace = new Namespace(store, { metadataTtlMs: 60_000 });
    source = { routes: () => MountRoutes.single(namespace), reader: new DirectReader(store), blockSize: 1024 };
  });
  afterEach(async () => {
    await store.close();
    await cleanupDir(dir);
  });

  it('reads every block of every file, and ends only once the write-through in progress has', async () => {
    const jobs = new JobManager(silentLogger());
    let settle!: () => void;
    let asked = 0;
    const writesSettled = () => {
      asked++;
      return new Promise<void>((resolve) => (settle = resolve));
    };
    const job = jobs.submit('prefetch', prefetchJob({ ...source, writesSettled }, { paths: ['/set'] }));
    while (asked === 0) await new Promise((r) => setTimeout(r, 5));
    expect(jobs.get(job.id)).toMatchObject({ state: 'running', filesDone: 5, filesTotal: 5, bytesDone: 15_000 });
    await new Promise((r) => setTimeout(r, 50));
    expect(jobs.get(job.id)?.state).toBe('running');
    settle();
    expect(await jobs.wait(job.id)).toMatchObject({ state: 'done', filesDone: 5, bytesDone: 15_000 });
  });

  it('is cancelled while it waits for the write-through', async () => {
    const jobs = new JobManager(silentLogger());
    let asked = false;
    const job = jobs.submit('prefetch', prefetchJob({ ...source, writesSettled: () => ((asked = true), new Promise(() => {})) }, { paths: ['/set'] }));
    while (!asked) await new Promise((r) => setTimeout(r, 5));
    jobs.cancel(job.id);
    expect((await jobs.wait(job.id)).state).toBe('cancelled');
  });

  it('fails at once for a path that is not in the mount, without waiting on anything', async () => {
    const jobs = new JobManager(silentLogger());
    const job = jobs.submit('prefetch', prefetchJob({ ...source, writesSettled: () => new Promise(() => {}) }, { paths: ['/nope'] }));
    expect(await jobs.wait(job.id)).toMatchObject({ state: 'failed', error: expect.stringContaining('/nope') });
  });
});
