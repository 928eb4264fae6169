import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeyLock } from '../async/index.js';
import { StoreError, openStore, type ObjectStore } from '../store/index.js';
import { silentLogger } from '../telemetry/index.js';
import { cleanupDir, tempDir } from '../test/fixtures/strata-process.js';
import { TreeRenames, type LockedRunner } from './tree-rename.js';

const STORE_ID = 'store';

describe('TreeRenames', () => {
  let dir: string;
  let store: ObjectStore;
  let renames: string;
  const locks = new KeyLock();
  const locked: LockedRunner = (storeId, keys, work) => locks.with(keys.map((k) => `${storeId}\0${k}`), work);

  const keys = async () => {
    const page = await store.list('', { maxKeys: 1000 });
    return page.objects.map((o) => o.key).sort();
  };

  beforeEach(async () => {
    dir = await tempDir('tree-rename');
    await mkdir(join(dir, 'store'));
    renames = join(dir, 'renames');
    store = openStore(`file://${join(dir, 'store')}`, {});
    await store.put('old/', Buffer.alloc(0));
    await store.put('old/a', Buffer.from('a'));
    await store.put('old/sub/', Buffer.alloc(0));
    await store.put('old/sub/b', Buffer.from('b'));
  });
  afterEach(async () => {
    await store.close();
    await cleanupDir(dir);
  });

  const record = (phase: string, extra: object = {}) =>
    JSON.stringify({ version: 1, id: 'r1', storeId: STORE_ID, from: 'old/', to: 'new/', phase, targetMarker: false, ...extra });

  it('moves every object and marker, and leaves no record', async () => {
    const trees = new TreeRenames(renames, () => store, locked, silentLogger());
    await trees.recover();
    let moved = false;
    await trees.run(STORE_ID, 'old/', 'new/', async () => void (moved = true));
    expect(moved).toBe(true);
    expect((await store.list('', { maxKeys: 1000 })).objects.map((o) => o.key).filter((k) => k.startsWith('old'))).toEqual([]);
    expect((await store.getRange('new/sub/b', 0, 1)).body.toString()).toBe('b');
    expect(await store.head('new/sub/')).toBeDefined();
    expect(await readdir(renames)).toEqual([]);
  });

  it('finishes a rename a crash interrupted while copying, without overwriting newer objects', async () => {
    await mkdir(renames, { recursive: true });
    await writeFile(join(renames, 'r1.json'), record('copying'));
    await store.put('new/a', Buffer.from('newer')); // written under the new name after the crash
    const trees = new TreeRenames(renames, () => store, locked, silentLogger());
    await trees.recover();
    expect(await keys()).toEqual(['new/a', 'new/sub/b']);
    expect((await store.getRange('new/a', 0, 10)).body.toString()).toBe('newer');
    expect(await store.head('new/')).toBeDefined();
    expect(await readdir(renames)).toEqual([]);
    expect(trees.moved(STORE_ID, 'old/a')).toBe('old/a');
  });

  it('maps keys through a rename it could not finish, and keeps the record for the next start', async () => {
    await mkdir(renames, { recursive: true });
    await writeFile(join(renames, 'r1.json'), record('deleting'));
    const failing = withMethod(store, 'list', () => Promise.reject(new StoreError('STORE_UNREACHABLE', 'down')));
    const trees = new TreeRenames(renames, () => failing, locked, silentLogger());
    await trees.recover();
    expect(trees.moved(STORE_ID, 'old/sub/b')).toBe('new/sub/b');
    expect(trees.moved(STORE_ID, 'other/x')).toBe('other/x');
    expect(await readdir(renames)).toEqual(['r1.json']);
  });

  it('removes the copies and keeps the old tree when the store fails during the copy', async () => {
    let copies = 0;
    const flaky = withMethod(store, 'copy', (from: string, to: string) => (++copies === 3 ? Promise.reject(new StoreError('STORE_UNREACHABLE', 'down')) : store.copy(from, to)));
    const trees = new TreeRenames(renames, () => flaky, locked, silentLogger());
    await trees.recover();
    await expect(trees.run(STORE_ID, 'old/', 'new/', async () => undefined)).rejects.toMatchObject({ code: 'STORE_UNREACHABLE' });
    expect(await keys()).toEqual(['old/a', 'old/sub/b']);
    expect(await store.head('new/')).toBeUndefined();
    expect(await readdir(renames)).toEqual([]);
  });
});

/** `store` with one method replaced (the others bound to the real store, whose fields are private). */
function withMethod<K extends keyof ObjectStore>(store: ObjectStore, name: K, replacement: ObjectStore[K]): ObjectStore {
  return new Proxy(store, {
    get: (target, prop) => {
      if (prop === name) return replacement;
      const value = Reflect.get(target, prop) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
