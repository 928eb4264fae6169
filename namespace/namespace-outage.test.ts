import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, StoreError, type ObjectStore } from '../store/index.js';
import { cleanupDir, tempDir } from '../test/fixtures/strata-process.js';
import { Namespace } from './namespace.js';

type Mode = 'ok' | 'down' | 'hang' | 'list-refused';

/** A local store whose metadata calls can fail like an unreachable, hung or LIST-refusing S3 store. */
function faultyStore(inner: ObjectStore, mode: () => Mode): ObjectStore {
  const unreachable = () => new StoreError('STORE_UNREACHABLE', 'cannot reach the store (ECONNREFUSED)');
  return Object.assign(Object.create(inner) as ObjectStore, {
    url: inner.url,
    head: async (key: string) => {
      if (mode() === 'down') throw unreachable();
      if (mode() === 'hang') return new Promise<never>(() => {});
      return inner.head(key);
    },
    list: async (prefix: string, options?: Parameters<ObjectStore['list']>[1]) => {
      if (mode() === 'down') throw unreachable();
      if (mode() === 'hang') return new Promise<never>(() => {});
      // A GetObject-only policy: LIST is refused at once, before the HEAD answers.
      if (mode() === 'list-refused') throw new StoreError('STORE_ACCESS_DENIED', 'access denied (AccessDenied)');
      return inner.list(prefix, options);
    },
  });
}

describe('Namespace when the store fails', () => {
  let dir: string;
  let inner: ObjectStore;
  let mode: Mode;
  let now: number;
  let ns: Namespace;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  beforeEach(async () => {
    dir = await tempDir('ns-outage');
    inner = openStore(`file://${dir}`, {});
    mode = 'ok';
    now = 1_000_000;
    unhandled.length = 0;
    process.on('unhandledRejection', onUnhandled);
    ns = new Namespace(faultyStore(inner, () => mode), { metadataTtlMs: 1000, now: () => now, revalidateDeadlineMs: 100, staleOnErrorMs: 60_000 });
  });
  afterEach(async () => {
    process.off('unhandledRejection', onUnhandled);
    await inner.close();
    await cleanupDir(dir);
  });

  /** Longer than the revalidation deadline, so no request still hanging is joined. */
  const settle = () => new Promise((r) => setTimeout(r, 150));

  it('a LIST refused before the HEAD answers is an error of that lookup, never an unhandled rejection', async () => {
    mode = 'list-refused';
    await expect(ns.lookup('/missing')).rejects.toMatchObject({ code: 'STORE_ACCESS_DENIED' });
    await writeFile(join(dir, 'here.txt'), 'x');
    expect((await ns.lookup('/here.txt')).kind).toBe('file'); // the HEAD finds it; the failed LIST is dropped
    await settle();
    expect(unhandled).toEqual([]);
  });

  it('a lookup during an outage with nothing known fails with the store error, and nothing goes unhandled', async () => {
    mode = 'down';
    await expect(ns.lookup('/a/b.txt')).rejects.toMatchObject({ code: 'STORE_UNREACHABLE' });
    await expect(ns.list('/')).rejects.toMatchObject({ code: 'STORE_UNREACHABLE' });
    await settle();
    expect(unhandled).toEqual([]);
  });

  it('serves known entries and listings past the TTL while the store is down or hung, and the store again after', async () => {
    await writeFile(join(dir, 'cached.bin'), 'cached bytes');
    const before = await ns.lookup('/cached.bin');
    expect((await ns.list('/')).map((e) => e.name)).toEqual(['cached.bin']);
    await expect(ns.lookup('/absent')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' });

    for (const outage of ['down', 'hang'] as const) {
      mode = outage;
      now += 5_000; // well past the TTL
      const started = Date.now();
      expect(await ns.lookup('/cached.bin')).toEqual(before);
      expect((await ns.list('/')).map((e) => e.name)).toEqual(['cached.bin']);
      await expect(ns.lookup('/absent')).rejects.toMatchObject({ code: 'FS_NOT_FOUND' }); // a known absence stays absent
      expect(Date.now() - started).toBeLessThan(2_000); // the hung store cost at most the deadline per call
    }

    mode = 'ok';
    await settle();
    await writeFile(join(dir, 'cached.bin'), 'a new version, longer');
    now += 5_000;
    // Within 10 s of the outage, the known answer comes at once and the revalidation runs
    // behind it; its answer is what the next call sees.
    await ns.lookup('/cached.bin');
    await settle();
    const after = await ns.lookup('/cached.bin');
    expect(after.kind === 'file' && after.ref.size).toBe(21);
    // The store answered, so the next revalidation waits for it again.
    await writeFile(join(dir, 'cached.bin'), 'third');
    now += 5_000;
    const third = await ns.lookup('/cached.bin');
    expect(third.kind === 'file' && third.ref.size).toBe(5);
    await settle();
    expect(unhandled).toEqual([]);
  });

  it('keeps a listing invalidated while it was in flight as known, for the outage after', async () => {
    await writeFile(join(dir, 'a.bin'), 'a');
    // The listing's LIST waits until a write elsewhere in the folder (an upload finishing) invalidates it.
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const gated = Object.assign(Object.create(faultyStore(inner, () => mode)) as ObjectStore, {
      list: async (prefix: string, options?: Parameters<ObjectStore['list']>[1]) => {
        await gate;
        return faultyStore(inner, () => mode).list(prefix, options);
      },
    });
    const racing = new Namespace(gated, { metadataTtlMs: 1000, now: () => now, revalidateDeadlineMs: 100, staleOnErrorMs: 60_000 });
    const listing = racing.list('/');
    await new Promise((r) => setImmediate(r));
    racing.invalidate('/b.bin');
    release();
    expect((await listing).map((e) => e.name)).toEqual(['a.bin']);
    mode = 'down';
    now += 5_000;
    expect((await racing.list('/')).map((e) => e.name)).toEqual(['a.bin']);
    await settle();
    expect(unhandled).toEqual([]);
  });

  it('stops serving stale entries once they are older than --stale-on-error', async () => {
    await writeFile(join(dir, 'old.bin'), 'x');
    await ns.lookup('/old.bin');
    mode = 'down';
    now += 61_001 + 1000;
    await expect(ns.lookup('/old.bin')).rejects.toMatchObject({ code: 'STORE_UNREACHABLE' });
  });

  it('refuses names over 255 bytes and keys over 1,024 bytes without asking the store', async () => {
    mode = 'down'; // any store request would fail with STORE_UNREACHABLE
    await expect(ns.lookup(`/${'é'.repeat(3000)}`)).rejects.toMatchObject({ code: 'FS_NAME_TOO_LONG' });
    await expect(ns.lookup(`/${'n'.repeat(256)}`)).rejects.toMatchObject({ code: 'FS_NAME_TOO_LONG' });
    await expect(ns.lookup(`/${'d'.repeat(200)}/`.repeat(6) + 'f')).rejects.toMatchObject({ code: 'FS_NAME_TOO_LONG' });
    await expect(ns.lookup(`/${'n'.repeat(255)}`)).rejects.toMatchObject({ code: 'STORE_UNREACHABLE' }); // 255 bytes is a name
  });
});
