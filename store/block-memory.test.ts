import { describe, expect, it } from 'vitest';
import { loadAddon } from '../native/index.js';
import { blockMemory } from './block-memory.js';

const MiB = 1024 * 1024;

describe('blockMemory', () => {
  it('gives writable memory of exactly the length, huge-page backed for multiples of 2 MiB', () => {
    for (const length of [4 * MiB, 2 * MiB, 3 * MiB, 256 * 1024, 1, 0]) {
      const memory = blockMemory(length);
      expect(memory.length).toBe(length);
      memory.fill(0xa5);
      expect(Buffer.from(memory).equals(Buffer.alloc(length, 0xa5))).toBe(true);
    }
    // The block memory of a full block is the addon's: 2 MiB-aligned, every page present once written.
    const native = loadAddon<{ hugeBlock(length: number): Buffer; resident(buffer: Buffer): number }>('strata_mmap');
    const block = native.hugeBlock(4 * MiB);
    block.fill(1);
    expect(native.resident(block)).toBe(4 * MiB);
    expect(() => native.hugeBlock(3 * MiB)).toThrow(/multiple of 2 MiB/);
    expect(() => native.hugeBlock(0)).toThrow(/multiple of 2 MiB/);
  });
});
