import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParamsService } from './params-service.js';
import { buildTable } from './table-builder.js';
import { BASE_KEYS, baseVector, KEY_SPACE, SEQUENCE_KEY, STREAM_DIM, StreamModel } from './testing/delta-stream.js';
import { encodeRecords } from './testing/records.js';
import { writeFile } from 'node:fs/promises';

/**
 * SIGKILL during a stream of in-place deltas under lookups, at random moments, KILLS times:
 * after each kill the table must recover to the last acknowledged delta or the one after it
 * (applied but not yet acknowledged), with every checksum valid and every key as the model says.
 */
const KILLS = 50;
const CHILD = join(import.meta.dirname, 'testing', 'crash-child.ts');
let work: string;

beforeAll(async () => {
  work = await mkdtemp('/dev/shm/params-crash-');
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Run {
  ready: number;
  acknowledged: number;
  output: string[];
}

/**
 * Runs the child until `killAfterMs` after it is ready (`from: 'ready'`: the kill may land in
 * its first moments) or after its first acknowledged delta (`from: 'applied'`: every such run
 * moves the stream on, however slow a loaded machine makes the child), then SIGKILLs it.
 */
function runChild(dir: string, source: string, killAfterMs: number, from: 'ready' | 'applied'): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, source], { stdio: ['ignore', 'pipe', 'pipe'] });
    const run: Run = { ready: -1, acknowledged: -1, output: [] };
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      run.output.push(line);
      const [word, value] = line.split(' ');
      if (word === 'ready') {
        run.ready = run.acknowledged = Number(value);
        if (from === 'ready') setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      } else if (word === 'applied') {
        if (from === 'applied' && run.acknowledged === run.ready) setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        run.acknowledged = Number(value);
      }
    });
    child.once('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(run);
      else reject(new Error(`the child exited with ${code} before it was killed: ${run.output.slice(-3).join(' | ')}\n${stderr}`));
    });
  });
}

describe('in-place deltas and SIGKILL', () => {
  it(`recover to a whole prefix of the delta stream after ${KILLS} kills at random moments, under lookups`, async () => {
    const input = join(work, 'base.bin');
    const keys = Array.from({ length: BASE_KEYS }, (_, k) => BigInt(k));
    const records = encodeRecords(keys, STREAM_DIM);
    keys.forEach((k, i) => Buffer.from(new Float32Array(baseVector(Number(k))).buffer).copy(records, i * (8 + 4 * STREAM_DIM) + 8));
    await writeFile(input, records);
    const source = join(work, 'base.params');
    await buildTable(input, source, { dim: STREAM_DIM, shards: 2 });
    const dir = join(work, 'tier');
    const model = new StreamModel();
    const everything = [SEQUENCE_KEY, ...Array.from({ length: KEY_SPACE }, (_, k) => BigInt(k))];
    const body = Buffer.alloc(everything.length * 8);
    everything.forEach((k, i) => body.writeBigUInt64LE(k, i * 8));
    let sequence = 0;
    let compactions = 0;
    const timings: number[] = [];
    for (let kill = 0; kill < KILLS; kill++) {
      // Kill up to 1.5 s after recovery (even runs) or after the run's first delta (odd runs):
      // inside applies, compactions, switches, or between them; every tenth run lives 5 s, so
      // that compactions (a thread of their own) get to finish too.
      const started = Date.now();
      const run = await runChild(dir, source, kill % 10 === 9 ? 5000 : Math.floor(Math.random() * 1500), kill % 2 === 0 ? 'ready' : 'applied');
      timings.push(Date.now() - started);
      expect(run.ready, `run ${kill} recovered what the last check saw`).toBe(sequence);
      const service = new ParamsService({ dir });
      try {
        const report = await service.recover();
        expect(report.failed, `run ${kill}`).toEqual([]);
        const answer = service.mget('emb', body);
        const at = (answer[0]! & 1) === 0 ? 0 : answer.readFloatLE(Math.ceil(everything.length / 32) * 4);
        expect([run.acknowledged, run.acknowledged + 1], `run ${kill}: acknowledged ${run.acknowledged}`).toContain(at);
        const state = model.at(at);
        const bitmapBytes = Math.ceil(everything.length / 32) * 4;
        const wrong: string[] = [];
        for (let i = 1; i < everything.length && wrong.length < 5; i++) {
          const want = state[i - 1];
          const found = (answer[i >> 3]! >> (i & 7)) & 1;
          const have = found ? Array.from({ length: STREAM_DIM }, (_, d) => answer.readFloatLE(bitmapBytes + (i * STREAM_DIM + d) * 4)) : undefined;
          if ((want === undefined) !== (have === undefined) || (want && want.join() !== have!.join())) wrong.push(`key ${i - 1}: ${have?.join()} want ${want?.join()}`);
        }
        expect(wrong, `run ${kill} at sequence ${at}`).toEqual([]);
        expect(service.list()[0]!.keys).toBe(state.filter((v) => v !== undefined).length + (at > 0 ? 1 : 0));
        if (!service.table('emb').path.endsWith('.v1.params')) compactions++;
        sequence = at;
      } finally {
        await service.close();
      }
    }
    process.stderr.write(`params-crash: ${KILLS} kills, ${sequence} deltas, ${compactions} runs after a compaction, child runs ${Math.min(...timings)}-${Math.max(...timings)} ms\n`);
    // The stream got somewhere, through compactions: every run killed after a delta added one at least.
    expect(sequence).toBeGreaterThanOrEqual(KILLS / 2);
    expect(compactions).toBeGreaterThan(0);
  }, 600_000);
});
