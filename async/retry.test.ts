import { describe, expect, it } from 'vitest';
import { backoffDelay, retry, type Backoff, type RetryOptions } from './retry.js';

const EQUAL: Backoff = { baseMs: 200, maxMs: 30_000, jitter: 'equal' };
const FULL: Backoff = { baseMs: 200, maxMs: 20_000, jitter: 'full' };

/** A sleep that records the waits and returns at once (or rejects if the signal aborted). */
function recordingSleep(): { waits: number[]; sleep: NonNullable<RetryOptions['sleep']> } {
  const waits: number[] = [];
  return {
    waits,
    sleep: async (ms, signal) => {
      waits.push(ms);
      if (signal?.aborted) throw signal.reason;
    },
  };
}

describe('backoff', () => {
  it('grows exponentially to the cap, with jitter between half and all of the step', () => {
    expect(backoffDelay(1, EQUAL, () => 0)).toBe(100);
    expect(backoffDelay(1, EQUAL, () => 0.999999)).toBe(200);
    expect(backoffDelay(4, EQUAL, () => 0.5)).toBe(1200);
    expect(backoffDelay(60, EQUAL, () => 1)).toBe(30_000);
  });

  it('with full jitter waits anywhere below the step (the AWS SDK strategy)', () => {
    expect(backoffDelay(1, FULL, () => 0)).toBe(0);
    expect(backoffDelay(1, FULL, () => 0.5)).toBe(100);
    expect(backoffDelay(3, FULL, () => 0.5)).toBe(400);
    expect(backoffDelay(40, FULL, () => 0.5)).toBe(10_000);
  });
});

describe('retry', () => {
  it('retries until an attempt succeeds, waiting the backoff between, and reports each failure', async () => {
    const { waits, sleep } = recordingSleep();
    const failures: Array<[string, number]> = [];
    const value = await retry(
      async (n) => {
        if (n < 4) throw new Error(`fail ${n}`);
        return n * 10;
      },
      { backoff: EQUAL, sleep, random: () => 0, onRetry: (err, n) => failures.push([(err as Error).message, n]) },
    );
    expect(value).toBe(40);
    expect(waits).toEqual([100, 200, 400]);
    expect(failures).toEqual([
      ['fail 1', 1],
      ['fail 2', 2],
      ['fail 3', 3],
    ]);
  });

  it('rejects with the error when retryable says no, without waiting', async () => {
    const { waits, sleep } = recordingSleep();
    const err = new Error('for good');
    await expect(retry(() => Promise.reject(err), { backoff: EQUAL, sleep, retryable: (_e, n) => n < 3 })).rejects.toBe(err);
    expect(waits).toHaveLength(2);
  });

  it('gives up quietly (undefined, no report) when the signal aborted during an attempt', async () => {
    const { waits, sleep } = recordingSleep();
    const abort = new AbortController();
    const reported: unknown[] = [];
    const value = await retry(
      async () => {
        abort.abort();
        throw new Error('interrupted');
      },
      { backoff: EQUAL, sleep, signal: abort.signal, onRetry: (e) => reported.push(e) },
    );
    expect(value).toBeUndefined();
    expect(reported).toEqual([]);
    expect(waits).toEqual([]);
  });

  it('starts no attempt once the signal aborted, and gives up when it aborts during a wait', async () => {
    const aborted = new AbortController();
    aborted.abort();
    let calls = 0;
    expect(await retry(async () => ++calls, { backoff: EQUAL, signal: aborted.signal })).toBeUndefined();
    expect(calls).toBe(0);

    const abort = new AbortController();
    const value = await retry(
      async () => {
        calls++;
        throw new Error('down');
      },
      { backoff: { baseMs: 60_000, maxMs: 60_000, jitter: 'equal' }, signal: abort.signal, onRetry: () => setImmediate(() => abort.abort()) },
    );
    expect(value).toBeUndefined();
    expect(calls).toBe(1);
  });

  it('stops after a reported failure, or after the wait, once stopped() says so', async () => {
    const { waits, sleep } = recordingSleep();
    let stop = false;
    let calls = 0;
    const value = await retry(
      async () => {
        calls++;
        throw new Error('down');
      },
      { backoff: EQUAL, sleep, random: () => 0, stopped: () => stop, onRetry: (_e, n) => (stop = n === 2) },
    );
    expect(value).toBeUndefined();
    expect(calls).toBe(2);
    expect(waits).toEqual([100]); // the report of failure 2 stopped it before its wait

    stop = false;
    const waited = recordingSleep();
    const after = await retry(
      async () => {
        throw new Error('down');
      },
      {
        backoff: EQUAL,
        sleep: async (ms) => {
          await waited.sleep(ms);
          stop = true;
        },
        stopped: () => stop,
      },
    );
    expect(after).toBeUndefined();
    expect(waited.waits).toHaveLength(1);
  });
});
