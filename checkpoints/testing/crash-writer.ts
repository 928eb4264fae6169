/**
 * Child process for the crash tests: writes files through a WritePath over a local store and
 * reports each step on stdout, so the parent can SIGKILL it at a chosen moment.
 *
 * Usage: node --import tsx checkpoints/testing/crash-writer.ts '<json CrashWriterPlan>'
 * Lines: `wrote KEY BYTES` after each write, `released KEY` when release resolved,
 * `done` after the last file (then it waits to be killed).
 */
import { openStore } from '../../store/index.js';
import { silentLogger } from '../../telemetry/index.js';
import { WritePath } from '../write-path.js';
import { patternedBytes } from './patterned-bytes.js';
import { ScriptedStore } from './scripted-store.js';

export interface CrashWriterPlan {
  readonly stagingDir: string;
  readonly storeDir: string;
  readonly partSizeBytes: number;
  /** Extra time per uploadPart, so that a kill lands while parts are uploading. */
  readonly partDelayMs: number;
  readonly chunkBytes: number;
  /** Pause after each write, so that a kill lands while the file is being written. */
  readonly writeDelayMs: number;
  readonly files: ReadonlyArray<{ key: string; size: number; seed: number; release: boolean }>;
}

const plan = JSON.parse(process.argv[2]!) as CrashWriterPlan;
const store = new ScriptedStore(openStore(`file://${plan.storeDir}`));
store.partDelayMs = plan.partDelayMs;
const writePath = new WritePath(
  { stagingDir: plan.stagingDir, stagingLimitBytes: 1024 * 1024 * 1024, closeMode: 'async', partSizeBytes: plan.partSizeBytes, logger: silentLogger() },
  () => store,
);
await writePath.recover();
const say = (line: string) => process.stdout.write(`${line}\n`);
for (const file of plan.files) {
  const handle = await writePath.open({ storeId: 'crash', key: file.key }, { truncate: true });
  for (let offset = 0; offset < file.size; offset += plan.chunkBytes) {
    const length = Math.min(plan.chunkBytes, file.size - offset);
    await writePath.write(handle, offset, patternedBytes(file.seed, offset, length));
    say(`wrote ${file.key} ${offset + length}`);
    if (plan.writeDelayMs > 0) await new Promise((r) => setTimeout(r, plan.writeDelayMs));
  }
  if (file.release) {
    await writePath.release(handle);
    say(`released ${file.key}`);
  }
}
say('done');
setInterval(() => undefined, 60_000); // wait for the parent's SIGKILL
