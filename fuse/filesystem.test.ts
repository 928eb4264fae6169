import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WritePath } from '../checkpoints/index.js';
import { Namespace } from '../namespace/index.js';
import { DirectReader } from '../test/fixtures/direct-reader.js';
import { openStore, type ObjectStore } from '../store/index.js';
import { silentLogger } from '../telemetry/index.js';
import { cleanupDir, tempDir } from '../test/fixtures/strata-process.js';
import { Filesystem, versionedMtime } from './filesystem.js';
import { MountRoutes } from '../namespace/index.js';

const O_WRONLY = 1;
const O_TRUNC = 0o1000;

describe('Filesystem (no mount)', () => {
  let dir: string;
  let store: ObjectStore;
  let fs: Filesystem;
  let namespace: Namespace;

  beforeEach(async () => {
    dir = await tempDir('fs');
    store = openStore(`file://${dir}`, {});
    namespace = new Namespace(store, { metadataTtlMs: 60_000 });
    fs = new Filesystem({ routes: MountRoutes.single(namespace), reader: new DirectReader(store), logger: silentLogger() });
    await mkdir(join(dir, 'data'), { recursive: true });
    await writeFile(join(dir, 'data/a.txt'), 'alpha bravo');
  });
  afterEach(async () => {
    await store.close();
    await cleanupDir(dir);
  });

  it('stats files and folders', async () => {
    const file = await fs.getattr('/data/a.txt');
    expect(file.size).toBe(11);
    expect(file.mode & 0o170000).toBe(0o100000);
    expect((await fs.getattr('/data')).mode & 0o170000).toBe(0o040000);
    await expect(fs.getattr('/nope')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });
  });

  it('reads byte ranges through a handle and clips at the end', async () => {
    const h = await fs.open('/data/a.txt', 0);
    expect((await fs.read(h, 6, 100)).toString()).toBe('bravo');
    expect((await fs.read(h, 11, 10)).length).toBe(0);
    expect((await fs.read(h, 50, 10)).length).toBe(0);
    fs.release(h);
    expect(fs.openHandles).toBe(0);
    await expect(fs.read(h, 0, 1)).rejects.toMatchObject({ code: 'FS_BAD_HANDLE' });
  });

  it('refuses writes with FS_READ_ONLY and folders with FS_IS_A_DIRECTORY', async () => {
    await expect(fs.open('/data/a.txt', O_WRONLY)).rejects.toMatchObject({ code: 'FS_READ_ONLY' });
    await expect(fs.open('/data/a.txt', O_TRUNC)).rejects.toMatchObject({ code: 'FS_READ_ONLY' });
    await expect(fs.open('/data', 0)).rejects.toMatchObject({ code: 'FS_IS_A_DIRECTORY' });
    await expect(fs.mkdir('/x')).rejects.toMatchObject({ code: 'FS_READ_ONLY' });
    await expect(fs.create('/data/new')).rejects.toMatchObject({ code: 'FS_READ_ONLY' });
    await expect(fs.symlink('target', '/data/link')).rejects.toMatchObject({ code: 'FS_READ_ONLY' });
    expect(() => fs.link('/data/a.txt', '/data/b')).toThrow(expect.objectContaining({ code: 'FS_NOT_PERMITTED' }));
  });

  it('answers FS_STALE when the object changes under an open handle, and the next open sees the new version', async () => {
    const h = await fs.open('/data/a.txt', 0);
    await rm(join(dir, 'data/a.txt'));
    await writeFile(join(dir, 'data/a.txt'), 'a different, longer body');
    await expect(fs.read(h, 0, 5)).rejects.toMatchObject({ code: 'FS_STALE' });
    fs.release(h);
    const again = await fs.open('/data/a.txt', 0);
    expect((await fs.read(again, 0, 100)).toString()).toBe('a different, longer body');
  });

  it('lists each name with the type its stat shows, and no type where only a HEAD would tell', async () => {
    await mkdir(join(dir, 'data/sub'));
    await writeFile(join(dir, 'data/sub/b.bin'), 'b');
    expect(await fs.list('/data')).toEqual([
      { name: 'a.txt', mode: 0o100000 },
      { name: 'sub', mode: 0o040000 },
    ]);
    // An S3 listing carries no attributes (the local store's does): a store whose listing drops them.
    const bare = new Proxy(store, {
      get: (target, name) => {
        if (name === 'list') {
          return async (...args: Parameters<ObjectStore['list']>) => {
            const page = await target.list(...args);
            return { ...page, objects: page.objects.map(({ meta: _meta, ...info }) => info) };
          };
        }
        const value: unknown = Reflect.get(target, name, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const heads = new Namespace(bare, { metadataTtlMs: 60_000, metadataFromHead: true });
    fs.setRoutes(MountRoutes.single(heads));
    expect(await fs.list('/data')).toEqual([
      { name: 'a.txt', mode: 0 },
      { name: 'sub', mode: 0o040000 },
    ]);
  });

  it('routes several links and shows the folders above them', async () => {
    const other = new Namespace(store, { metadataTtlMs: 60_000 });
    fs.setRoutes(new MountRoutes([
      { path: '/datasets/one', name: 'one', namespace },
      { path: '/models', name: 'models', namespace: other },
    ]));
    expect(await fs.readdir('/')).toEqual(['datasets', 'models']);
    expect(await fs.readdir('/datasets')).toEqual(['one']);
    expect(await fs.readdir('/datasets/one')).toEqual(['data']);
    expect((await fs.getattr('/models/data/a.txt')).size).toBe(11);
    await expect(fs.getattr('/elsewhere')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });
  });
});

describe('Filesystem writes (no mount)', () => {
  let dir: string;
  let store: ObjectStore;
  let writes: WritePath;
  let fs: Filesystem;

  beforeEach(async () => {
    dir = await tempDir('fs-writes');
    await mkdir(join(dir, 'store'));
    store = openStore(`file://${join(dir, 'store')}`, {});
    writes = new WritePath({ stagingDir: join(dir, 'staging'), stagingLimitBytes: 64 * 1024 * 1024, closeMode: 'async', logger: silentLogger() }, () => store);
    await writes.recover();
    const namespace = new Namespace(store, { metadataTtlMs: 60_000 });
    fs = new Filesystem({ routes: new MountRoutes([{ path: '/', name: 'root', namespace, store, storeId: store.url }]), reader: new DirectReader(store), logger: silentLogger(), writes });
  });
  afterEach(async () => {
    await writes.close();
    await store.close();
    await cleanupDir(dir);
  });

  it('keeps writing through a handle after a FLUSH from a dup()ed descriptor, and fsync waits for the store', async () => {
    // The kernel's view of: fd = open(O_CREAT); fd2 = dup(fd); write(fd, "first "); close(fd); write(fd2, ...); close(fd2).
    const h = await fs.create('/dup.txt');
    expect(await fs.write(h, 0, Buffer.from('first '))).toBe(6);
    await fs.flush(h); // close(fd): the file so far is finalised
    await fs.fsync(h); // fsync(fd2) before writing again: the store has the first version
    expect((await store.getRange('dup.txt', 0, 100)).body.toString()).toBe('first ');
    expect(await fs.write(h, 6, Buffer.from('second'))).toBe(6);
    await fs.truncate('/dup.txt', 13, h);
    expect(await fs.write(h, 13, Buffer.from('!'))).toBe(1);
    await fs.flush(h);
    await fs.release(h);
    await writes.flush();
    const body = (await store.getRange('dup.txt', 0, 100)).body;
    expect(body).toEqual(Buffer.concat([Buffer.from('first second'), Buffer.alloc(1), Buffer.from('!')]));
    expect(fs.openHandles).toBe(0);
    expect(writes.uploads()).toEqual([]);
  });

  it('uploads nothing more when a flushed handle is only released', async () => {
    const h = await fs.create('/once.txt');
    await fs.write(h, 0, Buffer.from('only'));
    await fs.flush(h);
    await fs.release(h);
    await writes.flush();
    expect((await store.getRange('once.txt', 0, 100)).body.toString()).toBe('only');
    expect(writes.uploads()).toEqual([]);
  });
});

describe('Filesystem renames between links', () => {
  it('answers FS_CROSS_DEVICE (EXDEV), so mv copies instead', async () => {
    const dir = await tempDir('fs-links');
    await mkdir(join(dir, 'a'));
    await mkdir(join(dir, 'b'));
    await writeFile(join(dir, 'a/f'), 'x');
    const stores = [openStore(`file://${join(dir, 'a')}`, {}), openStore(`file://${join(dir, 'b')}`, {})];
    const writes = new WritePath({ stagingDir: join(dir, 'staging'), stagingLimitBytes: 1024 * 1024, closeMode: 'async', logger: silentLogger() }, (id) => stores.find((s) => s.url === id)!);
    await writes.recover();
    const links = stores.map((store, i) => ({ path: `/${'ab'[i]}`, name: 'ab'[i]!, namespace: new Namespace(store, { metadataTtlMs: 60_000 }), store, storeId: store.url }));
    const fs = new Filesystem({ routes: new MountRoutes(links), reader: new DirectReader(stores[0]!), logger: silentLogger(), writes });
    try {
      await expect(fs.rename('/a/f', '/b/f')).rejects.toMatchObject({ code: 'FS_CROSS_DEVICE' });
      expect((await fs.getattr('/a/f')).size).toBe(1);
    } finally {
      await writes.close();
      for (const store of stores) await store.close();
      await cleanupDir(dir);
    }
  });
});

describe('versionedMtime', () => {
  it('keeps the second and changes the milliseconds with the ETag', () => {
    const t = new Date('2026-01-02T03:04:05.000Z');
    const a = versionedMtime(t, 'etag-a');
    expect(Math.floor(a.getTime() / 1000)).toBe(Math.floor(t.getTime() / 1000));
    expect(versionedMtime(t, 'etag-a').getTime()).toBe(a.getTime());
    const distinct = new Set(['e1', 'e2', 'e3', 'e4', 'e5'].map((e) => versionedMtime(t, e).getTime()));
    expect(distinct.size).toBeGreaterThan(1);
  });
});
