import type { ObjectRef } from '../store/index.js';
import type { FetchIntent } from './fetch-request.js';
import type { ReadSession } from './object-reader.js';
import type { SequentialDetector } from './sequential-detector.js';

/** One open handle's state in the block cache: its access pattern, its fetch intent and, without DRAM, the block it read last. */
export class CacheSession implements ReadSession {
  readonly ref: ObjectRef;
  readonly detector: SequentialDetector;
  /** What this session's fetches are for; its readahead keeps the priority. */
  readonly intent: FetchIntent;
  /** Without a DRAM tier, the block this session read last (its bytes reserved in the I/O pool). */
  held: { index: number; bytes: Buffer } | undefined;
  /** The last block and window readahead looked at: reads within one block (32 of 128 KiB in 4 MiB) look once. */
  readaheadSeen = { lastBlock: -1, window: 0 };

  constructor(ref: ObjectRef, detector: SequentialDetector, intent: FetchIntent) {
    this.ref = ref;
    this.detector = detector;
    this.intent = intent;
  }
}
