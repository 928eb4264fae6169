import { describe, expect, it } from 'vitest';
import { WorkQueue } from './work-queue.js';

describe('WorkQueue', () => {
  it('hands queued items out in order, then undefined once closed and drained', async () => {
    const queue = new WorkQueue<number>();
    queue.push(1);
    queue.push(2);
    queue.close();
    expect(await queue.take()).toBe(1);
    expect(await queue.take()).toBe(2);
    expect(await queue.take()).toBeUndefined();
    expect(() => queue.push(3)).toThrow(/after close/);
  });

  it('wakes waiting workers in the order they asked, one item each, and ends the rest at close', async () => {
    const queue = new WorkQueue<string>();
    const first = queue.take();
    const second = queue.take();
    const third = queue.take();
    queue.push('a');
    queue.push('b');
    expect(await first).toBe('a');
    expect(await second).toBe('b');
    expect(queue.size).toBe(0);
    queue.close();
    expect(await third).toBeUndefined();
  });

  it('ends a wait when its signal is aborted, and the next item goes to the next worker', async () => {
    const queue = new WorkQueue<number>();
    const controller = new AbortController();
    const cancelled = queue.take(controller.signal);
    const other = queue.take();
    controller.abort();
    expect(await cancelled).toBeUndefined();
    queue.push(7);
    expect(await other).toBe(7);
    expect(await queue.take(controller.signal)).toBeUndefined();
  });
});
