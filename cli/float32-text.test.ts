import { describe, expect, it } from 'vitest';
import { float32Shortest } from './float32-text.js';

describe('float32Shortest', () => {
  it('gives the shortest decimal that reads back as the same float32', () => {
    expect(float32Shortest(Math.fround(0.1))).toBe(0.1);
    expect(String(Math.fround(0.1))).toBe('0.10000000149011612'); // what was printed before
    expect(float32Shortest(Math.fround(1 / 3))).toBe(0.33333334);
    expect(float32Shortest(Math.fround(16777217))).toBe(16777216);
    expect(float32Shortest(Math.fround(3.4028234663852886e38))).toBe(3.4028235e38);
    expect(float32Shortest(Math.fround(1e-45))).toBe(1e-45);
    for (const v of [0, -0, 1, -2.5, NaN, Infinity]) expect(Object.is(float32Shortest(v), v)).toBe(true);
  });
  it('round-trips through float32 for random values', () => {
    const words = new Uint32Array(2_000).map(() => (Math.random() * 2 ** 32) >>> 0);
    for (const v of new Float32Array(words.buffer)) {
      if (!Number.isFinite(v)) continue;
      const short = float32Shortest(v);
      expect(Math.fround(short)).toBe(v);
      // Shortest: one digit fewer no longer reads back as the same float32.
      const digits = short.toExponential().split('e')[0]!.replace(/[-.]/g, '').length;
      if (digits > 1) expect(Math.fround(Number(v.toPrecision(digits - 1)))).not.toBe(v);
    }
  });
});
