import { describe, expect, it } from 'vitest';
import { UploadSlots, type SlotTimers } from './slots.js';

/** Timers the test fires by hand: `due` holds what is scheduled, in order. */
function manualTimers() {
  const due: Array<{ callback: () => void; ms: number; cleared: boolean }> = [];
  const timers: SlotTimers = {
    set: (callback, ms) => {
      const timer = { callback, ms, cleared: false };
      due.push(timer);
      return timer;
    },
    clear: (timer) => {
      (timer as (typeof due)[number]).cleared = true;
    },
  };
  const fire = () => {
    for (const timer of due.splice(0)) if (!timer.cleared) timer.callback();
  };
  return { timers, due, fire };
}

describe('UploadSlots', () => {
  it('counts its pooled buffers as held, reuses them, and frees them once idle', async () => {
    const { timers, due, fire } = manualTimers();
    const slots = new UploadSlots(4, 1000, timers);
    expect(slots.heldBytes).toBe(0);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const seen: number[] = [];
    const first = slots.run(1000, async (buffer) => {
      seen.push(slots.heldBytes);
      await gate;
      return buffer.length;
    });
    const second = slots.run(600, async (buffer) => {
      seen.push(slots.heldBytes);
      await gate;
      return buffer.length;
    });
    await Promise.resolve();
    release();
    expect(await Promise.all([first, second])).toEqual([1000, 600]);
    expect(seen).toEqual([1000, 2000]);
    // Idle now: the two buffers stay for reuse until the idle timer fires.
    expect(slots.heldBytes).toBe(2000);
    expect(due.filter((t) => !t.cleared)).toHaveLength(1);
    await slots.run(500, async () => expect(slots.heldBytes).toBe(2000));
    fire();
    expect(slots.heldBytes).toBe(0);
  });

  it('keeps its buffers while parts are in flight when the idle timer fires', async () => {
    const { timers, fire } = manualTimers();
    const slots = new UploadSlots(2, 1000, timers);
    await slots.run(1000, async () => undefined);
    let release!: () => void;
    const busy = slots.run(1000, () => new Promise<void>((r) => (release = r)));
    await Promise.resolve();
    fire(); // the timer of the first idle spell (cleared by the second run) and nothing else
    expect(slots.heldBytes).toBe(1000);
    release();
    await busy;
    fire();
    expect(slots.heldBytes).toBe(0);
  });

  it('counts a body larger than a buffer while it is in flight, and takes the slots its size needs', async () => {
    const { timers } = manualTimers();
    const slots = new UploadSlots(4, 1000, timers);
    let during = 0;
    await slots.run(2500, async (buffer) => {
      during = slots.heldBytes;
      expect(buffer.length).toBe(2500);
    });
    expect(during).toBe(2500);
    expect(slots.heldBytes).toBe(0);
  });
});
