import { describe, expect, it } from 'vitest';
import type { FetchPriority, FetchRequest } from '../cache/index.js';
import { FetchScheduler } from './fetch-scheduler.js';

const ref = { storeId: 's', key: 'k', etag: 'e', size: 1 };
const request = (r: typeof ref, priority: FetchPriority): FetchRequest => ({ ref: r, range: { start: 0, length: 1 }, priority, origin: priority === 'background' ? 'warm' : 'read' });
const tick = () => new Promise((r) => setImmediate(r));

describe('FetchScheduler', () => {
  it('admits 32 background fetches when idle, 2 while a foreground fetch is in flight', async () => {
    const scheduler = new FetchScheduler();
    const pending: Array<{ key: string; done: () => void }> = [];
    const inFlight = (key: string) => pending.filter((p) => p.key === key).length;
    const fetch = scheduler.wrap((r) => new Promise<Buffer>((resolve) => pending.push({ key: r.ref.key, done: () => resolve(Buffer.alloc(0)) })));

    const idleBatch = Promise.all(Array.from({ length: 40 }, () => fetch(request({ ...ref, key: 'idle' }, 'background'))));
    await tick();
    expect(inFlight('idle')).toBe(32);
    for (const p of pending.splice(0)) p.done();
    await tick();
    for (const p of pending.splice(0)) p.done();
    await idleBatch;

    const foreground = fetch(request({ ...ref, key: 'fg' }, 'foreground'));
    const busyBatch = Promise.all(Array.from({ length: 20 }, () => fetch(request({ ...ref, key: 'busy' }, 'background'))));
    await tick();
    expect(inFlight('fg')).toBe(1);
    expect(inFlight('busy')).toBe(2);
    pending.find((p) => p.key === 'fg')!.done();
    await foreground;
    await new Promise((r) => setTimeout(r, 250)); // past the foreground linger
    // The foreground fetch is done, and finished background fetches make room for more.
    for (const p of pending.filter((x) => x.key === 'busy').slice(0, 1)) {
      pending.splice(pending.indexOf(p), 1);
      p.done();
    }
    await tick();
    await tick();
    expect(inFlight('busy')).toBe(19);
    for (;;) {
      const next = pending.shift();
      if (!next) break;
      next.done();
      await tick();
    }
    await busyBatch;
  });

  it('throttles background fetches while other foreground work (a lookup) runs, and for the linger after', async () => {
    const scheduler = new FetchScheduler();
    const pending: Array<() => void> = [];
    const fetch = scheduler.wrap(() => new Promise<Buffer>((resolve) => pending.push(() => resolve(Buffer.alloc(0)))));
    let finishLookup!: (value: string) => void;
    const lookup = scheduler.foreground(() => new Promise<string>((resolve) => (finishLookup = resolve)));
    const batch = Promise.all(Array.from({ length: 10 }, () => fetch(request(ref, 'background'))));
    await tick();
    expect(pending).toHaveLength(2);
    finishLookup('found');
    expect(await lookup).toBe('found');
    pending.shift()!();
    await tick();
    await tick();
    expect(pending).toHaveLength(2); // still within the linger: one out, one in
    await new Promise((r) => setTimeout(r, 250));
    expect(pending).toHaveLength(9);
    while (pending.length > 0) {
      pending.shift()!();
      await tick();
    }
    await batch;
  });

  it('passes a foreground failure through and still re-admits background work', async () => {
    const scheduler = new FetchScheduler();
    await expect(scheduler.foreground(() => Promise.reject(new Error('store down')))).rejects.toThrow('store down');
    const pending: Array<() => void> = [];
    const fetch = scheduler.wrap(() => new Promise<Buffer>((resolve) => pending.push(() => resolve(Buffer.alloc(0)))));
    const batch = Promise.all(Array.from({ length: 5 }, () => fetch(request(ref, 'background'))));
    await new Promise((r) => setTimeout(r, 250));
    expect(pending).toHaveLength(5);
    pending.splice(0).forEach((done) => done());
    await batch;
  });
});
