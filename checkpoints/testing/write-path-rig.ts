import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ObjectRef } from '../../store/index.js';
import { openStore } from '../../store/index.js';
import { silentLogger } from '../../telemetry/index.js';
import { WritePath, type WritePathConfig } from '../index.js';
import { ScriptedStore } from './scripted-store.js';

/* A WritePath over a local store wrapped in a ScriptedStore, in temporary folders: the write path's unit tests' rig. */

export const MiB = 1024 * 1024;
export const PART = 5 * MiB; // the smallest part S3 allows, so tests stay small
export const STORE_ID = 'file://test';

export interface Rig {
  readonly writePath: WritePath;
  readonly store: ScriptedStore;
  readonly storeDir: string;
  readonly stagingDir: string;
  readonly adopted: Array<{ ref: ObjectRef; existed: boolean }>;
  readonly pinLog: string[];
}

const cleanups: Array<() => Promise<void>> = [];
/** Runs `work` at the next `cleanUpRigs` (before the rigs made earlier are cleaned up). */
export function onCleanUp(...work: Array<() => Promise<void>>): void {
  cleanups.push(...work);
}

/** Closes and deletes every rig made since the last call (run after each test). */
export async function cleanUpRigs(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c();
}

/** Backoff waits resolve at once (next turn of the event loop), so retry tests take milliseconds. */
export const instantSleep = (_ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => (signal?.aborted ? reject(signal.reason as Error) : setImmediate(resolve)));

export async function rig(overrides: Partial<WritePathConfig> = {}, dirs?: { storeDir: string; stagingDir: string }): Promise<Rig> {
  const storeDir = dirs?.storeDir ?? (await mkdtemp(join(tmpdir(), 'strata-ckpt-store-')));
  const stagingDir = dirs?.stagingDir ?? (await mkdtemp(join(tmpdir(), 'strata-ckpt-staging-')));
  const store = new ScriptedStore(openStore(`file://${storeDir}`));
  const adopted: Rig['adopted'] = [];
  const pinLog: string[] = [];
  const writePath = new WritePath(
    {
      stagingDir,
      stagingLimitBytes: 256 * MiB,
      closeMode: 'async',
      partSizeBytes: PART,
      logger: silentLogger(),
      sleep: instantSleep,
      pins: { pin: (ref) => void pinLog.push(`pin ${ref.key}`), unpin: (ref) => void pinLog.push(`unpin ${ref.key}`) },
      ...overrides,
    },
    () => store,
    async (ref, stagedFile) => {
      adopted.push({ ref, existed: await stat(stagedFile).then(() => true, () => false) });
    },
  );
  await writePath.recover();
  if (!dirs) {
    cleanups.push(async () => {
      store.openAll();
      await writePath.close();
      await rm(storeDir, { recursive: true, force: true });
      await rm(stagingDir, { recursive: true, force: true });
    });
  }
  return { writePath, store, storeDir, stagingDir, adopted, pinLog };
}

export async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function untilAsync(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function stored(r: Rig, key: string): Promise<Buffer | undefined> {
  return readFile(join(r.storeDir, key)).catch(() => undefined);
}

export async function multipartLeft(r: Rig): Promise<string[]> {
  return readdir(join(r.storeDir, '.strata-multipart')).catch(() => []);
}

