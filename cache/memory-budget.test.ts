import { describe, expect, it } from 'vitest';
import { MemoryBudget } from './memory-budget.js';
import { SequentialDetector } from './sequential-detector.js';

describe('MemoryBudget', () => {
  it('refuses readahead under pressure while demand reservations still go through', async () => {
    const budget = new MemoryBudget(100, 25);
    budget.underPressure = true;
    expect(budget.tryReserveReadahead(10)).toBe(false);
    await budget.reserve(10);
    expect(budget.tryReserve(10)).toBe(true);
    budget.underPressure = false;
    expect(budget.tryReserveReadahead(10)).toBe(true);
    expect(budget.usedBytes).toBe(30);
  });

  it('makes demand reservations wait for room, in order', async () => {
    const budget = new MemoryBudget(100, 25);
    await budget.reserve(60);
    const order: string[] = [];
    const first = budget.reserve(50).then(() => order.push('first'));
    const second = budget.reserve(10).then(() => order.push('second'));
    await Promise.resolve();
    expect(order).toEqual([]); // FIFO: the small one does not overtake the waiting big one
    budget.release(60);
    await Promise.all([first, second]);
    expect(order).toEqual(['first', 'second']);
    expect(budget.usedBytes).toBe(60);
    expect(budget.peakBytes).toBe(60);
  });

  it('refuses readahead that would eat into the demand reserve, and anything while readers wait', async () => {
    const budget = new MemoryBudget(100, 25);
    expect(budget.tryReserveReadahead(70)).toBe(true);
    expect(budget.tryReserveReadahead(10)).toBe(false); // 80 + 25 > 100
    expect(budget.tryReserve(10)).toBe(true);
    const waiting = budget.reserve(30);
    expect(budget.tryReserve(1)).toBe(false);
    budget.release(70);
    await waiting;
    expect(budget.usedBytes).toBe(40);
  });

  it('rejects a reservation larger than the pool, and a waiter whose signal aborts', async () => {
    const budget = new MemoryBudget(100, 25);
    await expect(budget.reserve(101)).rejects.toMatchObject({ code: 'CACHE_BUDGET_EXCEEDED' });
    await budget.reserve(100);
    const controller = new AbortController();
    const waiting = budget.reserve(1, controller.signal);
    controller.abort(new Error('closed'));
    await expect(waiting).rejects.toThrow('closed');
    budget.release(100);
    expect(budget.usedBytes).toBe(0);
  });

  it('admits the reservations queued behind a waiter whose signal aborts', async () => {
    const budget = new MemoryBudget(100, 25);
    await budget.reserve(60);
    const controller = new AbortController();
    const big = budget.reserve(50, controller.signal);
    let smallIn = false;
    const small = budget.reserve(30).then(() => (smallIn = true));
    await Promise.resolve();
    expect(smallIn).toBe(false); // FIFO: queued behind the big one
    controller.abort(new Error('gave up'));
    await expect(big).rejects.toThrow('gave up');
    await small;
    expect(budget.usedBytes).toBe(90);
  });
});

describe('SequentialDetector', () => {
  const BLOCK = 1024;

  it('grows the window 1, 2, 4, … per block a sequential reader enters, up to the cap', () => {
    const detector = new SequentialDetector(BLOCK, 8, 256);
    const windows: number[] = [];
    for (let offset = 0; offset < 8 * BLOCK; offset += 512) windows.push(detector.observe(offset, offset + 512));
    expect(windows[0]).toBe(0); // one read says nothing yet
    expect(windows[1]).toBe(1);
    expect(Math.max(...windows)).toBe(8);
    expect(windows).toEqual([...windows].sort((a, b) => a - b));
  });

  it('gives a random reader nothing and resets on a jump', () => {
    const detector = new SequentialDetector(BLOCK, 8, 256);
    for (const offset of [5000, 100, 9000, 3000]) expect(detector.observe(offset, offset + 100)).toBe(0);
    detector.observe(3100, 3200);
    expect(detector.observe(3200, 3300)).toBeGreaterThan(0);
    expect(detector.observe(90_000, 90_100)).toBe(0);
  });
});
