import { describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { MemoryWatchdog } from './memory-watchdog.js';

const MiB = 1024 * 1024;

/**
 * A process whose resident size is `base` plus what DRAM holds plus upload buffers plus garbage
 * that only a reclaim frees. Samples and reclaims are counted; the clock is the test's.
 */
function fakeProcess(base: number, dram: number) {
  const state = { base, dram, uploads: 0, garbage: 0, now: 0, reclaims: 0, samples: 0, caps: [] as Array<number | undefined>, pressure: [] as boolean[] };
  const watchdog = new MemoryWatchdog({
    limitBytes: 400 * MiB,
    dramBytes: 256 * MiB,
    minDramBytes: 16 * MiB,
    sample: () => {
      state.samples += 1;
      return { rssBytes: state.base + state.dram + state.uploads + state.garbage, heapTotalBytes: 0, heapUsedBytes: 0, externalBytes: 0, arrayBuffersBytes: 0 };
    },
    dramUsed: () => state.dram,
    uploadBuffers: () => state.uploads,
    reclaim: () => {
      state.reclaims += 1;
      state.garbage = 0;
      // A full collection takes the event loop's time: 30 ms on the test's clock.
      state.now += 30;
    },
    limitDram: (bytes, pressure) => {
      state.caps.push(bytes);
      state.pressure.push(pressure);
      // Evicted blocks become garbage until the next reclaim.
      if (bytes !== undefined && state.dram > bytes) {
        state.garbage += state.dram - bytes;
        state.dram = bytes;
      }
    },
    logger: silentLogger(),
    now: () => state.now,
  });
  return { state, watchdog };
}

describe('MemoryWatchdog', () => {
  // Limit 400 MiB: the resident cap aims at 360 (10% under) and gives room back below 340 (5% more).

  it('does nothing while the process is under its aim', () => {
    const { state, watchdog } = fakeProcess(100 * MiB, 256 * MiB);
    watchdog.check();
    expect(state.reclaims).toBe(0);
    expect(state.caps).toEqual([]);
    expect(watchdog.dramCapBytes).toBe(256 * MiB);
  });

  it('over the limit, reclaims garbage first and leaves DRAM alone when that is enough', () => {
    const { state, watchdog } = fakeProcess(100 * MiB, 256 * MiB);
    state.garbage = 80 * MiB;
    watchdog.check();
    expect(state.reclaims).toBe(1);
    expect(state.caps).toEqual([]);
  });

  it('between the aim and the limit, caps DRAM by the excess over the aim without forcing a collection, and pauses readahead', () => {
    const { state, watchdog } = fakeProcess(140 * MiB, 256 * MiB); // 396 MiB
    watchdog.check();
    expect(state.reclaims).toBe(0);
    expect(state.caps).toEqual([220 * MiB]);
    expect(state.pressure).toEqual([true]);
  });

  it('waits for a collection before moving the cap again, and gives the room back with hysteresis', () => {
    const { state, watchdog } = fakeProcess(200 * MiB, 256 * MiB);
    state.garbage = 10 * MiB;
    watchdog.check(); // 466 MiB: reclaim (210 -> 200), still 456: cap at 256 - (456 - 360)
    expect(state.reclaims).toBe(1);
    expect(state.caps).toEqual([160 * MiB]);
    expect(watchdog.dramCapBytes).toBe(160 * MiB);
    // The evicted 96 MiB are garbage: still over, but the cap does not move until a collection may have run.
    state.now += 500;
    watchdog.check();
    expect(state.caps).toEqual([160 * MiB]);
    expect(state.reclaims).toBe(1);
    state.now += 2_000;
    watchdog.check(); // the reclaim frees the evicted blocks: 360 MiB, at the aim
    expect(state.reclaims).toBe(2);
    expect(state.caps).toEqual([160 * MiB]);
    // The load drops by 150 MiB: 210 MiB, 130 MiB under 340: the cap would pass the capacity, so it is lifted.
    state.base = 50 * MiB;
    watchdog.check();
    expect(state.caps).toEqual([160 * MiB, undefined]);
    expect(watchdog.dramCapBytes).toBe(256 * MiB);
  });

  it('grows the cap by the room there is when it cannot lift it yet', () => {
    const { state, watchdog } = fakeProcess(200 * MiB, 256 * MiB);
    watchdog.check(); // 456: cap 160
    state.garbage = 0; // collected by the process itself
    state.base = 170 * MiB; // 330 MiB: 10 MiB of room below 340
    watchdog.check();
    expect(state.caps).toEqual([160 * MiB, 170 * MiB]);
    expect(state.reclaims).toBe(1);
  });

  it('never squeezes DRAM below its floor', () => {
    const { state, watchdog } = fakeProcess(600 * MiB, 256 * MiB);
    watchdog.check();
    expect(state.caps).toEqual([16 * MiB]);
  });

  it("gives upload buffers the DRAM tier's room, keeps readahead, and gives it back when they are freed", () => {
    const { state, watchdog } = fakeProcess(20 * MiB, 256 * MiB);
    state.uploads = 64 * MiB; // 340 MiB in all: under the aim
    watchdog.check();
    expect(state.caps).toEqual([192 * MiB]);
    expect(state.pressure).toEqual([false]);
    expect(state.reclaims).toBe(0);
    expect(watchdog.report().uploadBuffersBytes).toBe(64 * MiB);
    // More buffers: the cap follows at the next sample.
    state.uploads = 128 * MiB;
    state.garbage = 0;
    watchdog.check();
    expect(watchdog.dramCapBytes).toBe(128 * MiB);
    // Freed: the whole capacity again, cap lifted.
    state.uploads = 0;
    watchdog.check();
    expect(state.caps).toEqual([192 * MiB, 128 * MiB, undefined]);
    expect(state.pressure).toEqual([false, false, false]);
    expect(watchdog.dramCapBytes).toBe(256 * MiB);
  });

  it('never gives upload buffers DRAM below its floor', () => {
    const { state, watchdog } = fakeProcess(0, 100 * MiB);
    state.uploads = 250 * MiB; // 350 MiB in all: only the budget cap, 256 - 250, floored
    watchdog.check();
    expect(watchdog.dramCapBytes).toBe(16 * MiB);
  });

  it('applies the lower of the two caps, and keeps the resident cap when the buffers go', () => {
    const { state, watchdog } = fakeProcess(200 * MiB, 200 * MiB);
    state.uploads = 40 * MiB; // 440 MiB: budget cap 216; reclaimed, still 440: resident cap 200 - 80 = 120
    watchdog.check();
    expect(state.caps).toEqual([120 * MiB]);
    expect(state.pressure).toEqual([true]);
    // The buffers are freed and the evicted blocks collected: 320 MiB, 20 MiB under 340: that
    // room goes back to DRAM; the resident cap stays until it reaches the capacity.
    state.uploads = 0;
    state.garbage = 0;
    watchdog.check();
    expect(state.caps).toEqual([120 * MiB, 140 * MiB]);
  });

  it('reports the last sample and the reclaims without sampling again', () => {
    const { state, watchdog } = fakeProcess(200 * MiB, 256 * MiB);
    watchdog.check();
    const samples = state.samples;
    const report = watchdog.report();
    expect(state.samples).toBe(samples);
    expect(report.limitBytes).toBe(400 * MiB);
    expect(report.rssBytes).toBe(456 * MiB); // sampled again after the reclaim (no garbage to free)
    expect(report.reclaims).toBe(1);
    expect(report.reclaimMs).toBe(30);
    expect(report.dramCapBytes).toBe(160 * MiB);
  });
});
