import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { metricsRegistry } from '../telemetry/index.js';
import { cleanUpRigs, MiB, onCleanUp, PART, rig, stored, STORE_ID, until } from './testing/write-path-rig.js';

afterEach(cleanUpRigs);

async function restreamed(): Promise<number> {
  const text = await metricsRegistry.metrics();
  const line = text.split('\n').find((l) => l.startsWith('strata_upload_parts_restreamed_total '));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** What the kernel does with a passthrough writer: writes the shared descriptor itself, `chunk` bytes at a time. */
async function kernelWrites(file: FileHandle, data: Buffer, at = 0, chunk = MiB): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) await file.write(data, off, Math.min(chunk, data.length - off), at + off);
}

describe('a file the kernel writes itself (FUSE write passthrough)', () => {
  it('streams its parts as it grows, uploads again a part changed after it was streamed, and commits the final bytes at release', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'ckpt/shared.pt' }, { truncate: true });
    const file = (await r.writePath.shareWithKernel(h))!;
    expect(file).toBeDefined();
    expect(r.writePath.sharedWithKernel(h)).toBe(true);
    const data = randomBytes(3 * PART + 123);
    await kernelWrites(file, data);
    // The watcher saw the file grow: its three full parts stream before any close.
    await until(() => r.writePath.uploads()[0]!.uploadedBytes === 3 * PART, 'three streamed parts');
    expect(r.writePath.sizeOf(h)).toBe(data.length);
    // The writer goes back and changes bytes of the first part, already in the store.
    const patch = randomBytes(1000);
    await file.write(patch, 0, patch.length, 100);
    patch.copy(data, 100);
    const before = await restreamed();
    // A close: durable and journaled as closed, not committed (another descriptor may still write).
    await r.writePath.flushDurable(h);
    const records = await readdir(join(r.stagingDir, 'journal'));
    expect(records.length).toBe(1);
    expect(JSON.parse(await readFile(join(r.stagingDir, 'journal', records[0]!), 'utf8'))).toMatchObject({ state: 'closed', size: data.length, partsUnverified: true });
    expect(r.store.count('completeMultipart')).toBe(0);
    // A flush asked for after the close waits for the commit at release.
    let flushed = false;
    const flushing = r.writePath.flush().then(() => (flushed = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(flushed).toBe(false);
    await file.close();
    await r.writePath.release(h);
    await flushing;
    expect((await stored(r, 'ckpt/shared.pt'))?.equals(data)).toBe(true);
    expect((await restreamed()) - before).toBe(1);
    expect(r.store.count('uploadPart')).toBe(5); // 4 parts, the first twice
  });

  it('uploads what a close made durable after a crash before release, checking the parts the store holds against the file', async () => {
    const storeDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-store-'));
    const stagingDir = await mkdtemp(join(tmpdir(), 'strata-ckpt-staging-'));
    onCleanUp(
      () => rm(storeDir, { recursive: true, force: true }),
      () => rm(stagingDir, { recursive: true, force: true }),
    );
    const first = await rig({}, { storeDir, stagingDir });
    const h = await first.writePath.open({ storeId: STORE_ID, key: 'ckpt/crash.pt' }, { truncate: true });
    const file = (await first.writePath.shareWithKernel(h))!;
    const data = randomBytes(2 * PART + 77);
    await kernelWrites(file, data);
    await until(() => first.writePath.uploads()[0]!.uploadedBytes === 2 * PART, 'two streamed parts');
    // Changed after streaming, then closed: the store holds a part the file no longer has.
    const patch = randomBytes(64);
    await file.write(patch, 0, patch.length, PART + 5);
    patch.copy(data, PART + 5);
    await first.writePath.flushDurable(h);
    await file.close();
    // The daemon dies before RELEASE: the open handle goes, the journal stays.
    await first.writePath.close();
    const second = await rig({}, { storeDir, stagingDir });
    await second.writePath.flush();
    expect((await stored(second, 'ckpt/crash.pt'))?.equals(data)).toBe(true);
    await second.writePath.close();
  });

  it('commits at fsync what the kernel wrote a moment before, without waiting for the watcher', async () => {
    const r = await rig();
    const h = await r.writePath.open({ storeId: STORE_ID, key: 'synced.bin' }, { truncate: true });
    const file = (await r.writePath.shareWithKernel(h))!;
    await file.write(Buffer.from('abc'), 0, 3, 0);
    await r.writePath.fsync(h);
    expect(await stored(r, 'synced.bin')).toEqual(Buffer.from('abc'));
    // Written and fsync'd at once, well within the watcher's 20 ms.
    await file.write(Buffer.from('def'), 0, 3, 3);
    await r.writePath.fsync(h);
    expect(await stored(r, 'synced.bin')).toEqual(Buffer.from('abcdef'));
    await file.close();
    await r.writePath.release(h);
    await r.writePath.flush();
  });

  it('keeps a writer on the daemon path for sync close, with sharing off, and while staging is more than half full', async () => {
    const r = await rig({ stagingLimitBytes: 4 * PART });
    const sync = await r.writePath.open({ storeId: STORE_ID, key: 'sync.bin' }, { truncate: true, closeMode: 'sync' });
    expect(await r.writePath.shareWithKernel(sync)).toBeUndefined();
    expect(r.writePath.sharedWithKernel(sync)).toBe(false);
    await r.writePath.release(sync);

    const off = await rig({ shareWithKernel: false });
    const plain = await off.writePath.open({ storeId: STORE_ID, key: 'plain.bin' }, { truncate: true });
    expect(await off.writePath.shareWithKernel(plain)).toBeUndefined();
    await off.writePath.release(plain);

    // 3 of 4 parts' worth staged by a handle still open: the next writer stays on the daemon's path.
    const big = await r.writePath.open({ storeId: STORE_ID, key: 'big.bin' }, { truncate: true });
    await r.writePath.write(big, 0, randomBytes(3 * PART));
    const next = await r.writePath.open({ storeId: STORE_ID, key: 'next.bin' }, { truncate: true });
    expect(await r.writePath.shareWithKernel(next)).toBeUndefined();
    await r.writePath.release(next);
    await r.writePath.release(big);
    await r.writePath.flush();
  });
});
