import { mkdir, mkdtemp, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeObjectStore, storeErrorCode } from '../test/store-conformance.js';
import { openStore, type ObjectStore } from './index.js';
import { LocalStore } from './local-store.js';

describeObjectStore('local directory', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'strata-store-'));
  return {
    store: openStore(`file://${dir}`),
    // Another writer: plain writes in place, as an editor or `cp` would do.
    seed: async (key, body) => {
      await mkdir(dirname(join(dir, key)), { recursive: true });
      await writeFile(join(dir, key), body);
    },
    openPrefixed: (prefix) => openStore(`file://${join(dir, prefix)}`),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('LocalStore specifics', () => {
  let dir: string;
  let store: ObjectStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-store-'));
    store = new LocalStore(dir);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fails check() with STORE_BUCKET_NOT_FOUND for a missing directory or a file', async () => {
    const missing = new LocalStore(join(dir, 'nope'));
    await expect(missing.check()).rejects.toMatchObject({ code: 'STORE_BUCKET_NOT_FOUND', message: expect.stringContaining(join(dir, 'nope')) });
    await writeFile(join(dir, 'file'), 'x');
    await expect(new LocalStore(join(dir, 'file')).check()).rejects.toMatchObject({ code: 'STORE_BUCKET_NOT_FOUND', message: expect.stringContaining('not a directory') });
  });

  it('refuses keys that would escape the directory, and finds nothing at them', async () => {
    await writeFile(join(dirname(dir), `${dir.split('/').pop()}-outside`), 'secret');
    for (const key of ['../x', 'a/../../x', '/etc/passwd', 'a\0b', '', 'a//b', './a', '.strata-multipart/x', 'a/.strata-tmp-1']) {
      expect(await storeErrorCode(store.put(key, Buffer.from('x'))), key).toBe('STORE_ACCESS_DENIED');
      expect(await store.head(key), key).toBeUndefined();
      expect(await storeErrorCode(store.getRange(key, 0, 1)), key).toBe('STORE_NOT_FOUND');
      await store.delete(key); // nothing there: succeeds
    }
    expect(await storeErrorCode(store.createMultipart('../up'))).toBe('STORE_ACCESS_DENIED');
    expect(await readdir(dir)).toEqual([]);
    await rm(join(dirname(dir), `${dir.split('/').pop()}-outside`));
  });

  it('hides multipart state and temporary files from listings', async () => {
    const upload = await store.createMultipart('a/b.bin');
    await store.uploadPart(upload, 1, Buffer.from('part'));
    await writeFile(join(dir, '.strata-tmp-leftover'), 'half written');
    await store.put('a/c.bin', Buffer.from('c'));
    expect((await readdir(dir)).sort()).toEqual(['.strata-multipart', '.strata-tmp-leftover', 'a']);
    expect((await store.list('')).objects.map((o) => o.key)).toEqual(['a/c.bin']);
    expect(await store.list('', { delimiter: '/' })).toMatchObject({ objects: [], prefixes: ['a/'] });
    expect((await store.list('.strata', { delimiter: '/' })).prefixes).toEqual([]);
    await store.abortMultipart(upload);
    expect(await readdir(join(dir, '.strata-multipart'))).toEqual([]);
  });

  it('shows empty directories as prefixes and a directory as its own marker', async () => {
    await mkdir(join(dir, 'empty/deeper'), { recursive: true });
    expect((await store.list('', { delimiter: '/' })).prefixes).toEqual(['empty/']);
    const inside = await store.list('empty/', { delimiter: '/' });
    expect(inside.objects.map((o) => o.key)).toEqual(['empty/']);
    expect(inside.prefixes).toEqual(['empty/deeper/']);
    expect((await store.list('')).objects).toEqual([]); // recursive listings: files only
    expect((await store.head('empty/'))?.size).toBe(0);
    expect(await store.head('empty')).toBeUndefined();
    await store.delete('empty/'); // still holds a folder: stays, as a prefix with keys under it would
    expect((await stat(join(dir, 'empty'))).isDirectory()).toBe(true);
  });

  it('shows symbolic links as links: their target as bytes, dangling ones included', async () => {
    await writeFile(join(dir, 'target'), 'hello');
    await symlink(join(dir, 'target'), join(dir, 'link'));
    await symlink('nowhere', join(dir, 'dangling'));
    expect((await store.list('')).objects.map((o) => o.key)).toEqual(['dangling', 'link', 'target']);
    const link = (await store.head('link'))!;
    expect(link.meta?.mode).toBe(0o120777);
    expect((await store.getRange('link', 0, link.size)).body.toString()).toBe(join(dir, 'target'));
    expect((await store.getRange('dangling', 0, 100)).body.toString()).toBe('nowhere');
    expect((await store.getRange('target', 0, 5)).body.toString()).toBe('hello');
  });

  it('changes the ETag when a file is rewritten in place with another size', async () => {
    await writeFile(join(dir, 'f'), 'one');
    const before = (await store.head('f'))!.etag;
    await writeFile(join(dir, 'f'), 'three');
    expect((await store.head('f'))!.etag).not.toBe(before);
  });

  it('writes atomically: no temporary file is left behind, even when a write fails', async () => {
    await store.put('x/y', Buffer.from('ok'));
    await mkdir(join(dir, 'x/dir'));
    // Writing a file over a directory fails at the rename.
    expect(await storeErrorCode(store.put('x/dir', Buffer.from('no')))).toBe('STORE_IO');
    expect((await readdir(join(dir, 'x'))).sort()).toEqual(['dir', 'y']);
  });

  it('refuses to complete with a part that was replaced after it was listed', async () => {
    const upload = await store.createMultipart('m');
    const part = await store.uploadPart(upload, 1, Buffer.from('first'));
    await store.uploadPart(upload, 1, Buffer.from('second!'));
    expect(await storeErrorCode(store.completeMultipart(upload, [part]))).toBe('STORE_PRECONDITION_FAILED');
    expect(await storeErrorCode(store.completeMultipart(upload, [{ partNumber: 2, etag: 'x', size: 1 }]))).toBe('STORE_IO');
    expect(await storeErrorCode(store.listParts({ key: 'other', uploadId: upload.uploadId }))).toBe('STORE_NOT_FOUND');
    const [current] = await store.listParts(upload);
    await store.completeMultipart(upload, [current!]);
    expect((await store.getRange('m', 0, 100)).body.toString()).toBe('second!');
  });

  it('leaves no half-removed upload behind: a removal a crash cut short is finished by the next store', async () => {
    const done = await store.createMultipart('done.bin');
    const part = await store.uploadPart(done, 1, Buffer.from('bytes'));
    await store.completeMultipart(done, [part]);
    const aborted = await store.createMultipart('aborted.bin');
    await store.uploadPart(aborted, 1, Buffer.from('bytes'));
    await store.abortMultipart(aborted);
    expect(await readdir(join(dir, '.strata-multipart'))).toEqual([]);
    // A crash after an upload folder was renamed for removal, before it was deleted.
    const cut = await store.createMultipart('cut.bin');
    await store.uploadPart(cut, 1, Buffer.from('bytes'));
    await rename(join(dir, '.strata-multipart', cut.uploadId), join(dir, '.strata-multipart', `removing-${cut.uploadId}`));
    const next = new LocalStore(dir);
    expect(await next.listMultipart('cut.bin')).toEqual([]);
    expect(await readdir(join(dir, '.strata-multipart'))).toEqual([]);
    expect(await storeErrorCode(next.listParts(cut))).toBe('STORE_NOT_FOUND');
    await next.close();
  });
});
