import { describe, expect, it } from 'vitest';
import type { FetchPriority, FetchRequest } from '../cache/index.js';
import { DEFAULT_FETCH_SCHEDULER_TUNING, FetchScheduler, type FetchSchedulerTuning, type SchedulerClock } from './fetch-scheduler.js';

const ref = { storeId: 's', key: 'k', etag: 'e', size: 1 };
const request = (r: typeof ref, priority: FetchPriority): FetchRequest => ({ ref: r, range: { start: 0, length: 1 }, priority, origin: priority === 'background' ? 'warm' : 'read' });
const tick = () => new Promise((r) => setImmediate(r));

/** The policy is tested with its own limits, not the daemon's tuned ones. */
const TUNING: FetchSchedulerTuning = { idleBackground: 6, busyBackground: 2, lingerMs: 100 };

/** A clock that moves only when the test says so; its timers fire as it passes them. */
class ManualClock implements SchedulerClock {
  #now = 0;
  #timers: Array<{ at: number; wake: () => void }> = [];

  now(): number {
    return this.#now;
  }

  timer(ms: number, wake: () => void): () => void {
    const entry = { at: this.#now + ms, wake };
    this.#timers.push(entry);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== entry);
    };
  }

  advance(ms: number): void {
    this.#now += ms;
    const due = this.#timers.filter((t) => t.at <= this.#now).sort((a, b) => a.at - b.at);
    this.#timers = this.#timers.filter((t) => t.at > this.#now);
    for (const t of due) t.wake();
  }
}

/** A scheduled fetch whose calls stay in flight until the test finishes them. */
function scripted(scheduler: FetchScheduler) {
  const pending: Array<{ key: string; done: () => void }> = [];
  const fetch = scheduler.wrap((r) => new Promise<Buffer>((resolve) => pending.push({ key: r.ref.key, done: () => resolve(Buffer.alloc(0)) })));
  const inFlight = (key: string) => pending.filter((p) => p.key === key).length;
  const finish = (key: string, count: number) => {
    for (const p of pending.filter((x) => x.key === key).slice(0, count)) {
      pending.splice(pending.indexOf(p), 1);
      p.done();
    }
  };
  const drain = async () => {
    for (;;) {
      const next = pending.shift();
      if (!next) break;
      next.done();
      await tick();
    }
  };
  return { fetch, pending, inFlight, finish, drain };
}

describe('FetchScheduler', () => {
  it('throttles background fetches to the busy limit while a foreground fetch is in flight and for the linger after, then opens up to the idle limit', async () => {
    const clock = new ManualClock();
    const scheduler = new FetchScheduler({ clock, tuning: TUNING });
    const { fetch, pending, inFlight, finish, drain } = scripted(scheduler);

    const idleBatch = Promise.all(Array.from({ length: 10 }, () => fetch(request({ ...ref, key: 'idle' }, 'background'))));
    await tick();
    expect(inFlight('idle')).toBe(TUNING.idleBackground);
    finish('idle', 1);
    await tick();
    await tick();
    expect(inFlight('idle')).toBe(TUNING.idleBackground); // a finished fetch makes room for the next
    await drain();
    await idleBatch;

    const foreground = fetch(request({ ...ref, key: 'fg' }, 'foreground'));
    const busyBatch = Promise.all(Array.from({ length: 10 }, () => fetch(request({ ...ref, key: 'busy' }, 'background'))));
    await tick();
    expect(inFlight('fg')).toBe(1); // foreground work is never held back
    expect(inFlight('busy')).toBe(TUNING.busyBackground);
    finish('fg', 1);
    await foreground;
    clock.advance(TUNING.lingerMs - 1);
    finish('busy', 1);
    await tick();
    await tick();
    expect(inFlight('busy')).toBe(TUNING.busyBackground); // within the linger: one out, one in
    clock.advance(2); // the linger has passed: no further event is needed to open up
    await tick();
    await tick();
    expect(inFlight('busy')).toBe(TUNING.idleBackground);
    expect(pending).toHaveLength(TUNING.idleBackground);
    await drain();
    await busyBatch;
  });

  it('throttles background fetches while other foreground work (a lookup) runs, and for the linger after', async () => {
    const clock = new ManualClock();
    const scheduler = new FetchScheduler({ clock, tuning: TUNING });
    const { fetch, pending, drain } = scripted(scheduler);
    let finishLookup!: (value: string) => void;
    const lookup = scheduler.foreground(() => new Promise<string>((resolve) => (finishLookup = resolve)));
    const batch = Promise.all(Array.from({ length: 10 }, () => fetch(request(ref, 'background'))));
    await tick();
    expect(pending).toHaveLength(TUNING.busyBackground);
    clock.advance(10 * TUNING.lingerMs); // a long lookup keeps the throttle on however long it takes
    await tick();
    expect(pending).toHaveLength(TUNING.busyBackground);
    finishLookup('found');
    expect(await lookup).toBe('found');
    pending.shift()!.done();
    await tick();
    await tick();
    expect(pending).toHaveLength(TUNING.busyBackground); // still within the linger: one out, one in
    clock.advance(TUNING.lingerMs + 1);
    await tick();
    expect(pending).toHaveLength(Math.min(TUNING.idleBackground, 10 - 1));
    await drain();
    await batch;
  });

  it('restarts the linger at the end of each foreground call', async () => {
    const clock = new ManualClock();
    const scheduler = new FetchScheduler({ clock, tuning: TUNING });
    const { fetch, pending, drain } = scripted(scheduler);
    await scheduler.foreground(async () => 'first');
    const batch = Promise.all(Array.from({ length: 10 }, () => fetch(request(ref, 'background'))));
    await tick();
    expect(pending).toHaveLength(TUNING.busyBackground);
    clock.advance(TUNING.lingerMs / 2);
    await scheduler.foreground(async () => 'second');
    clock.advance(TUNING.lingerMs / 2 + 1); // past the first linger, within the second
    await tick();
    expect(pending).toHaveLength(TUNING.busyBackground);
    clock.advance(TUNING.lingerMs / 2);
    await tick();
    expect(pending).toHaveLength(TUNING.idleBackground);
    await drain();
    await batch;
  });

  it('passes a foreground failure through and still re-admits background work once the linger ends', async () => {
    const clock = new ManualClock();
    const scheduler = new FetchScheduler({ clock, tuning: TUNING });
    await expect(scheduler.foreground(() => Promise.reject(new Error('store down')))).rejects.toThrow('store down');
    const { fetch, pending } = scripted(scheduler);
    const batch = Promise.all(Array.from({ length: 5 }, () => fetch(request(ref, 'background'))));
    await tick();
    expect(pending).toHaveLength(Math.min(5, TUNING.busyBackground));
    clock.advance(TUNING.lingerMs + 1);
    await tick();
    expect(pending).toHaveLength(5);
    pending.splice(0).forEach((p) => p.done());
    await batch;
  });

  it('runs with the real clock and the daemon tuning, which throttles when busy', async () => {
    expect(DEFAULT_FETCH_SCHEDULER_TUNING.busyBackground).toBeLessThan(DEFAULT_FETCH_SCHEDULER_TUNING.idleBackground);
    expect(DEFAULT_FETCH_SCHEDULER_TUNING.busyBackground).toBeGreaterThan(0);
    const scheduler = new FetchScheduler();
    const { fetch, pending } = scripted(scheduler);
    const done = fetch(request(ref, 'background'));
    await tick();
    expect(pending).toHaveLength(1);
    pending.shift()!.done();
    await done;
  });
});
