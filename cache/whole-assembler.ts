import { setTimeout as sleep } from 'node:timers/promises';
import type { ObjectRef } from '../store/index.js';
import type { MemoryBudget } from './memory-budget.js';
import { blockId, blockKeyOf, objectVersionId } from './block-key.js';
import type { Tier } from './tier.js';

/**
 * Object versions waiting to be made whole; past this, offers are ignored until the queue
 * drains (an object is offered again at its next open or close, so nothing is lost but time).
 * 1,024 entries are a few hundred KiB of refs.
 */
const QUEUE_MAX = 1024;
/** How long, and how many times, an assembly waits for the I/O pool to spare a block buffer (10 s in all). */
const POOL_WAIT_MS = 200;
const POOL_TRIES = 50;

/** What the assembler needs of its block cache. */
export interface WholeAssemblerScope {
  /** The file tier that makes whole files (the pmem or the NVMe tier). */
  readonly tier: Tier & Required<Pick<Tier, 'assembleWhole' | 'wholeFile'>>;
  readonly blockSize: number;
  /** The I/O pool: assembly copies through one block buffer, reserved here. */
  readonly pool: MemoryBudget;
  /** Resolves once the write-throughs queued or running now have finished. */
  settled(): Promise<void>;
  closed(): boolean;
}

/**
 * Makes object versions whole in one file tier (pmem or NVMe), in the background: the block
 * cache offers an object when a handle of it opens or closes (and when a warmup writes its last
 * block); once the write-through in progress has settled, the tier copies its blocks into one
 * whole-object file if all of them are there (its `assembleWhole`). One object at a time, off every
 * reader's path, with one block buffer from the I/O pool (waited for a while when the pool has
 * none to spare; past that the next offer retries).
 */
export class WholeAssembler {
  readonly #s: WholeAssemblerScope;
  readonly #queue = new Map<string, ObjectRef>();
  #running: Promise<void> | undefined;

  constructor(scope: WholeAssemblerScope) {
    this.#s = scope;
  }

  /**
   * `ref` may be whole in the tier now or soon: queue it unless it is whole already or queued.
   * Objects of one block are left as they are: their block file is already one file the FUSE
   * threads answer with one pread, and a copy would cost a rewrite and two fsyncs per small file
   * (data sets of many small samples) for one READ request saved per open.
   */
  offer(ref: ObjectRef): void {
    if (ref.size <= this.#s.blockSize || this.#s.closed()) return;
    const id = objectVersionId(ref);
    if (this.#queue.has(id) || this.#queue.size >= QUEUE_MAX || this.#s.tier.wholeFile(id, { touch: false }) !== undefined) return;
    this.#queue.set(id, ref);
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
    });
  }

  /** The path of `ref`'s whole file in the tier, counted as a use; undefined when there is none. */
  wholeFile(ref: ObjectRef): string | undefined {
    return this.#s.tier.wholeFile(objectVersionId(ref))?.path;
  }

  /** Resolves once the queue is empty (tests, and `close`). */
  async settled(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #drain(): Promise<void> {
    const s = this.#s;
    while (this.#queue.size > 0 && !s.closed()) {
      await s.settled();
      const [id, ref] = this.#queue.entries().next().value!;
      this.#queue.delete(id);
      if (s.closed() || !this.#allInTier(ref)) continue;
      if (!(await this.#reserveBuffer())) continue;
      try {
        await s.tier.assembleWhole(id, ref.size, s.blockSize);
      } finally {
        s.pool.release(s.blockSize);
      }
    }
  }

  /**
   * One block buffer from the I/O pool, on readahead's terms: none while the pool has no block
   * to spare beyond the demand reserve or the memory watchdog refuses readahead (the process over
   * its limit, as a 1 GiB read through a pmem tier once found when it closed). Objects are
   * offered mostly when a read closes, so the assembler waits (POOL_WAIT_MS at a time, POOL_TRIES
   * times) rather than drop the object until its next open, which would then read through
   * blocks instead of the whole file. False when none came or the cache closed.
   */
  async #reserveBuffer(): Promise<boolean> {
    const s = this.#s;
    for (let tries = 0; tries < POOL_TRIES && !s.closed(); tries++) {
      if (s.pool.tryReserveReadahead(s.blockSize)) return true;
      await sleep(POOL_WAIT_MS, undefined, { ref: false });
    }
    return false;
  }

  #allInTier(ref: ObjectRef): boolean {
    for (let index = 0; index * this.#s.blockSize < ref.size; index++) if (!this.#s.tier.has(blockId(blockKeyOf(ref, index)))) return false;
    return true;
  }
}
