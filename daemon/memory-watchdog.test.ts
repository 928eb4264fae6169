import { describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { MemoryWatchdog } from './memory-watchdog.js';

const MiB = 1024 * 1024;

/** A process whose resident size is `base` plus what DRAM holds plus garbage that only a reclaim frees. */
function fakeProcess(base: number, dram: number) {
  const state = { base, dram, garbage: 0, now: 0, reclaims: 0, caps: [] as Array<number | undefined> };
  const watchdog = new MemoryWatchdog({
    limitBytes: 400 * MiB,
    dramBytes: 256 * MiB,
    minDramBytes: 16 * MiB,
    rss: () => state.base + state.dram + state.garbage,
    dramUsed: () => state.dram,
    reclaim: () => {
      state.reclaims += 1;
      state.garbage = 0;
    },
    limitDram: (bytes) => {
      state.caps.push(bytes);
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
  it('does nothing while the process is under its limit', () => {
    const { state, watchdog } = fakeProcess(100 * MiB, 256 * MiB);
    watchdog.check();
    expect(state.reclaims).toBe(0);
    expect(state.caps).toEqual([]);
    expect(watchdog.dramCapBytes).toBe(256 * MiB);
  });

  it('reclaims garbage first and leaves DRAM alone when that is enough', () => {
    const { state, watchdog } = fakeProcess(100 * MiB, 256 * MiB);
    state.garbage = 80 * MiB;
    watchdog.check();
    expect(state.reclaims).toBe(1);
    expect(state.caps).toEqual([]);
  });

  it('shrinks DRAM by the excess after a reclaim, waits for the next reclaim before shrinking again, and gives the room back with hysteresis', () => {
    const { state, watchdog } = fakeProcess(200 * MiB, 256 * MiB);
    state.garbage = 10 * MiB;
    watchdog.check(); // 466 MiB: reclaim (210 -> 200 base), still 456: cap at 256 - 56
    expect(state.caps).toEqual([200 * MiB]);
    expect(watchdog.dramCapBytes).toBe(200 * MiB);
    // Evicted blocks are garbage: still over, but no new cap until a reclaim may run again.
    state.now += 500;
    watchdog.check();
    expect(state.caps).toEqual([200 * MiB]);
    state.now += 2_000;
    watchdog.check(); // reclaim frees the evicted 56 MiB: 400 MiB, not over
    expect(state.reclaims).toBe(2);
    expect(state.caps).toEqual([200 * MiB]);
    // The load drops by 100 MiB: DRAM gets the room back, minus the hysteresis (20 MiB of 400).
    state.base = 100 * MiB;
    watchdog.check();
    expect(state.caps).toEqual([200 * MiB, undefined]);
    expect(watchdog.dramCapBytes).toBe(256 * MiB);
  });

  it('grows the cap by the room there is when it cannot lift it yet', () => {
    const { state, watchdog } = fakeProcess(200 * MiB, 256 * MiB);
    watchdog.check(); // 456: cap 200
    state.now += 2_000;
    watchdog.check(); // garbage reclaimed: 400
    state.base = 170 * MiB; // 370 MiB: 10 MiB of room below 380
    watchdog.check();
    expect(state.caps).toEqual([200 * MiB, 210 * MiB]);
  });

  it('never squeezes DRAM below its floor', () => {
    const { state, watchdog } = fakeProcess(600 * MiB, 256 * MiB);
    watchdog.check();
    expect(state.caps).toEqual([16 * MiB]);
  });
});
