import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isStrataError } from '../errors/index.js';
import { openStore } from '../store/index.js';
import { metricsRegistry, silentLogger } from '../telemetry/index.js';
import { cleanUpRigs, onCleanUp, instantSleep, MiB, multipartLeft, PART, rig, stored, STORE_ID, until, untilAsync, type Rig } from './testing/write-path-rig.js';
import { WritePath } from './index.js';

afterEach(cleanUpRigs);

async function writeSequentially(r: Rig, handle: Awaited<ReturnType<WritePath['open']>>, data: Buffer, chunk = MiB): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) await r.writePath.write(handle, off, data.subarray(off, off + chunk));
}

describe('WritePath over the local store', () => {
  it('uploads a small file with one PUT after an async release, then cleans staging and the journal', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'a/small.bin' }, { truncate: true });
    const data = randomBytes(100_000);
    expect(await r.writePath.write(h, 0, data)).toBe(data.length);
    await r.writePath.release(h);
    await r.writePath.flush();
    expect((await stored(r, 'a/small.bin'))?.equals(data)).toBe(true);
    expect(r.store.count('put')).toBe(1);
    expect(r.store.count('createMultipart')).toBe(0);
    expect(await readdir(join(r.stagingDir, 'staged'))).toEqual([]);
    expect(await readdir(join(r.stagingDir, 'journal'))).toEqual([]);
    expect(r.writePath.stagingUsedBytes()).toBe(0);
    expect(r.adopted).toEqual([{ ref: expect.objectContaining({ key: 'a/small.bin', size: data.length }), existed: true }]);
  });

  it('streams full parts to the store while the file is still being written', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'ckpt/model.pt' }, { truncate: true });
    const data = randomBytes(2 * PART + 3 * MiB);
    await writeSequentially(r, h, data);
    // Two full parts exist before release: both are uploaded without waiting for it.
    await until(() => r.writePath.uploads()[0]!.uploadedBytes === 2 * PART, 'two streamed parts');
    expect(r.store.count('uploadPart')).toBe(2);
    expect(r.store.count('completeMultipart')).toBe(0);
    await r.writePath.release(h);
    await r.writePath.flush();
    expect(r.store.count('uploadPart')).toBe(3);
    expect(r.store.count('put')).toBe(0);
    expect((await stored(r, 'ckpt/model.pt'))?.equals(data)).toBe(true);
    expect(await multipartLeft(r)).toEqual([]);
  });

  it('limits the parts a file streams while it is written to streamingPartsPerFile', async () => {
    const r = await rig({ streamingPartsPerFile: 1 });
    const open = r.store.hold('uploadPart');
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'slow.bin' }, { truncate: true });
    const data = randomBytes(3 * PART);
    await writeSequentially(r, h, data);
    // The first part starts (however slowly a loaded machine gets to it); while it is held, no second one does.
    await until(() => r.store.count('uploadPart') === 1, 'the first streamed part');
    await new Promise((res) => setTimeout(res, 30));
    expect(r.store.count('uploadPart')).toBe(1);
    open();
    await until(() => r.writePath.uploads()[0]!.uploadedBytes === 3 * PART, 'the other parts, one after the other');
    await r.writePath.release(h);
    await r.writePath.flush();
    expect((await stored(r, 'slow.bin'))?.equals(data)).toBe(true);
  });

  it('falls back to a whole-file upload after an out-of-order write and aborts the streamed upload', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'ooo.bin' }, { truncate: true });
    const data = randomBytes(PART + 2 * MiB);
    await writeSequentially(r, h, data);
    await until(() => r.store.count('uploadPart') === 1, 'the first streamed part');
    const patch = randomBytes(4096);
    await r.writePath.write(h, 1000, patch); // overwrite inside the uploaded part
    patch.copy(data, 1000);
    await until(() => r.store.count('abortMultipart') === 1, 'abort of the streamed upload');
    const more = randomBytes(MiB);
    await r.writePath.write(h, data.length, more); // appends no longer stream
    await new Promise((res) => setTimeout(res, 50));
    expect(r.store.count('uploadPart')).toBe(1);
    await r.writePath.release(h);
    await r.writePath.flush();
    expect((await stored(r, 'ooo.bin'))?.equals(Buffer.concat([data, more]))).toBe(true);
    expect(await multipartLeft(r)).toEqual([]);
  });

  it('truncates: cut, then extended with zeros', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 't.bin' }, { truncate: true });
    await r.writePath.write(h, 0, Buffer.from('hello world'));
    await r.writePath.truncate(h, 5);
    await r.writePath.write(h, 5, Buffer.from('!'));
    await r.writePath.truncate(h, 9);
    expect(r.writePath.pending(STORE_ID, 't.bin')?.size).toBe(9);
    await r.writePath.release(h);
    await r.writePath.flush();
    expect(await stored(r, 't.bin')).toEqual(Buffer.from('hello!\0\0\0'));
  });

  it('an async release returns before the store has the file, a sync release only after', async () => {
    const r = await rig();
    const open = r.store.hold('put');
    const a = await r.writePath.open({ storeId: STORE_ID, key: 'async.bin' }, { truncate: true });
    await r.writePath.write(a, 0, Buffer.from('async'));
    await r.writePath.release(a); // resolves although the PUT is held
    expect(await stored(r, 'async.bin')).toBeUndefined();
    expect(r.writePath.uploads().map((u) => u.key)).toEqual(['async.bin']);

    const s = await r.writePath.open({ storeId: STORE_ID, key: 'sync.bin' }, { truncate: true, closeMode: 'sync' });
    await r.writePath.write(s, 0, Buffer.from('sync'));
    let released = false;
    const release = r.writePath.release(s).then(() => (released = true));
    await new Promise((res) => setTimeout(res, 50));
    expect(released).toBe(false);
    open();
    await release;
    expect(await stored(r, 'sync.bin')).toEqual(Buffer.from('sync'));
  });

  it('a sync release returns once the store has the file, while the cache still copies it', async () => {
    const storeDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-store-'));
    const stagingDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-staging-'));
    let adopting!: () => void;
    const adopted = new Promise<void>((resolve) => (adopting = resolve));
    let adoptStarted = false;
    const writePath = new WritePath(
      { stagingDir, stagingLimitBytes: 64 * MiB, closeMode: 'sync', partSizeBytes: PART, logger: silentLogger(), sleep: instantSleep },
      () => openStore(`file://${storeDir}`),
      async () => {
        adoptStarted = true;
        await adopted; // a cache slow to take the bytes
      },
    );
    await writePath.recover();
    try {
      const h = await writePath.open({ storeId: STORE_ID, key: 'fast.bin' }, { truncate: true });
      const data = randomBytes(2 * PART + 10);
      for (let off = 0; off < data.length; off += MiB) await writePath.write(h, off, data.subarray(off, off + MiB));
      await writePath.release(h);
      // Buffer.equals: toEqual walks a 10 MB buffer byte by byte, over a minute on a loaded machine.
      expect((await readFile(join(storeDir, 'fast.bin'))).equals(data)).toBe(true);
      expect(adoptStarted).toBe(true);
      // Until the cache is done the file is still pending, and reads come from its staged bytes.
      expect(writePath.uploads().map((u) => u.key)).toEqual(['fast.bin']);
      expect(await writePath.readPending(STORE_ID, 'fast.bin', 0, 10)).toEqual(data.subarray(0, 10));
      adopting();
      await writePath.flush();
      expect(writePath.uploads()).toEqual([]);
    } finally {
      adopting();
      await writePath.close();
      await rm(storeDir, { recursive: true, force: true });
      await rm(stagingDir, { recursive: true, force: true });
    }
  });

  it('fsync waits until the store has the bytes written so far; later writes make a new version', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'f.bin' }, { truncate: true });
    const first = randomBytes(PART + MiB);
    await writeSequentially(r, h, first);
    const open = r.store.hold('completeMultipart');
    let synced = false;
    const fsync = r.writePath.fsync(h).then(() => (synced = true));
    await new Promise((res) => setTimeout(res, 50));
    expect(synced).toBe(false);
    open();
    await fsync;
    expect((await stored(r, 'f.bin'))?.equals(first)).toBe(true);
    const second = randomBytes(MiB);
    await r.writePath.write(h, first.length, second);
    await r.writePath.release(h);
    await r.writePath.flush();
    expect((await stored(r, 'f.bin'))?.equals(Buffer.concat([first, second]))).toBe(true);
  });

  it('fsync right before release (dd conv=fsync) uploads once', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'dd.bin' }, { truncate: true });
    await writeSequentially(r, h, randomBytes(PART + MiB));
    await r.writePath.fsync(h);
    await r.writePath.release(h);
    await r.writePath.flush();
    expect(r.store.count('completeMultipart')).toBe(1);
    expect(r.store.count('uploadPart')).toBe(2);
    expect(r.writePath.uploads()).toEqual([]);
  });

  it('serves reads, sizes and listings of files that are not in the store yet', async () => {
    const r = await rig();
    const open = r.store.hold('put');
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'dir/sub/x.bin' }, { truncate: true });
    await r.writePath.write(h, 0, Buffer.from('0123456789'));
    expect(await r.writePath.readPending(STORE_ID, 'dir/sub/x.bin', 2, 4)).toEqual(Buffer.from('2345'));
    await r.writePath.release(h);
    expect(r.writePath.pending(STORE_ID, 'dir/sub/x.bin')?.size).toBe(10);
    expect(r.writePath.pendingUnder(STORE_ID, 'dir/').map((p) => [p.key, p.size])).toEqual([['dir/sub/x.bin', 10]]);
    expect(r.writePath.pendingUnder(STORE_ID, 'other/')).toEqual([]);
    expect(await r.writePath.readPending(STORE_ID, 'dir/sub/x.bin', 8, 100)).toEqual(Buffer.from('89'));
    open();
    await r.writePath.flush();
    expect(r.writePath.pending(STORE_ID, 'dir/sub/x.bin')).toBeUndefined();
    expect(await r.writePath.readPending(STORE_ID, 'dir/sub/x.bin', 0, 10)).toBeUndefined();
  });

  it('opening without truncate stages the committed bytes first (append)', async () => {
    const r = await rig();
    const h1 = await r.writePath.open({ storeId: STORE_ID, key: 'log.txt' }, { truncate: true });
    await r.writePath.write(h1, 0, Buffer.from('one,'));
    await r.writePath.release(h1);
    await r.writePath.flush();
    const info = (await r.store.head('log.txt'))!;
    expect(info.size).toBe(4);
    const h2 = await r.writePath.open({ storeId: STORE_ID, key: 'log.txt' }, { truncate: false });
    await r.writePath.write(h2, 4, Buffer.from('two'));
    await r.writePath.release(h2);
    await r.writePath.flush();
    expect(await stored(r, 'log.txt')).toEqual(Buffer.from('one,two'));
  });

  it('unlink cancels a pending upload and aborts its multipart upload', async () => {
    const r = await rig();
    const open = r.store.hold('uploadPart');
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'gone.bin' }, { truncate: true });
    await writeSequentially(r, h, randomBytes(PART + MiB));
    await r.writePath.release(h);
    await until(() => r.store.count('uploadPart') === 2, 'both parts in flight');
    await r.writePath.unlink(STORE_ID, 'gone.bin');
    open();
    await r.writePath.flush();
    expect(r.writePath.pending(STORE_ID, 'gone.bin')).toBeUndefined();
    expect(r.writePath.uploads()).toEqual([]);
    await untilAsync(async () => (await multipartLeft(r)).length === 0, 'abort of the multipart upload');
    expect(r.store.count('completeMultipart')).toBe(0);
    expect(await stored(r, 'gone.bin')).toBeUndefined();
    expect(await readdir(join(r.stagingDir, 'staged'))).toEqual([]);
    expect(await readdir(join(r.stagingDir, 'journal'))).toEqual([]);
    expect(r.writePath.stagingUsedBytes()).toBe(0);
  });

  it('unlink of a released file waiting to retry leaves nothing in the store', async () => {
    const r = await rig({ sleep: undefined, retryBaseDelayMs: 2_000 });
    r.store.failNext(1);
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'u.bin' }, { truncate: true });
    await r.writePath.write(h, 0, Buffer.from('bytes'));
    await r.writePath.release(h);
    await until(() => r.writePath.uploads()[0]?.state === 'retrying', 'the first failure');
    await r.writePath.unlink(STORE_ID, 'u.bin');
    await r.writePath.flush();
    expect(r.store.count('put')).toBe(1);
    expect(await stored(r, 'u.bin')).toBeUndefined();
    expect(r.writePath.stagingUsedBytes()).toBe(0);
  });

  it('an open handle whose file is unlinked keeps writing, and its release uploads nothing', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'anon.bin' }, { truncate: true });
    await r.writePath.write(h, 0, Buffer.from('abc'));
    await r.writePath.unlink(STORE_ID, 'anon.bin');
    expect(r.writePath.pending(STORE_ID, 'anon.bin')).toBeUndefined();
    await r.writePath.write(h, 3, Buffer.from('def'));
    await r.writePath.release(h);
    await r.writePath.flush();
    expect(r.store.count('put')).toBe(0);
    expect(await readdir(join(r.stagingDir, 'staged'))).toEqual([]);
  });

  it('rename retargets a pending upload, including a streamed multipart upload', async () => {
    const r = await rig();
    const open = r.store.hold('completeMultipart');
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'tmp/ckpt.part' }, { truncate: true });
    const data = randomBytes(PART + MiB);
    await writeSequentially(r, h, data);
    await r.writePath.release(h);
    await r.writePath.rename(STORE_ID, 'tmp/ckpt.part', 'final/ckpt.pt');
    expect(r.writePath.pending(STORE_ID, 'final/ckpt.pt')?.size).toBe(data.length);
    expect(r.writePath.pending(STORE_ID, 'tmp/ckpt.part')).toBeUndefined();
    open();
    await r.writePath.flush();
    expect((await stored(r, 'final/ckpt.pt'))?.equals(data)).toBe(true);
    expect(await stored(r, 'tmp/ckpt.part')).toBeUndefined();
    await untilAsync(async () => (await multipartLeft(r)).length === 0, 'abort of the old multipart upload');
  });

  it('rename racing a commit already under way moves the committed object', async () => {
    const r = await rig();
    const open = r.store.hold('completeMultipart');
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'racing.tmp' }, { truncate: true });
    const data = randomBytes(PART + 10);
    await writeSequentially(r, h, data);
    await r.writePath.release(h);
    await until(() => r.store.count('completeMultipart') === 1, 'the completion in flight');
    const renaming = r.writePath.rename(STORE_ID, 'racing.tmp', 'racing.pt');
    open();
    await renaming;
    await r.writePath.flush();
    expect((await stored(r, 'racing.pt'))?.equals(data)).toBe(true);
    expect(await stored(r, 'racing.tmp')).toBeUndefined();
  });

  it('rename over a pending file replaces it, as rename(2) does', async () => {
    const r = await rig();
    const open = r.store.hold('put');
    const tmp = await r.writePath.open({ storeId: STORE_ID, key: 'save.tmp' }, { truncate: true });
    await r.writePath.write(tmp, 0, Buffer.from('new'));
    await r.writePath.release(tmp);
    const old = await r.writePath.open({ storeId: STORE_ID, key: 'save.pt' }, { truncate: true });
    await r.writePath.write(old, 0, Buffer.from('old'));
    await r.writePath.release(old);
    // Both PUTs are in flight: the rename waits for them (a PUT once sent is never aborted).
    const renaming = r.writePath.rename(STORE_ID, 'save.tmp', 'save.pt');
    open();
    expect(await renaming).toBe(true);
    await r.writePath.flush();
    expect(await stored(r, 'save.pt')).toEqual(Buffer.from('new'));
    expect(await stored(r, 'save.tmp')).toBeUndefined();
  });

  it('rename over a file still open for writing replaces its pending version', async () => {
    const r = await rig();
    const tmp = await r.writePath.open({ storeId: STORE_ID, key: 'open.tmp' }, { truncate: true });
    await r.writePath.write(tmp, 0, Buffer.from('new'));
    await r.writePath.release(tmp);
    const old = await r.writePath.open({ storeId: STORE_ID, key: 'open.pt' }, { truncate: true });
    await r.writePath.write(old, 0, Buffer.from('old'));
    expect(await r.writePath.rename(STORE_ID, 'open.tmp', 'open.pt')).toBe(true);
    await r.writePath.release(old); // cancelled by the rename: uploads nothing
    await r.writePath.flush();
    expect(await stored(r, 'open.pt')).toEqual(Buffer.from('new'));
    expect(await stored(r, 'open.tmp')).toBeUndefined();
  });

  it('an unlink racing a PUT in flight waits for it and leaves nothing in the store', async () => {
    const r = await rig();
    const open = r.store.hold('put');
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'race.bin' }, { truncate: true });
    await r.writePath.write(h, 0, Buffer.from('bytes'));
    await r.writePath.release(h);
    await until(() => r.store.count('put') === 1, 'the PUT in flight');
    const unlinking = r.writePath.unlink(STORE_ID, 'race.bin');
    open();
    await unlinking;
    await r.writePath.flush();
    expect(await stored(r, 'race.bin')).toBeUndefined();
    expect(r.writePath.pending(STORE_ID, 'race.bin')).toBeUndefined();
  });

  it('rename answers false and changes nothing when there is no file', async () => {
    const r = await rig();
    expect(await r.writePath.rename(STORE_ID, 'absent', 'elsewhere')).toBe(false);
    expect(await stored(r, 'elsewhere')).toBeUndefined();
  });

  it('retries with backoff while the store is down, reports attempts, and loses nothing', async () => {
    const r = await rig();
    r.store.failNext(7);
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'down.bin' }, { truncate: true });
    const data = randomBytes(2 * PART + 1234);
    await writeSequentially(r, h, data);
    await r.writePath.release(h);
    await until(() => (r.writePath.uploads()[0]?.attempts ?? 7) > 0, 'a failed attempt');
    expect(r.writePath.uploads()[0]!.lastError).toMatch(/scripted outage/);
    await r.writePath.flush();
    expect((await stored(r, 'down.bin'))?.equals(data)).toBe(true);
  });

  it('keeps data staged for a store that stays down, and fsync gives up with a typed error', async () => {
    const r = await rig({ commitWaitMs: 30, retryBaseDelayMs: 1, retryMaxDelayMs: 5 });
    r.store.failNext(1_000_000);
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'stuck.bin' }, { truncate: true });
    await r.writePath.write(h, 0, Buffer.from('precious'));
    const err = await r.writePath.fsync(h).catch((e: unknown) => e);
    expect(isStrataError(err, 'CHECKPOINT_UPLOAD_FAILED')).toBe(true);
    await r.writePath.release(h);
    expect(r.writePath.stagingUsedBytes()).toBe(8);
    expect(await r.writePath.readPending(STORE_ID, 'stuck.bin', 0, 8)).toEqual(Buffer.from('precious'));
    r.store.failNext(0);
    await r.writePath.flush();
    expect(await stored(r, 'stuck.bin')).toEqual(Buffer.from('precious'));
  });

  it('reports the age of the oldest upload waiting for the store, and 0 once it is in', async () => {
    let now = 1_000_000;
    const r = await rig({ now: () => now, retryBaseDelayMs: 1, retryMaxDelayMs: 5 });
    const scrape = async () => {
      const text = await metricsRegistry.getSingleMetricAsString('strata_upload_oldest_pending_seconds');
      return Number(/^strata_upload_oldest_pending_seconds (\S+)$/m.exec(text)?.[1]);
    };
    expect(r.writePath.oldestQueuedSeconds()).toBe(0);
    r.store.failNext(1_000_000);
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'waiting.bin' }, { truncate: true });
    await r.writePath.write(h, 0, Buffer.from('queued'));
    now += 5_000; // an open handle is not waiting for the store yet
    expect(r.writePath.oldestQueuedSeconds()).toBe(0);
    await r.writePath.release(h);
    now += 42_000;
    expect(r.writePath.oldestQueuedSeconds()).toBe(42);
    expect(await scrape()).toBeGreaterThanOrEqual(42);
    r.store.failNext(0);
    await r.writePath.flush();
    expect(r.writePath.oldestQueuedSeconds()).toBe(0);
    expect(await scrape()).toBe(0);
  });

  it('when staging is full a write waits for space, then fails with CHECKPOINT_STAGING_FULL', async () => {
    // The wait gives up after 1 s without upload progress: long enough for the commit below on a loaded machine.
    const r = await rig({ stagingLimitBytes: MiB, stagingWaitMs: 1000 });
    const open = r.store.hold('put');
    const a = await r.writePath.open({ storeId: STORE_ID, key: 'a.bin' }, { truncate: true });
    await r.writePath.write(a, 0, randomBytes(MiB - 10));
    await r.writePath.release(a);
    const b = await r.writePath.open({ storeId: STORE_ID, key: 'b.bin' }, { truncate: true });
    const started = Date.now();
    const err = await r.writePath.write(b, 0, randomBytes(100)).catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(990);
    expect(isStrataError(err, 'CHECKPOINT_STAGING_FULL')).toBe(true);
    // Space freed while a write waits lets it go through.
    const waiting = r.writePath.write(b, 0, Buffer.from('fits once a.bin is uploaded'));
    open();
    expect(await waiting).toBe(27);
    await r.writePath.release(b);
    await r.writePath.flush();
    expect(await stored(r, 'b.bin')).toEqual(Buffer.from('fits once a.bin is uploaded'));
  });

  it('pins the newest upload of each folder and unpins the one it replaces', async () => {
    const r = await rig({ keepNewest: 1 });
    for (const key of ['run/step-1.pt', 'run/step-2.pt', 'other/x.pt']) {
      const h = await r.writePath.open({ storeId: STORE_ID, key }, { truncate: true });
      await r.writePath.write(h, 0, Buffer.from(key));
      await r.writePath.release(h);
      await r.writePath.flush();
    }
    expect(r.writePath.pinned().map((p) => p.key).sort()).toEqual(['other/x.pt', 'run/step-2.pt']);
    expect(r.pinLog).toEqual(['pin run/step-1.pt', 'pin run/step-2.pt', 'unpin run/step-1.pt', 'pin other/x.pt']);
  });

  it('takes concurrent writers of several files, interleaved, streaming and not', async () => {
    const r = await rig({ maxConcurrentParts: 3 });
    r.store.failNext(5, ['uploadPart', 'put']);
    const sizes = [3 * PART + 17, 200_000, 2 * PART, PART - 1, 0];
    const files = sizes.map((size, i) => ({ key: `multi/f${i}.bin`, data: randomBytes(size) }));
    const handles = await Promise.all(files.map((f) => r.writePath.open({ storeId: STORE_ID, key: f.key }, { truncate: true })));
    const chunk = 700_000; // not a divisor of the part size: parts fill across writes
    for (let off = 0; off < Math.max(...sizes); off += chunk) {
      await Promise.all(
        files.map((f, i) => (off < f.data.length ? r.writePath.write(handles[i]!, off, f.data.subarray(off, off + chunk)) : Promise.resolve(0))),
      );
    }
    await Promise.all(handles.map((h) => r.writePath.release(h)));
    await r.writePath.flush();
    for (const f of files) expect((await stored(r, f.key))?.equals(f.data), f.key).toBe(true);
    expect(r.writePath.stagingUsedBytes()).toBe(0);
  });

  it('commits two versions of one key in release order', async () => {
    const r = await rig();
    const open = r.store.hold('put');
    const one = await r.writePath.open({ storeId: STORE_ID, key: 'v.bin' }, { truncate: true });
    await r.writePath.write(one, 0, Buffer.from('first'));
    await r.writePath.release(one);
    const two = await r.writePath.open({ storeId: STORE_ID, key: 'v.bin' }, { truncate: true });
    await r.writePath.write(two, 0, Buffer.from('second'));
    await r.writePath.release(two);
    expect(await r.writePath.readPending(STORE_ID, 'v.bin', 0, 100)).toEqual(Buffer.from('second'));
    open();
    await r.writePath.flush();
    expect(await stored(r, 'v.bin')).toEqual(Buffer.from('second'));
  });

  it('resumes journaled uploads after a restart, reusing the parts the store holds', async () => {
    const storeDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-store-'));
    const stagingDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-staging-'));
    onCleanUp(() => rm(storeDir, { recursive: true, force: true }), () => rm(stagingDir, { recursive: true, force: true }));
    const first = await rig({}, { storeDir, stagingDir });
    first.store.hold('completeMultipart');
    const data = randomBytes(3 * PART + 100);
    const h = await first.writePath.open({ storeId: STORE_ID, key: 'resume.bin' }, { truncate: true });
    await writeSequentially(first, h, data);
    await first.writePath.release(h);
    await until(() => first.store.count('completeMultipart') === 1, 'the held completion');
    // A crash: the first write path is abandoned with its completion held, never closed.

    const second = await rig({}, { storeDir, stagingDir });
    expect(second.writePath.pending(STORE_ID, 'resume.bin')?.size).toBe(data.length);
    await second.writePath.flush();
    expect((await stored(second, 'resume.bin'))?.equals(data)).toBe(true);
    expect(second.store.count('listParts')).toBe(1);
    expect(second.store.count('uploadPart')).toBe(0);
    expect(await readdir(join(stagingDir, 'journal'))).toEqual([]);
    expect(await readdir(join(stagingDir, 'staged'))).toEqual([]);
    await second.writePath.close();
    first.store.openAll(); // the "dead" process's held call returns; close() lets it end quietly
    await first.writePath.close();
  });

  it('close() ends a sync release that waits for a down store; the file resumes at the next start', async () => {
    const storeDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-store-'));
    const stagingDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-staging-'));
    onCleanUp(() => rm(storeDir, { recursive: true, force: true }), () => rm(stagingDir, { recursive: true, force: true }));
    const first = await rig({ closeMode: 'sync', sleep: undefined, retryBaseDelayMs: 5 }, { storeDir, stagingDir });
    first.store.failNext(1_000_000);
    const h = await first.writePath.open({ storeId: STORE_ID, key: 'later.bin' }, { truncate: true });
    await first.writePath.write(h, 0, Buffer.from('survives'));
    const release = first.writePath.release(h).catch((e: unknown) => e);
    await until(() => (first.writePath.uploads()[0]?.attempts ?? 0) > 1, 'retries');
    await first.writePath.close();
    expect(isStrataError(await release, 'CHECKPOINT_UPLOAD_FAILED')).toBe(true);

    const second = await rig({}, { storeDir, stagingDir });
    await second.writePath.flush();
    expect(await stored(second, 'later.bin')).toEqual(Buffer.from('survives'));
    await second.writePath.close();
  });

  it('at start, aborts the multipart upload of a file whose handle never closed', async () => {
    const storeDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-store-'));
    const stagingDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-staging-'));
    onCleanUp(() => rm(storeDir, { recursive: true, force: true }), () => rm(stagingDir, { recursive: true, force: true }));
    const first = await rig({}, { storeDir, stagingDir });
    const h = await first.writePath.open({ storeId: STORE_ID, key: 'torn.bin' }, { truncate: true });
    await writeSequentially(first, h, randomBytes(PART + 10));
    await until(() => first.writePath.uploads()[0]?.uploadedBytes === PART, 'a streamed part');
    await first.writePath.close();
    expect(await multipartLeft(first)).toHaveLength(1);

    const second = await rig({}, { storeDir, stagingDir });
    await untilAsync(async () => (await multipartLeft(second)).length === 0, 'abort at start');
    expect(await stored(second, 'torn.bin')).toBeUndefined();
    expect(second.writePath.pending(STORE_ID, 'torn.bin')).toBeUndefined();
    expect(await readdir(join(stagingDir, 'staged'))).toEqual([]);
    await second.writePath.close();
  });

  it('journals a CreateMultipartUpload before sending it, and at start aborts the upload a crash left unnamed, and only that one', async () => {
    const storeDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-store-'));
    const stagingDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-staging-'));
    onCleanUp(() => rm(storeDir, { recursive: true, force: true }), () => rm(stagingDir, { recursive: true, force: true }));
    const first = await rig({}, { storeDir, stagingDir });
    first.store.hold('createMultipart');
    const h = await first.writePath.open({ storeId: STORE_ID, key: 'ckpt.pt' }, { truncate: true });
    await first.writePath.write(h, 0, randomBytes(PART)); // a full part: streaming starts
    await until(() => first.store.count('createMultipart') === 1, 'the CreateMultipartUpload');
    const journalDir = join(stagingDir, 'journal');
    const records = await Promise.all((await readdir(journalDir)).map(async (name) => JSON.parse(await readFile(join(journalDir, name), 'utf8')) as Record<string, unknown>));
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ key: 'ckpt.pt', state: 'writing' });
    expect(records[0]!.creatingSinceMs).toBeTypeOf('number');
    expect(records[0]!.uploadId).toBeUndefined();

    // The crash: the store created the upload, its answer never reached the journal. Beside
    // it, another writer's upload of the same key (it holds a part) and one of another key.
    const inner = openStore(`file://${storeDir}`);
    const lost = await inner.createMultipart('ckpt.pt');
    const theirs = await inner.createMultipart('ckpt.pt');
    await inner.uploadPart(theirs, 1, randomBytes(100));
    const elsewhere = await inner.createMultipart('other.pt');

    const second = await rig({}, { storeDir, stagingDir });
    expect((await inner.listMultipart('ckpt.pt')).map((m) => m.upload.uploadId)).toEqual([theirs.uploadId]);
    expect((await inner.listMultipart('other.pt')).map((m) => m.upload.uploadId)).toEqual([elsewhere.uploadId]);
    expect(lost.uploadId).not.toBe(theirs.uploadId);
    expect(await readdir(journalDir)).toEqual([]);
    expect(second.writePath.pending(STORE_ID, 'ckpt.pt')).toBeUndefined();
    await second.writePath.close();
    first.store.openAll();
    await first.writePath.close();
    await inner.close();
  });

  it('refuses calls on a released handle', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'closed.bin' }, { truncate: true });
    await r.writePath.release(h);
    const err = await r.writePath.write(h, 0, Buffer.from('x')).catch((e: unknown) => e);
    expect(isStrataError(err, 'CHECKPOINT_HANDLE_CLOSED')).toBe(true);
    const h2 = await r.writePath.open({ storeId: STORE_ID, key: 'twice.bin' }, { truncate: true });
    const [first, second] = await Promise.allSettled([r.writePath.release(h2), r.writePath.release(h2)]);
    expect(first.status).toBe('fulfilled');
    expect(second.status === 'rejected' && isStrataError(second.reason, 'CHECKPOINT_HANDLE_CLOSED')).toBe(true);
    await r.writePath.flush();
    expect(r.store.count('put')).toBe(2);
  });
});
