import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../store/index.js';
import { silentLogger } from '../telemetry/index.js';
import { WritePath } from './index.js';
import type { CrashWriterPlan } from './testing/crash-writer.js';
import { patternedBytes, sha256 } from './testing/patterned-bytes.js';

const MiB = 1024 * 1024;
const PART = 5 * MiB;
const REPO = resolve(import.meta.dirname, '..');
const WRITER = join(import.meta.dirname, 'testing/crash-writer.ts');

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** Runs the crash writer and SIGKILLs it as soon as it prints a line matching `killAt`. Resolves with the lines seen. */
async function runAndKill(plan: CrashWriterPlan, killAt: RegExp, delayMs = 0): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, JSON.stringify(plan)], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const lines: string[] = [];
  const exited = new Promise<string | number>((res) => child.on('exit', (code, signal) => res(signal ?? code ?? 'unknown')));
  for await (const line of createInterface({ input: child.stdout })) {
    lines.push(line);
    if (killAt.test(line)) {
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      child.kill('SIGKILL');
      break;
    }
  }
  const how = await exited;
  if (how !== 'SIGKILL') throw new Error(`crash writer ended with ${how} before the kill point; stderr:\n${stderr}`);
  return lines;
}

async function dirsFor(): Promise<{ stagingDir: string; storeDir: string }> {
  const stagingDir = await mkdtemp(join(tmpdir(), 'strata-crash-staging-'));
  const storeDir = await mkdtemp(join(tmpdir(), 'strata-crash-store-'));
  dirs.push(stagingDir, storeDir);
  return { stagingDir, storeDir };
}

/** A fresh daemon on the same staging folder: recover, then wait for every resumed upload. */
async function restart(stagingDir: string, storeDir: string): Promise<WritePath> {
  const writePath = new WritePath({ stagingDir, stagingLimitBytes: 1024 * MiB, closeMode: 'async', partSizeBytes: PART, logger: silentLogger() }, () => openStore(`file://${storeDir}`));
  await writePath.recover();
  return writePath;
}

async function settledStore(storeDir: string): Promise<string[]> {
  // Aborts of orphaned uploads run in the background after recover(); give them a moment.
  for (let i = 0; i < 200; i++) {
    const left = await readdir(join(storeDir, '.strata-multipart')).catch(() => []);
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const left = await readdir(join(storeDir, '.strata-multipart')).catch(() => []);
  if (left.length > 0) throw new Error(`multipart uploads left in the store: ${left.join(', ')}`);
  return (await readdir(storeDir)).filter((n) => !n.startsWith('.strata-')).sort();
}

describe('crash recovery (SIGKILLed writer process)', () => {
  it('killed right after release returned: the restarted write path uploads exactly the released bytes', async () => {
    const { stagingDir, storeDir } = await dirsFor();
    const size = 4 * PART + 12345;
    await runAndKill({ stagingDir, storeDir, partSizeBytes: PART, partDelayMs: 300, writeDelayMs: 0, chunkBytes: MiB, files: [{ key: 'ckpt.pt', size, seed: 1, release: true }] }, /^released ckpt\.pt$/);
    expect(await readFile(join(storeDir, 'ckpt.pt')).catch(() => undefined)).toBeUndefined();
    const writePath = await restart(stagingDir, storeDir);
    expect(writePath.pending('crash', 'ckpt.pt')?.size).toBe(size);
    await writePath.flush();
    await writePath.close();
    expect(sha256(await readFile(join(storeDir, 'ckpt.pt')))).toBe(sha256(patternedBytes(1, 0, size)));
    expect(await settledStore(storeDir)).toEqual(['ckpt.pt']);
    expect(await readdir(join(stagingDir, 'staged'))).toEqual([]);
    expect(await readdir(join(stagingDir, 'journal'))).toEqual([]);
  });

  it('killed while released parts were uploading: resumes the multipart upload', async () => {
    const { stagingDir, storeDir } = await dirsFor();
    const size = 6 * PART + 1;
    await runAndKill({ stagingDir, storeDir, partSizeBytes: PART, partDelayMs: 150, writeDelayMs: 0, chunkBytes: MiB, files: [{ key: 'm/model.bin', size, seed: 2, release: true }] }, /^released m\/model\.bin$/, 250);
    const writePath = await restart(stagingDir, storeDir);
    await writePath.flush();
    await writePath.close();
    expect(sha256(await readFile(join(storeDir, 'm/model.bin')))).toBe(sha256(patternedBytes(2, 0, size)));
    expect(await settledStore(storeDir)).toEqual(['m']);
  });

  it('killed during a write: the unreleased file is dropped, its multipart upload aborted, a released one kept', async () => {
    const { stagingDir, storeDir } = await dirsFor();
    const small = 300_000;
    await runAndKill(
      {
        stagingDir,
        storeDir,
        partSizeBytes: PART,
        partDelayMs: 0,
        writeDelayMs: 30,
        chunkBytes: MiB,
        files: [
          { key: 'done.bin', size: small, seed: 3, release: true },
          { key: 'torn.bin', size: 4 * PART, seed: 4, release: true },
        ],
      },
      new RegExp(`^wrote torn\\.bin ${2 * PART + MiB}$`),
      100, // let the streamed parts of torn.bin start; the writer is still 9 slow writes from its end
    );
    expect(await readdir(join(storeDir, '.strata-multipart'))).toHaveLength(1); // the streamed upload the crash orphaned
    expect(await readFile(join(storeDir, 'torn.bin')).catch(() => undefined)).toBeUndefined();
    const writePath = await restart(stagingDir, storeDir);
    await writePath.flush();
    await writePath.close();
    expect(sha256(await readFile(join(storeDir, 'done.bin')))).toBe(sha256(patternedBytes(3, 0, small)));
    expect(await settledStore(storeDir)).toEqual(['done.bin']);
    expect(await readdir(join(stagingDir, 'staged'))).toEqual([]);
  });
});
