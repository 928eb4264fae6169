import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MountRoutes, Namespace } from '../namespace/index.js';
import { openStore, type ObjectRef, type ObjectStore } from '../store/index.js';
import { silentLogger } from '../telemetry/index.js';
import { DirectReader } from '../test/fixtures/direct-reader.js';
import { cleanupDir, tempDir } from '../test/fixtures/strata-process.js';
import { Filesystem } from './filesystem.js';
import type { NextFilesOptions } from './next-files.js';

/** A reader that records what it was asked to load ahead, and holds those loads until `finish`. */
class RecordingReader extends DirectReader {
  readonly ahead: string[] = [];
  readonly #pending: Array<() => void> = [];

  readAhead(ref: ObjectRef): Promise<unknown> {
    this.ahead.push(ref.key);
    return new Promise<void>((resolve) => this.#pending.push(resolve));
  }

  finish(): void {
    for (const resolve of this.#pending.splice(0)) resolve();
  }
}

describe('readahead across the files of a folder', () => {
  let dir: string;
  let store: ObjectStore;
  let reader: RecordingReader;

  beforeEach(async () => {
    dir = await tempDir('next-files');
    store = openStore(`file://${dir}`, {});
    reader = new RecordingReader(store);
    await mkdir(join(dir, 'set/sub'), { recursive: true });
    for (let i = 0; i < 10; i++) await writeFile(join(dir, `set/f${i}`), `file ${i}`);
  });
  afterEach(async () => {
    await store.close();
    await cleanupDir(dir);
  });

  const mount = (nextFiles?: NextFilesOptions, namespace = new Namespace(store, { metadataTtlMs: 60_000 })) =>
    new Filesystem({ routes: MountRoutes.single(namespace), reader, logger: silentLogger(), ...(nextFiles ? { nextFiles } : {}) });
  const openAll = async (fs: Filesystem, names: string[]) => {
    for (const name of names) await fs.release(await fs.open(`/set/${name}`, 0));
  };

  it('loads the next files when a file is opened after the one before it, folders skipped', async () => {
    const fs = mount({ depth: 3, maxLoads: 16 });
    await fs.readdir('/set');
    await openAll(fs, ['f0']);
    // Each open loads its own start; nothing ahead yet: one open is no order.
    expect(reader.ahead).toEqual(['set/f0']);
    await openAll(fs, ['f1']);
    expect(reader.ahead).toEqual(['set/f0', 'set/f1', 'set/f2', 'set/f3', 'set/f4']);
    reader.ahead.length = 0;
    // f7 follows no recent open: only its own start.
    await openAll(fs, ['f7']);
    expect(reader.ahead).toEqual(['set/f7']);
    reader.ahead.length = 0;
    // f8 follows f7: f9 is loaded; `sub`, the folder listed after it, is not.
    await openAll(fs, ['f8']);
    expect(reader.ahead).toEqual(['set/f8', 'set/f9']);
  });

  it('loads nothing ahead for a shuffled order, without a listing, or when turned off', async () => {
    const fs = mount({ depth: 4, maxLoads: 16 });
    await openAll(fs, ['f0', 'f1']); // no listing known yet: no order to follow
    expect(reader.ahead).toEqual(['set/f0', 'set/f1']);
    await fs.readdir('/set');
    reader.ahead.length = 0;
    await openAll(fs, ['f5', 'f3', 'f9', 'f7']);
    expect(reader.ahead).toEqual(['set/f5', 'set/f3', 'set/f9', 'set/f7']);
    const off = mount({ depth: 0, maxLoads: 16 });
    await off.readdir('/set');
    reader.ahead.length = 0;
    await openAll(off, ['f0', 'f1', 'f2']);
    expect(reader.ahead).toEqual(['set/f0', 'set/f1', 'set/f2']);
  });

  it('takes a file opened again after its folder changed for no stream', async () => {
    const namespace = new Namespace(store, { metadataTtlMs: 60_000 });
    const fs = mount({ depth: 3, maxLoads: 16 }, namespace);
    await fs.readdir('/set');
    await openAll(fs, ['f5']);
    // A name listed before f5 appears: f5 moves one place down in the new listing.
    await writeFile(join(dir, 'set/a0'), 'new');
    namespace.invalidate('/set/a0');
    expect((await fs.readdir('/set')).slice(0, 2)).toEqual(['a0', 'f0']);
    reader.ahead.length = 0;
    await openAll(fs, ['f5']);
    expect(reader.ahead).toEqual(['set/f5']);
  });

  it('keeps at most maxLoads loads ahead in flight', async () => {
    const fs = mount({ depth: 4, maxLoads: 2 });
    await fs.readdir('/set');
    await openAll(fs, ['f0', 'f1']);
    expect(reader.ahead).toEqual(['set/f0', 'set/f1', 'set/f2', 'set/f3']);
    reader.finish();
    await new Promise((resolve) => setImmediate(resolve));
    reader.ahead.length = 0;
    await openAll(fs, ['f2']);
    expect(reader.ahead).toEqual(['set/f2', 'set/f3', 'set/f4']);
  });
});
