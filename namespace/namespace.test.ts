import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { openStore, type ObjectStore } from '../store/index.js';
import { cleanupDir, tempDir } from '../test/fixtures/strata-process.js';
import { Namespace } from './namespace.js';

describe('Namespace over a local-directory store', () => {
  let dir: string;
  let store: ObjectStore;
  let now: number;
  let ns: Namespace;

  beforeEach(async () => {
    dir = await tempDir('ns');
    store = openStore(`file://${dir}`, {});
    now = 1_000_000;
    ns = new Namespace(store, { metadataTtlMs: 1000, now: () => now });
  });
  afterEach(async () => {
    await store.close();
    await cleanupDir(dir);
  });

  it('infers folders from keys, including folders that hold only folders', async () => {
    await mkdir(join(dir, 'train/class_a'), { recursive: true });
    await writeFile(join(dir, 'train/class_a/x.bin'), 'x');
    await writeFile(join(dir, 'top.txt'), 'top');
    expect(await ns.list('/')).toEqual([
      { name: 'top.txt', entry: expect.objectContaining({ kind: 'file' }) },
      { name: 'train', entry: { kind: 'dir' } },
    ]);
    expect((await ns.list('/train')).map((e) => e.name)).toEqual(['class_a']);
    expect(await ns.lookup('/train')).toEqual({ kind: 'dir' });
    const file = await ns.lookup('/train/class_a/x.bin');
    expect(file.kind === 'file' && file.ref.size).toBe(1);
  });

  it('after the TTL, looks names of a listed folder up with one new listing, not a HEAD each', async () => {
    await mkdir(join(dir, 'set'), { recursive: true });
    for (let i = 0; i < 5; i++) await writeFile(join(dir, `set/f${i}`), `v1-${i}`);
    const calls = { head: 0, list: 0 };
    const counted: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
      head: (key: string) => (calls.head++, store.head(key)),
      list: (prefix: string, options?: Parameters<ObjectStore['list']>[1]) => (calls.list++, store.list(prefix, options)),
    });
    const counting = new Namespace(counted, { metadataTtlMs: 1000, now: () => now });
    await counting.list('/set');
    Object.assign(calls, { head: 0, list: 0 });
    now += 1001;
    await writeFile(join(dir, 'set/f0'), 'v2-0, longer');
    const sizes = await Promise.all([0, 1, 2, 3, 4].map(async (i) => ((await counting.lookup(`/set/f${i}`)) as { ref: { size: number } }).ref.size));
    expect(sizes).toEqual([12, 4, 4, 4, 4]);
    expect(calls).toEqual({ head: 0, list: 1 });
    await expect(counting.lookup('/set/gone')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });
  });

  it('lists ahead of a walk: the first subfolders of a listed folder and the folders after it', async () => {
    for (const c of ['a', 'b', 'c', 'd', 'e']) {
      await mkdir(join(dir, `set/${c}/inner`), { recursive: true });
      await writeFile(join(dir, `set/${c}/f.bin`), c);
      await writeFile(join(dir, `set/${c}/inner/g.bin`), c);
    }
    await writeFile(join(dir, 'set/a0-file'), 'not a folder');
    const listed: string[] = [];
    const counted: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
      head: (key: string) => store.head(key),
      list: (prefix: string, options?: Parameters<ObjectStore['list']>[1]) => (listed.push(prefix), store.list(prefix, options)),
    });
    const walker = new Namespace(counted, { metadataTtlMs: 60_000, now: () => now });
    await walker.list('/set');
    await vi.waitFor(() => expect(listed).toEqual(expect.arrayContaining(['set/a/', 'set/b/'])));
    listed.length = 0;
    // The walk's next steps are listed already: a and b answer without a request; listing a
    // starts c (after a in set's listing, b being listed) and a's own subfolder.
    expect((await walker.list('/set/a')).map((e) => e.name)).toEqual(['f.bin', 'inner']);
    await vi.waitFor(() => expect(listed.sort()).toEqual(['set/a/inner/', 'set/c/']));
    listed.length = 0;
    expect((await walker.list('/set/b')).map((e) => e.name)).toEqual(['f.bin', 'inner']);
    await vi.waitFor(() => expect(listed.sort()).toEqual(['set/b/inner/', 'set/d/']));
    listed.length = 0;
    // Known listings are not asked for again; the last folder has none after it.
    await walker.list('/set/e');
    await vi.waitFor(() => expect(listed.sort()).toEqual(['set/e/', 'set/e/inner/']));
    expect(await walker.list('/set/e/inner')).toMatchObject([{ name: 'g.bin' }]);
    expect(listed).toHaveLength(2);
  });

  it('answers FS_NOT_FOUND and FS_NOT_A_DIRECTORY', async () => {
    await writeFile(join(dir, 'f'), 'f');
    await expect(ns.lookup('/nope')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });
    await expect(ns.list('/f')).rejects.toMatchObject({ code: 'FS_NOT_A_DIRECTORY' });
  });

  it('trusts metadata, positive and negative, for the TTL and then asks again', async () => {
    await expect(ns.lookup('/later.txt')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });
    await writeFile(join(dir, 'later.txt'), 'now here');
    await expect(ns.lookup('/later.txt')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' }); // negative entry still fresh
    now += 1001;
    const entry = await ns.lookup('/later.txt');
    expect(entry.kind === 'file' && entry.ref.size).toBe(8);
    const firstEtag = entry.kind === 'file' ? entry.ref.etag : '';
    await rm(join(dir, 'later.txt'));
    await writeFile(join(dir, 'later.txt'), 'changed, longer');
    const cached = await ns.lookup('/later.txt');
    expect(cached.kind === 'file' && cached.ref.etag).toBe(firstEtag);
    now += 1001;
    const fresh = await ns.lookup('/later.txt');
    expect(fresh.kind === 'file' && fresh.ref.etag).not.toBe(firstEtag);
    expect(fresh.kind === 'file' && fresh.ref.size).toBe(15);
  });

  it('answers lookups from a fresh listing of the parent without asking the store', async () => {
    await writeFile(join(dir, 'a'), 'a');
    await ns.list('/');
    await writeFile(join(dir, 'b'), 'b');
    await expect(ns.lookup('/b')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });
    ns.invalidate('/b');
    expect((await ns.lookup('/b')).kind).toBe('file');
  });

  it('runs the store requests of lookups and listings as foreground work, and the walk of a prefetch not', async () => {
    await mkdir(join(dir, 'set/a'), { recursive: true });
    await writeFile(join(dir, 'set/a/1.bin'), '1');
    await writeFile(join(dir, 'set/a/2.bin'), '2');
    let marked = 0;
    const marking = new Namespace(store, { metadataTtlMs: 1000, now: () => now, foreground: (work) => (marked++, work()) });
    expect((await marking.lookup('/set/a/1.bin')).kind).toBe('file');
    expect(marked).toBe(1);
    expect((await marking.list('/set/a')).map((e) => e.name)).toEqual(['1.bin', '2.bin']);
    const afterList = marked;
    expect(afterList).toBeGreaterThan(1);
    expect(await marking.lookup('/set/a/2.bin')).toMatchObject({ kind: 'file' }); // from the listing: no store request
    const walked: string[] = [];
    for await (const file of marking.walkFiles('/set')) walked.push(file.path);
    expect(walked.sort()).toEqual(['/set/a/1.bin', '/set/a/2.bin']);
    expect(marked).toBe(afterList);
  });

  it('coalesces concurrent lookups of one path', async () => {
    await writeFile(join(dir, 'same'), 'x');
    let heads = 0;
    const counting = new Proxy(store, {
      get: (target, name) => (name === 'head' ? (key: string) => (heads++, target.head(key)) : (target[name as keyof ObjectStore] as Function).bind?.(target) ?? target[name as keyof ObjectStore]),
    });
    const nsCounting = new Namespace(counting, { metadataTtlMs: 1000, now: () => now });
    await Promise.all(Array.from({ length: 20 }, () => nsCounting.lookup('/same')));
    expect(heads).toBe(1);
  });
  it('keeps an answer that a write elsewhere overlapped, and drops one whose own path was invalidated meanwhile', async () => {
    await mkdir(join(dir, 'data'), { recursive: true });
    await writeFile(join(dir, 'data/a.bin'), 'a');
    await writeFile(join(dir, 'data/b.bin'), 'b');
    let gating = false;
    // Set by the gated list, called by the test: a holder, since TypeScript cannot see a closure assign it.
    const held: { gate: (() => void) | undefined } = { gate: undefined };
    const calls = { list: 0 };
    const gatedList = async (prefix: string, options?: Parameters<ObjectStore['list']>[1]) => {
      calls.list++;
      if (gating && held.gate === undefined) await new Promise<void>((resolve) => (held.gate = resolve));
      return store.list(prefix, options);
    };
    const gated = new Proxy(store, {
      get: (target, name) => (name === 'list' ? gatedList : (target[name as keyof ObjectStore] as Function).bind?.(target) ?? target[name as keyof ObjectStore]),
    });
    const gateReached = async (): Promise<() => void> => {
      while (held.gate === undefined) await new Promise((resolve) => setTimeout(resolve, 1));
      return held.gate;
    };
    const nsGated = new Namespace(gated, { metadataTtlMs: 60_000, now: () => now });
    await nsGated.lookup('/data');
    gating = true;
    // A write in another folder lands while /data is being listed: the listing is still kept.
    const listing = nsGated.list('/data');
    const release = await gateReached();
    nsGated.invalidate('/other/new.bin');
    release();
    expect((await listing).map((e) => e.name)).toEqual(['a.bin', 'b.bin']);
    const before = calls.list;
    expect((await nsGated.list('/data')).map((e) => e.name)).toEqual(['a.bin', 'b.bin']);
    expect(calls.list).toBe(before);
    // A write in /data itself while it is listed: answered, but not kept (the next list asks again).
    nsGated.invalidate('/data/b.bin');
    held.gate = undefined;
    const again = nsGated.list('/data');
    const releaseAgain = await gateReached();
    await writeFile(join(dir, 'data/c.bin'), 'c');
    nsGated.invalidate('/data/c.bin');
    releaseAgain();
    await again;
    const asked = calls.list;
    expect((await nsGated.list('/data')).map((e) => e.name)).toEqual(['a.bin', 'b.bin', 'c.bin']);
    expect(calls.list).toBe(asked + 1);
  });
});
