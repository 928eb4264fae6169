/**
 * Tells sequential readers from random ones, per read session, and says how many blocks
 * ahead to prefetch. A read that starts within `tolerance` bytes of where the previous
 * one ended is sequential (the kernel keeps several 128 KiB FUSE reads in flight and
 * they can arrive slightly out of order). Each time a sequential reader enters a new
 * block the window doubles (1, 2, 4, … up to `maxBlocks`); any other read resets it to 0.
 */
export class SequentialDetector {
  readonly #blockSize: number;
  readonly #maxBlocks: number;
  readonly #tolerance: number;
  #lastEnd = -1;
  #lastBlock = -1;
  #window = 0;

  constructor(blockSize: number, maxBlocks: number, tolerance: number) {
    this.#blockSize = blockSize;
    this.#maxBlocks = maxBlocks;
    this.#tolerance = tolerance;
  }

  /** Records a read of [offset, end); answers the readahead window in blocks (0 = none). */
  observe(offset: number, end: number): number {
    const block = Math.floor((end - 1) / this.#blockSize);
    const sequential = this.#lastEnd >= 0 && Math.abs(offset - this.#lastEnd) <= this.#tolerance;
    if (!sequential) this.#window = 0;
    else if (this.#window === 0) this.#window = Math.min(1, this.#maxBlocks);
    else if (block > this.#lastBlock) this.#window = Math.min(this.#window * 2, this.#maxBlocks);
    this.#lastEnd = Math.max(end, sequential ? this.#lastEnd : 0);
    this.#lastBlock = Math.max(block, sequential ? this.#lastBlock : -1);
    return this.#window;
  }
}
