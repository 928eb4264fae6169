import { describe, expect, it } from 'vitest';
import { metricsRegistry } from '../telemetry/index.js';
import { timedRequest } from './store-metrics.js';

async function getsInFlight(): Promise<number> {
  const values = (await metricsRegistry.getSingleMetric('strata_store_requests_in_flight')?.get())?.values ?? [];
  return values.find((v) => v.labels.request === 'get')?.value ?? 0;
}

describe('timedRequest', () => {
  it('counts a request in flight until it ends, whether it succeeds or fails', async () => {
    const before = await getsInFlight();
    let finish!: () => void;
    let fail!: (err: Error) => void;
    const ok = timedRequest('get', () => new Promise<string>((resolve) => (finish = () => resolve('body'))));
    const bad = timedRequest('get', () => new Promise<string>((_, reject) => (fail = reject)));
    expect((await getsInFlight()) - before).toBe(2);
    finish();
    expect(await ok).toBe('body');
    expect((await getsInFlight()) - before).toBe(1);
    fail(new Error('store down'));
    await expect(bad).rejects.toThrow('store down');
    expect((await getsInFlight()) - before).toBe(0);
  });
});
