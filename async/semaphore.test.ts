import { describe, expect, it } from 'vitest';
import { Semaphore } from './semaphore.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('Semaphore', () => {
  it('admits waiters in arrival order: a small request does not overtake a large one', async () => {
    const s = new Semaphore(4);
    await s.acquire(3);
    const order: string[] = [];
    const big = s.acquire(4).then(() => order.push('big'));
    const small = s.acquire(1).then(() => order.push('small'));
    await tick();
    expect(order).toEqual([]); // one unit is free, but the small request waits behind the big one
    expect(s.waiting).toBe(2);
    s.release(3);
    await big;
    expect(order).toEqual(['big']);
    s.release(4);
    await small;
    expect(order).toEqual(['big', 'small']);
    expect([s.used, s.peak, s.waiting]).toEqual([1, 4, 0]);
  });

  it('tryAcquire refuses while anyone waits or when the headroom would not stay free', async () => {
    const s = new Semaphore(10);
    expect(s.tryAcquire(6, 4)).toBe(true);
    expect(s.tryAcquire(1, 4)).toBe(false); // 6 + 1 + 4 > 10
    expect(s.tryAcquire(1)).toBe(true);
    const waiter = s.acquire(5);
    expect(s.tryAcquire(1)).toBe(false); // fits, but someone waits
    s.release(7);
    await waiter;
    expect(s.used).toBe(5);
  });

  it('an aborted wait rejects with the reason, takes nothing, and lets the next waiter in', async () => {
    const s = new Semaphore(2);
    await s.acquire(2);
    const abort = new AbortController();
    const first = s.acquire(2, abort.signal);
    let second = false;
    const next = s.acquire(1).then(() => (second = true));
    abort.abort(new Error('gave up'));
    await expect(first).rejects.toThrow('gave up');
    s.release(1);
    await next;
    expect(second).toBe(true);
    expect(s.used).toBe(2);
    await expect(s.acquire(1, abort.signal)).rejects.toThrow('gave up');
  });

  it('changed() wakes on release and notify, and answers false when its signal aborts', async () => {
    const s = new Semaphore(1);
    const onRelease = s.changed();
    s.force(1);
    s.release(1);
    expect(await onRelease).toBe(true);
    const onNotify = s.changed();
    s.notify();
    expect(await onNotify).toBe(true);
    const abort = new AbortController();
    const aborted = s.changed(abort.signal);
    abort.abort();
    expect(await aborted).toBe(false);
  });

  it('force counts units past the capacity; release never goes below zero', () => {
    const s = new Semaphore(5);
    s.force(8);
    expect([s.used, s.fits(1)]).toEqual([8, false]);
    s.release(20);
    expect([s.used, s.peak]).toEqual([0, 8]);
  });

  it('asks a capacity function at every decision; notify admits once it grew', async () => {
    let limit = 1;
    const s = new Semaphore(() => limit);
    await s.acquire(1);
    let admitted = false;
    const waiter = s.acquire(1).then(() => (admitted = true));
    await tick();
    expect(admitted).toBe(false);
    limit = 2;
    s.notify();
    await waiter;
    expect([admitted, s.capacity, s.used]).toEqual([true, 2, 2]);
  });

  it('run releases the units however the body ends', async () => {
    const s = new Semaphore(1);
    await expect(s.run(1, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(s.used).toBe(0);
    expect(await s.run(1, async () => 7)).toBe(7);
  });
});
