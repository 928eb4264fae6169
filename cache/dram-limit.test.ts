import { describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { DramTier } from './dram-tier.js';

const block = (n: number) => Buffer.alloc(100, n);

describe('DramTier.limit (the memory watchdog squeezing DRAM)', () => {
  it('evicts least recently used blocks down to the cap, reports them as evictions, and holds the cap until lifted', async () => {
    const tier = new DramTier({ capacityBytes: 1000 }, silentLogger());
    const evicted: string[] = [];
    tier.onEvict((id) => evicted.push(id));
    for (let i = 0; i < 8; i++) tier.putNow(`b${i}`, block(i));
    tier.getNow('b0'); // recently used: survives
    tier.limit(350);
    expect(tier.usedBytes).toBe(300);
    expect(evicted).toEqual(['b1', 'b2', 'b3', 'b4', 'b5']);
    expect(tier.has('b0')).toBe(true);
    // New blocks push older ones out at the cap, not at the capacity.
    tier.putNow('b8', block(8));
    expect(tier.usedBytes).toBe(300);
    expect(tier.has('b6')).toBe(false);
    // A block bigger than the cap is refused.
    expect(tier.putNow('big', Buffer.alloc(400))).toBe(false);
    tier.limit(undefined);
    for (let i = 9; i < 15; i++) tier.putNow(`b${i}`, block(i));
    expect(tier.usedBytes).toBe(900);
    expect(tier.stats().capacityBytes).toBe(1000);
  });
});
