import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ListOptions, ListPage, ObjectStore } from '../store/index.js';
import { StoreError, type StoreErrorCode } from '../store/index.js';
import { inParallel } from '../async/in-parallel.js';

/** S3's smallest part size for every part but the last. */
const MIN_PART = 5 * 1024 * 1024;
/** More keys than two full pages of 1,000, so a listing needs three requests. */
const MANY_FILES = 2_000;
const MANY_FOLDERS = 500;
/** Parallel seeds: enough to keep a loopback gateway busy, few enough for a 2-core box. */
const SEED_CONCURRENCY = 16;
/** Random ranges read from one object; covers short, long, inside and past-the-end ranges. */
const RANDOM_RANGES = 60;

/**
 * How the suite drives one backend. Every test gets a fresh, empty store.
 * - `seed` writes an object behind the store's back (the raw S3 client, or the file
 *   system), as another writer would.
 * - `openPrefixed` opens a second store on the same bucket (or directory) rooted at
 *   `prefix` (ending in `/`), as `s3://bucket/prefix` or `file:///dir/prefix` would.
 */
export interface ObjectStoreHarness {
  readonly store: ObjectStore;
  seed(key: string, body: Buffer): Promise<void>;
  openPrefixed(prefix: string): ObjectStore;
  cleanup(): Promise<void>;
}

/** Resolves with the StoreError code `promise` rejects with; fails the test when it resolves. */
export async function storeErrorCode(promise: Promise<unknown>): Promise<StoreErrorCode> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    return (err as StoreError).code;
  }
  throw new Error('expected a StoreError, the call succeeded');
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Every page of a listing, following tokens. */
async function listAll(store: ObjectStore, prefix: string, options: ListOptions = {}): Promise<ListPage[]> {
  const pages: ListPage[] = [];
  let token: string | undefined;
  do {
    const page = await store.list(prefix, { ...options, ...(token ? { token } : {}) });
    pages.push(page);
    token = page.nextToken;
  } while (token);
  return pages;
}


/**
 * The behaviour every ObjectStore backend shares (the contract in store/object-store.ts),
 * run against each backend by its own test file.
 */
export function describeObjectStore(name: string, makeStore: () => Promise<ObjectStoreHarness>): void {
  describe(`${name} ObjectStore conformance`, () => {
    let harness: ObjectStoreHarness;
    let store: ObjectStore;
    const opened: ObjectStore[] = [];

    beforeEach(async () => {
      harness = await makeStore();
      store = harness.store;
    });

    afterEach(async () => {
      for (const other of opened.splice(0)) await other.close();
      await store.close();
      await harness.cleanup();
    });

    it('passes check() and answers head: undefined when missing, metadata when present', async () => {
      await store.check();
      expect(await store.head('missing.bin')).toBeUndefined();
      expect(await store.head('no/such/folder/file')).toBeUndefined();
      const body = randomBytes(1234);
      const before = Date.now();
      const { etag } = await store.put('dir/present.bin', body);
      const info = await store.head('dir/present.bin');
      expect(info).toBeDefined();
      expect(info!.key).toBe('dir/present.bin');
      expect(info!.size).toBe(1234);
      expect(info!.etag).toBe(etag);
      expect(info!.etag).toMatch(/^[^"]+$/);
      // Clocks of a store and this process may differ by a little; a minute is generous.
      expect(Math.abs(info!.lastModified.getTime() - before)).toBeLessThan(60_000);
      expect(await store.head('dir/present')).toBeUndefined();
      expect(await store.head('dir/present.bin.x')).toBeUndefined();
    });

    it('reads byte-exact ranges at random offsets and lengths, cut at the end', async () => {
      // An odd size so that no range lines up with a power of two by accident.
      const body = randomBytes(1024 * 1024 + 17);
      const { etag } = await store.put('ranges.bin', body);
      const ranges: Array<[number, number]> = [
        [0, body.length],
        [0, 1],
        [body.length - 1, 1],
        [body.length - 100, 4096], // runs past the end
        [0, body.length * 2],
        [body.length, 10], // start === size: empty
        [12345, 0], // zero length
      ];
      for (let i = 0; i < RANDOM_RANGES; i++) {
        const start = Math.floor(Math.random() * body.length);
        ranges.push([start, 1 + Math.floor(Math.random() * 256 * 1024)]);
      }
      for (const [start, length] of ranges) {
        const got = await store.getRange('ranges.bin', start, length);
        const expected = body.subarray(start, Math.min(start + length, body.length));
        expect(got.body.length, `range ${start}+${length}`).toBe(expected.length);
        expect(got.body.equals(expected), `range ${start}+${length}`).toBe(true);
        expect(got.size).toBe(body.length);
        expect(got.etag).toBe(etag);
      }
      expect(await storeErrorCode(store.getRange('ranges.bin', body.length + 1, 10))).toBe('STORE_INVALID_RANGE');
      expect(await storeErrorCode(store.getRange('missing.bin', 0, 10))).toBe('STORE_NOT_FOUND');
      expect(await storeErrorCode(store.getRange('missing.bin', 0, 0))).toBe('STORE_NOT_FOUND');
    });

    it('stores and reads empty objects', async () => {
      const { etag } = await store.put('empty', Buffer.alloc(0));
      expect((await store.head('empty'))?.size).toBe(0);
      for (const length of [0, 1, 4096]) {
        const got = await store.getRange('empty', 0, length, { ifMatch: etag });
        expect(got.body.length).toBe(0);
        expect(got.size).toBe(0);
        expect(got.etag).toBe(etag);
      }
      expect(await storeErrorCode(store.getRange('empty', 1, 1))).toBe('STORE_INVALID_RANGE');
      expect(await storeErrorCode(store.getRange('empty', 0, 1, { ifMatch: 'not-the-etag' }))).toBe('STORE_PRECONDITION_FAILED');
    });

    it('refuses a read whose If-Match differs, and the ETag changes with the content', async () => {
      const first = randomBytes(4096);
      const { etag } = await store.put('v.bin', first);
      expect((await store.getRange('v.bin', 10, 100, { ifMatch: etag })).body.equals(first.subarray(10, 110))).toBe(true);
      expect(await storeErrorCode(store.getRange('v.bin', 10, 100, { ifMatch: `${etag}x` }))).toBe('STORE_PRECONDITION_FAILED');

      // Another writer replaces the object with other bytes.
      const second = randomBytes(5000);
      await harness.seed('v.bin', second);
      const changed = await store.head('v.bin');
      expect(changed?.etag).toBeDefined();
      expect(changed!.etag).not.toBe(etag);
      for (const [start, length] of [[0, 100], [0, 0], [4096, 10]] as const) {
        expect(await storeErrorCode(store.getRange('v.bin', start, length, { ifMatch: etag }))).toBe('STORE_PRECONDITION_FAILED');
      }
      const fresh = await store.getRange('v.bin', 0, 10_000, { ifMatch: changed!.etag });
      expect(fresh.body.equals(second)).toBe(true);

      // The store's own overwrite with the same length changes the ETag too.
      const third = randomBytes(5000);
      const { etag: thirdEtag } = await store.put('v.bin', third);
      expect(thirdEtag).not.toBe(changed!.etag);
      expect(await storeErrorCode(store.getRange('v.bin', 0, 10, { ifMatch: changed!.etag }))).toBe('STORE_PRECONDITION_FAILED');
    });

    it('answers the same bytes when told the object size, also when that size is out of date', async () => {
      const first = randomBytes(4096);
      const { etag } = await store.put('sized.bin', first);
      const whole = await store.getRange('sized.bin', 0, first.length, { ifMatch: etag, objectSize: first.length });
      expect(whole.body.equals(first)).toBe(true);
      expect(whole.size).toBe(first.length);
      expect(whole.etag).toBe(etag);
      expect((await store.getRange('sized.bin', 100, 50, { objectSize: first.length })).body.equals(first.subarray(100, 150))).toBe(true);

      // Replaced by a larger object: a caller that still believes the old size gets exactly the range it asked for.
      const second = randomBytes(6000);
      await harness.seed('sized.bin', second);
      const stale = await store.getRange('sized.bin', 0, first.length, { objectSize: first.length });
      expect(stale.body.equals(second.subarray(0, first.length))).toBe(true);
      expect(stale.size).toBe(second.length);
      expect(await storeErrorCode(store.getRange('sized.bin', 0, first.length, { ifMatch: etag, objectSize: first.length }))).toBe('STORE_PRECONDITION_FAILED');
    });

    it('lists one level with a delimiter, folders holding only folders included', async () => {
      const keys = ['train/class_a/x.jpg', 'train/class_a/y.jpg', 'train/class_b/z.jpg', 'train/readme.txt', 'top.txt', 'trainer.txt'];
      for (const key of keys) await store.put(key, Buffer.from(key));

      const root = await store.list('', { delimiter: '/' });
      expect(root.objects.map((o) => o.key)).toEqual(['top.txt', 'trainer.txt']);
      expect(root.prefixes).toEqual(['train/']);
      expect(root.nextToken).toBeUndefined();
      const top = root.objects[0]!;
      expect(top.size).toBe('top.txt'.length);
      expect(top.etag).toBe((await store.head('top.txt'))!.etag);

      const train = await store.list('train/', { delimiter: '/' });
      // Folder markers (keys ending in /) are the namespace's business; only files count here.
      expect(train.objects.filter((o) => !o.key.endsWith('/')).map((o) => o.key)).toEqual(['train/readme.txt']);
      expect(train.prefixes).toEqual(['train/class_a/', 'train/class_b/']);

      const classA = await store.list('train/class_a/', { delimiter: '/' });
      expect(classA.objects.filter((o) => !o.key.endsWith('/')).map((o) => o.key)).toEqual(['train/class_a/x.jpg', 'train/class_a/y.jpg']);
      expect(classA.prefixes).toEqual([]);

      // A prefix that ends inside a name groups at the next delimiter.
      const partial = await store.list('train', { delimiter: '/' });
      expect(partial.objects.map((o) => o.key)).toEqual(['trainer.txt']);
      expect(partial.prefixes).toEqual(['train/']);
      const partialInner = await store.list('train/class_', { delimiter: '/' });
      expect(partialInner.prefixes).toEqual(['train/class_a/', 'train/class_b/']);

      const missing = await store.list('nothing/', { delimiter: '/' });
      expect(missing).toEqual({ objects: [], prefixes: [] });
    });

    it('lists recursively without a delimiter, in byte order', async () => {
      const keys = ['b/2', 'a/1', 'a-b', 'a/z/deep/3', 'a.c', 'a0', 'ab/x'];
      for (const key of keys) await store.put(key, Buffer.from(key));
      const all = await store.list('');
      expect(all.prefixes).toEqual([]);
      expect(all.objects.map((o) => o.key)).toEqual([...keys].sort(byteOrder));
      const underA = await store.list('a/');
      expect(underA.objects.map((o) => o.key)).toEqual(['a/1', 'a/z/deep/3']);
      const startingA = await store.list('a');
      expect(startingA.objects.map((o) => o.key)).toEqual(['a-b', 'a.c', 'a/1', 'a/z/deep/3', 'a0', 'ab/x']);
      expect((await store.list('zzz')).objects).toEqual([]);
    });

    it('paginates 2,500 entries by 1,000, every entry once and in order', async () => {
      const files = Array.from({ length: MANY_FILES }, (_, i) => `many/f${i}`);
      const nested = Array.from({ length: MANY_FOLDERS }, (_, i) => `many/sub${i}/leaf`);
      await inParallel([...files, ...nested], SEED_CONCURRENCY, (key) => harness.seed(key, Buffer.from(key)));

      const recursive = await listAll(store, 'many/', { maxKeys: 1000 });
      expect(recursive.map((p) => p.objects.length)).toEqual([1000, 1000, 500]);
      expect(recursive.slice(0, -1).every((p) => p.nextToken !== undefined)).toBe(true);
      expect(recursive.flatMap((p) => p.objects.map((o) => o.key))).toEqual([...files, ...nested].sort(byteOrder));

      const grouped = await listAll(store, 'many/', { delimiter: '/', maxKeys: 1000 });
      // A backend may report the folder's own marker `many/` first (the local store does).
      expect(grouped.length).toBe(3);
      expect(grouped.every((p) => p.objects.length + p.prefixes.length <= 1000)).toBe(true);
      expect(grouped.flatMap((p) => p.objects.map((o) => o.key)).filter((k) => k !== 'many/')).toEqual([...files].sort(byteOrder));
      expect(grouped.flatMap((p) => p.prefixes)).toEqual(Array.from({ length: MANY_FOLDERS }, (_, i) => `many/sub${i}/`).sort(byteOrder));

      // Small pages walk the same keys.
      const small = await listAll(store, 'many/sub1', { maxKeys: 7 });
      const expectedSmall = nested.filter((k) => k.startsWith('many/sub1')).sort(byteOrder);
      expect(small.flatMap((p) => p.objects.map((o) => o.key))).toEqual(expectedSmall);
      expect(small.every((p) => p.objects.length <= 7)).toBe(true);
    });

    it('keeps unicode, space and + in keys exactly', async () => {
      const keys = ['weird/ü ñ 日本語.bin', 'weird/a+b c.txt', 'weird/100% done', 'weird/emoji 🎉/x', 'weird/q?x=1&y#z'];
      for (const key of keys) await store.put(key, Buffer.from(`body of ${key}`));
      for (const key of keys) {
        expect((await store.head(key))?.key).toBe(key);
        expect((await store.getRange(key, 0, 1000)).body.toString()).toBe(`body of ${key}`);
      }
      expect(await store.head('weird/a b c.txt')).toBeUndefined(); // + is not a space
      const listed = await store.list('weird/', { delimiter: '/' });
      expect(listed.objects.map((o) => o.key).filter((k) => !k.endsWith('/'))).toEqual(keys.filter((k) => !k.includes('🎉')).sort(byteOrder));
      expect(listed.prefixes).toEqual(['weird/emoji 🎉/']);
      await store.copy('weird/a+b c.txt', 'weird/copy ü+.txt');
      expect((await store.getRange('weird/copy ü+.txt', 0, 1000)).body.toString()).toBe('body of weird/a+b c.txt');
      await store.delete('weird/a+b c.txt');
      expect(await store.head('weird/a+b c.txt')).toBeUndefined();
    });

    it('deletes idempotently', async () => {
      await store.put('d/gone', Buffer.from('x'));
      await store.put('d/stays', Buffer.from('y'));
      await store.delete('d/gone');
      expect(await store.head('d/gone')).toBeUndefined();
      await store.delete('d/gone');
      await store.delete('never/was');
      expect((await store.head('d/stays'))?.size).toBe(1);
      expect((await store.list('d/')).objects.map((o) => o.key)).toEqual(['d/stays']);
    });

    it('copies objects, leaving the source as it was', async () => {
      const body = randomBytes(300_000);
      const { etag: sourceEtag } = await store.put('src/a.bin', body);
      const { etag } = await store.copy('src/a.bin', 'dst/b.bin');
      expect((await store.head('dst/b.bin'))?.etag).toBe(etag);
      expect((await store.getRange('dst/b.bin', 0, body.length)).body.equals(body)).toBe(true);
      expect((await store.head('src/a.bin'))?.etag).toBe(sourceEtag);
      // Copying over an existing object replaces it.
      await store.put('dst/c.bin', Buffer.from('old'));
      await store.copy('src/a.bin', 'dst/c.bin');
      expect((await store.head('dst/c.bin'))?.size).toBe(body.length);
      expect(await storeErrorCode(store.copy('src/missing.bin', 'dst/x.bin'))).toBe('STORE_NOT_FOUND');
      expect(await store.head('dst/x.bin')).toBeUndefined();
    });

    it('keeps POSIX attributes (s3fs names) through put, copy, multipart and a metadata-only copy', async () => {
      // Any owner as root; as another user the local store can only give files that user's own
      // ids (chown(2) refuses others), which it must keep all the same.
      const root = process.getuid?.() === 0;
      const owner = root ? { uid: 1234, gid: 4321 } : { uid: process.getuid!(), gid: process.getgid!() };
      const meta = { mode: 0o100640, ...owner, mtime: 1_600_000_000 };
      await store.put('attrs/a.txt', Buffer.from('abc'), { meta });
      const stored = (await store.head('attrs/a.txt'))!;
      expect(stored.meta).toMatchObject({ mode: meta.mode, uid: meta.uid, gid: meta.gid });
      // A backend whose objects have a modification time of their own (a file) reports it there.
      expect(stored.meta?.mtime ?? stored.lastModified.getTime() / 1000).toBe(meta.mtime);
      await store.copy('attrs/a.txt', 'attrs/b.txt');
      expect((await store.head('attrs/b.txt'))?.meta).toMatchObject({ mode: meta.mode, uid: meta.uid, gid: meta.gid });
      await store.copy('attrs/a.txt', 'attrs/a.txt', { meta: { ...meta, mode: 0o100600 } });
      expect((await store.head('attrs/a.txt'))?.meta).toMatchObject({ mode: 0o100600, uid: owner.uid });
      expect((await store.getRange('attrs/a.txt', 0, 3)).body.toString()).toBe('abc');
      const upload = await store.createMultipart('attrs/m.bin', { meta: { mode: 0o100700 } });
      const part = await store.uploadPart(upload, 1, Buffer.from('parts'));
      await store.completeMultipart(upload, [part]);
      expect((await store.head('attrs/m.bin'))?.meta?.mode).toBe(0o100700);
      // A symbolic link is an object whose bytes are its target.
      await store.put('attrs/latest', Buffer.from('a.txt'), { meta: { mode: 0o120777 } });
      const link = await store.head('attrs/latest');
      expect(link?.meta?.mode).toBe(0o120777);
      expect(link?.size).toBe(5);
      expect((await store.getRange('attrs/latest', 0, 5)).body.toString()).toBe('a.txt');
      await store.copy('attrs/latest', 'attrs/newest');
      expect((await store.head('attrs/newest'))?.meta?.mode).toBe(0o120777);
    });

    it('writes an object from a stream', async () => {
      // More than one S3 part, so backends that split streams do.
      const chunks = Array.from({ length: 13 }, () => randomBytes(512 * 1024));
      const { etag } = await store.put('streamed.bin', Readable.from(chunks));
      const whole = Buffer.concat(chunks);
      const info = await store.head('streamed.bin');
      expect(info?.size).toBe(whole.length);
      expect(info?.etag).toBe(etag);
      expect((await store.getRange('streamed.bin', 0, whole.length)).body.equals(whole)).toBe(true);
    });

    it('uploads in parts: listParts, complete, and abort', async () => {
      const parts = [randomBytes(MIN_PART), randomBytes(MIN_PART), randomBytes(1234)];
      const upload = await store.createMultipart('big/model.bin');
      expect(upload.key).toBe('big/model.bin');
      expect(upload.uploadId).not.toBe('');
      // Out of order, as parallel uploaders finish.
      const third = await store.uploadPart(upload, 3, parts[2]!);
      const first = await store.uploadPart(upload, 1, parts[0]!);
      const second = await store.uploadPart(upload, 2, parts[1]!);
      expect([first.size, second.size, third.size]).toEqual([MIN_PART, MIN_PART, 1234]);
      const listed = await store.listParts(upload);
      expect(listed.map((p) => [p.partNumber, p.size, p.etag])).toEqual([
        [1, MIN_PART, first.etag],
        [2, MIN_PART, second.etag],
        [3, 1234, third.etag],
      ]);
      expect(await store.head('big/model.bin')).toBeUndefined(); // nothing visible before complete
      const { etag } = await store.completeMultipart(upload, [third, first, second]);
      const whole = Buffer.concat(parts);
      const info = await store.head('big/model.bin');
      expect(info?.size).toBe(whole.length);
      expect(info?.etag).toBe(etag);
      expect((await store.getRange('big/model.bin', 0, whole.length, { ifMatch: etag })).body.equals(whole)).toBe(true);
      const across = await store.getRange('big/model.bin', MIN_PART - 10, 20);
      expect(across.body.equals(whole.subarray(MIN_PART - 10, MIN_PART + 10))).toBe(true);
      expect((await store.list('big/')).objects.map((o) => o.key)).toEqual(['big/model.bin']);

      const dropped = await store.createMultipart('big/dropped.bin');
      await store.uploadPart(dropped, 1, randomBytes(1000));
      await store.abortMultipart(dropped);
      expect(await storeErrorCode(store.listParts(dropped))).toBe('STORE_NOT_FOUND');
      expect(await storeErrorCode(store.uploadPart(dropped, 2, randomBytes(10)))).toBe('STORE_NOT_FOUND');
      await store.abortMultipart(dropped); // already gone: still fine
      expect(await store.head('big/dropped.bin')).toBeUndefined();
      expect((await store.list('')).objects.map((o) => o.key)).toEqual(['big/model.bin']);
    });

    it('lists the multipart uploads in progress of exactly one key', async () => {
      const before = Date.now();
      const first = await store.createMultipart('runs/ckpt.pt');
      const second = await store.createMultipart('runs/ckpt.pt');
      const longer = await store.createMultipart('runs/ckpt.pt.tmp');
      const listed = await store.listMultipart('runs/ckpt.pt');
      expect(listed.map((m) => m.upload.uploadId).sort()).toEqual([first.uploadId, second.uploadId].sort());
      expect(listed.every((m) => m.upload.key === 'runs/ckpt.pt')).toBe(true);
      // Store clocks are to the second (S3) and may run a little apart from ours.
      for (const m of listed) expect(Math.abs(m.initiated.getTime() - before)).toBeLessThan(60_000);
      await store.abortMultipart(first);
      expect((await store.listMultipart('runs/ckpt.pt')).map((m) => m.upload.uploadId)).toEqual([second.uploadId]);
      await store.abortMultipart(second);
      await store.abortMultipart(longer);
      expect(await store.listMultipart('runs/ckpt.pt')).toEqual([]);
      expect(await store.listMultipart('never/written')).toEqual([]);
    });

    it('treats a key ending in / as a folder marker, reported as-is', async () => {
      await store.put('marked/', Buffer.alloc(0));
      const marker = await store.head('marked/');
      expect(marker?.key).toBe('marked/');
      expect(marker?.size).toBe(0);
      expect((await store.list('', { delimiter: '/' })).prefixes).toEqual(['marked/']);
      const inside = await store.list('marked/', { delimiter: '/' });
      expect(inside.objects.map((o) => o.key)).toEqual(['marked/']);
      expect(inside.prefixes).toEqual([]);
      expect((await store.getRange('marked/', 0, 10)).body.length).toBe(0);
    });

    it('roots a prefixed store at its prefix and shows nothing outside it', async () => {
      await store.put('root-a/inner/x', Buffer.from('x'));
      await store.put('root-a/z', Buffer.from('z'));
      await store.put('root-a-sibling/y', Buffer.from('y'));
      await store.put('outside', Buffer.from('o'));
      const rooted = harness.openPrefixed('root-a/');
      opened.push(rooted);
      await rooted.check();
      expect((await rooted.head('inner/x'))?.key).toBe('inner/x');
      expect(await rooted.head('root-a/z')).toBeUndefined();
      expect(await rooted.head('outside')).toBeUndefined();
      expect((await rooted.list('')).objects.map((o) => o.key)).toEqual(['inner/x', 'z']);
      const level = await rooted.list('', { delimiter: '/' });
      expect(level.objects.map((o) => o.key)).toEqual(['z']);
      expect(level.prefixes).toEqual(['inner/']);
      expect((await rooted.getRange('z', 0, 10)).body.toString()).toBe('z');
      await rooted.put('new', Buffer.from('n'));
      expect((await store.head('root-a/new'))?.size).toBe(1);
      await rooted.copy('z', 'inner/z2');
      expect((await store.getRange('root-a/inner/z2', 0, 10)).body.toString()).toBe('z');
      const upload = await rooted.createMultipart('parts');
      const part = await rooted.uploadPart(upload, 1, Buffer.from('one part'));
      await rooted.completeMultipart(upload, [part]);
      expect((await store.getRange('root-a/parts', 0, 100)).body.toString()).toBe('one part');
      await rooted.delete('z');
      expect(await store.head('root-a/z')).toBeUndefined();
      expect((await store.head('root-a-sibling/y'))?.size).toBe(1);
    });
  });
}
