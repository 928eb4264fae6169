import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeDelta } from './delta-body.js';
import { lookupBinding } from './lookup-binding.js';
import { ParamsService } from './params-service.js';
import { buildTable } from './table-builder.js';
import type { ApplyPacing, TableOverlay } from './table-overlay.js';
import { decodeAnswer, keysBody, vectorOf, writeRecords } from './testing/records.js';

/**
 * Pacing of in-place deltas (docs/PARAMS.md, "Pacing"): an apply sleeps between its chunks of
 * work while lookups run in the process, and runs without a pause otherwise. The checks count
 * what the addon reports (chunks, the chunks after which it slept); the one bound on time is
 * the pacing window's, with a wide margin, against a share that would sleep 100 times longer.
 */
const DIM = 4;
const KEYS = 400_000;
/**
 * Each delta upserts the same 15,000 keys of the table: 6 deltas (90,000 records) stay under
 * half of the overlay's records (a quarter of the table's keys, twice as many records: 200,000),
 * so no compaction replaces the overlay during a test.
 */
const UPSERTS = 15_000;
let work: string;
beforeEach(async () => {
  work = await mkdtemp('/dev/shm/params-pacing-');
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const binding = lookupBinding();
const keys = Array.from({ length: KEYS }, (_, i) => BigInt(i) * 3n);
const upserted = keys.slice(0, UPSERTS);

function delta(salt: number): Buffer {
  return encodeDelta(
    DIM,
    upserted.map((k) => [k, [salt, Number(k % 1000n), 0, -salt]] as const),
    [],
  );
}

async function service(): Promise<ParamsService> {
  await writeRecords(join(work, 'emb.bin'), keys, DIM);
  await buildTable(join(work, 'emb.bin'), join(work, 'emb.params'), { dim: DIM, shards: 2 });
  const s = new ParamsService({ dir: join(work, 'tier'), lookupThreads: 2 });
  await s.load('emb', join(work, 'emb.params'));
  while (!s.runsOnThreads('emb')) await new Promise((r) => setTimeout(r, 5));
  return s;
}

/**
 * `callers` loops of lookups on the lookup threads until stopped; resolves once each has had an
 * answer. A batch is 100,000 keys of the table (the most one request may ask), several
 * milliseconds on a thread, and each thread has about two queued: a lookup is in progress at
 * nearly every moment of an apply even when the event loop, which sends the next batches, waits
 * for a core on a loaded machine.
 */
const LOOKUP_BATCH = keysBody(keys.slice(0, 100_000));

async function lookupsRunning(s: ParamsService, callers: number): Promise<{ stop(): Promise<number> }> {
  const body = LOOKUP_BATCH;
  let done = false;
  let answered = 0;
  let started!: () => void;
  const allStarted = new Promise<void>((r) => (started = r));
  const loops = Array.from({ length: callers }, async () => {
    for (let first = true; !done; first = false) {
      const lease = await s.mgetLease('emb', body);
      lease.release();
      answered++;
      if (first && answered >= callers) started();
    }
  });
  await Promise.race([allStarted, Promise.all(loops)]);
  return {
    async stop() {
      done = true;
      await Promise.all(loops);
      return answered;
    },
  };
}

/**
 * Up to 3 deltas (salts from `nextSalt`) applied under lookups; answers the pacing of the first
 * that paused, or of the last. On a machine loaded past its cores (the suite's files in
 * parallel) the event loop that sends the batches can wait for a core longer than the addon's
 * grace, so that no lookup is in progress during a whole apply, and the apply rightly runs
 * through without a pause.
 */
async function applyUnderLookups(s: ParamsService, overlay: TableOverlay, nextSalt: () => number): Promise<ApplyPacing> {
  let pacing: ApplyPacing | undefined;
  for (let attempt = 0; attempt < 3 && !pacing?.pausedChunks; attempt++) {
    const lookups = await lookupsRunning(s, 4);
    await s.applyDelta('emb', delta(nextSalt()));
    await lookups.stop();
    pacing = overlay.lastPacing!;
  }
  return pacing!;
}

/** No lookup in this process for longer than the addon's grace after the last one. */
const settle = () => new Promise((r) => setTimeout(r, 50));

describe.skipIf(!binding)('pacing of in-place deltas', () => {
  it('sleeps between chunks while lookups run, keeping its share of a core down, and never when none run; the answers are the deltas\'', async () => {
    const s = await service();
    try {
      await s.applyDelta('emb', delta(1)); // makes the overlay
      const overlay: TableOverlay = s.table('emb').overlay!;
      const quiet = overlay.lastPacing!;
      expect(quiet.chunks).toBeGreaterThan(10);
      expect(quiet).toMatchObject({ pausedChunks: 0, sleptMs: 0 });

      // At 5% of a core (20 times its CPU time in wall time, under the 90 ms window here) it
      // sleeps whatever share the machine leaves it, once it sees lookups in progress.
      expect(binding!.overlayPacing(overlay.handle, 0.05, 90)).toEqual([0.3, 90]);
      let salt = 1;
      const slow = await applyUnderLookups(s, overlay, () => ++salt);
      expect(slow.chunks).toBe(quiet.chunks);
      expect(slow.pausedChunks).toBeGreaterThan(0);
      expect(slow.sleptMs).toBeGreaterThan(0);
      // Slept time is wall time the apply did not use. How much of the apply the lookups ran
      // through varies with the machine's load (a pause needs a lookup in progress at a chunk's
      // end): the share is measured by bench/params-delta.ts, not bounded here.
      expect(slow.wallMs).toBeGreaterThanOrEqual(slow.sleptMs);
      expect(slow.cpuMs).toBeLessThan(slow.wallMs);

      await settle();
      await s.applyDelta('emb', delta(++salt));
      expect(overlay.lastPacing).toMatchObject({ pausedChunks: 0, sleptMs: 0 });

      const answer = decodeAnswer(await s.mgetAsync('emb', keysBody(keys.slice(0, UPSERTS + 10))), UPSERTS + 10, DIM);
      for (let i = 0; i < UPSERTS + 10; i++) {
        const want = i < UPSERTS ? [salt, Number(keys[i]! % 1000n), 0, -salt] : [...vectorOf(keys[i]!, DIM)];
        if ([...answer[i]!].join() !== want.join()) expect([...answer[i]!]).toEqual(want);
      }
    } finally {
      await s.close();
    }
  });

  it('stops sleeping at the pacing window, and not at all with pacing off', async () => {
    const s = await service();
    try {
      await s.applyDelta('emb', delta(1));
      const overlay = s.table('emb').overlay!;
      // A share of 1% alone would sleep 99 times the apply's CPU time; the window stops the
      // sleeps at 20 times its CPU time (of an apply with no lookups) after the apply began. Not
      // a fixed number of ms: on a loaded machine (the whole suite in parallel) an apply can take
      // longer than a short window in wall time before its first chunk ends, and then has no
      // sleep left to take.
      const windowMs = Math.min(60_000, Math.max(60, Math.ceil(20 * overlay.lastPacing!.cpuMs)));
      expect(binding!.overlayPacing(overlay.handle, 0.01, windowMs)).toEqual([0.3, 90]);
      let salt = 1;
      const capped = await applyUnderLookups(s, overlay, () => ++salt);
      expect(capped.pausedChunks).toBeGreaterThan(0);
      expect(capped.sleptMs).toBeLessThan(windowMs + 50);
      expect(capped.sleptMs).toBeLessThan(capped.cpuMs * 99);

      expect(binding!.overlayPacing(overlay.handle, 1, 0)).toEqual([0.01, windowMs]);
      const lookups = await lookupsRunning(s, 4);
      await s.applyDelta('emb', delta(++salt));
      await lookups.stop();
      expect(overlay.lastPacing).toMatchObject({ pausedChunks: 0, sleptMs: 0 });
    } finally {
      await s.close();
    }
  });

  it('refuses pacing settings out of range', async () => {
    const s = await service();
    try {
      await s.applyDelta('emb', delta(1));
      const { handle } = s.table('emb').overlay!;
      for (const [share, windowMs] of [
        [0, 90],
        [1.5, 90],
        [Number.NaN, 90],
        [0.3, -1],
        [0.3, 60_001],
      ] as const) {
        expect(() => binding!.overlayPacing(handle, share, windowMs)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      }
      expect(binding!.overlayPacing(handle, 0.3, 90)).toEqual([0.3, 90]);
    } finally {
      await s.close();
    }
  });
});
