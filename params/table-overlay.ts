import { closeSync, openSync } from 'node:fs';
import type { DeltaBody } from './delta-body.js';
import type { LookupBinding, NativeOverlayHandle, NativeTableHandle } from './lookup-binding.js';
import { ParamsError } from './params-error.js';
import { RECORDS_PER_KEY } from './overlay-format.js';

/** The committed state of an overlay: deltas applied (epoch), records in its log, index slots in use, keys in the table. */
export interface OverlayState {
  readonly epoch: number;
  readonly records: number;
  readonly slotsUsed: number;
  readonly liveKeys: number;
  /** CRC-32C of the log's records below `records`. */
  readonly logCrc: number;
}

/**
 * What an apply's pacing did (docs/PARAMS.md, "Pacing"): while lookups run in the process, an
 * apply sleeps between its chunks of work to keep its thread's share of a core under a bound.
 */
export interface ApplyPacing {
  /** Chunks of work the apply was cut into. */
  readonly chunks: number;
  /** Chunks after which it slept, lookups being in progress. */
  readonly pausedChunks: number;
  readonly sleptMs: number;
  /** CPU time of the thread that applied it. */
  readonly cpuMs: number;
  readonly wallMs: number;
}

export interface OverlayOpenOptions {
  /**
   * The writer (the service's own thread): recovers the file (undoes a delta cut short,
   * checks every checksum) and may apply deltas. Lookup threads open it as readers only.
   */
  readonly writer: boolean;
}

/**
 * The in-place deltas of one table file, `<file>.overlay`, mapped by the native addon.
 * Lookups pass `handle` to the kernel, which patches the base table's answer with the
 * newest records of the published epoch; `apply` adds one delta on a libuv thread while
 * lookups go on. One writer: the service applies a table's deltas one at a time.
 */
export class TableOverlay {
  readonly path: string;
  readonly handle: NativeOverlayHandle;
  readonly #binding: LookupBinding;
  /** Records of a delta cut short by a crash that recovery undid (0 for a reader or a clean file). */
  readonly rolledBack: number;
  #closed = false;
  #lastPacing: ApplyPacing | undefined;

  private constructor(path: string, binding: LookupBinding, handle: NativeOverlayHandle, rolledBack: number) {
    this.path = path;
    this.#binding = binding;
    this.handle = handle;
    this.rolledBack = rolledBack;
  }

  /** Maps and (for the writer) recovers the overlay of the table whose header checksum is `baseTag`. PARAMS_BAD_TABLE when it is damaged or not this table's. */
  static open(path: string, binding: LookupBinding, table: NativeTableHandle, baseTag: number, options: OverlayOpenOptions): TableOverlay {
    const bad = (why: string, cause?: unknown) => new ParamsError('PARAMS_BAD_TABLE', `${path}: ${why}`, cause === undefined ? {} : { cause });
    let handle: NativeOverlayHandle;
    const fd = openSync(path, 'r+');
    try {
      handle = binding.overlayMap(fd, options.writer ? table : undefined);
    } catch (err) {
      throw bad((err as Error).message, err);
    } finally {
      closeSync(fd); // the addon keeps a duplicate for allocating the log
    }
    const info = binding.overlayInfo(handle);
    if (info[6] !== baseTag >>> 0) {
      binding.overlayUnmap(handle);
      throw bad('the overlay belongs to another version of the table');
    }
    let rolledBack = 0;
    if (options.writer) {
      try {
        rolledBack = binding.overlayRecover(handle)[4];
      } catch (err) {
        binding.overlayUnmap(handle);
        throw bad((err as Error).message, err);
      }
    }
    return new TableOverlay(path, binding, handle, rolledBack);
  }

  /** What the pacing of the last apply that succeeded did; undefined before the first. */
  get lastPacing(): ApplyPacing | undefined {
    return this.#lastPacing;
  }

  /** The committed state (the writer's view). */
  state(): OverlayState {
    const [epoch, records, slotsUsed, liveKeys, , , , , logCrc] = this.#binding.overlayInfo(this.handle);
    return { epoch, records, slotsUsed, liveKeys, logCrc };
  }

  /**
   * Past half of its records or of the keys it was sized for: time to fold the overlay into
   * a new base (compaction), leaving the other half for the deltas that arrive meanwhile.
   */
  wantsCompaction(): boolean {
    const [, records, slotsUsed, , recordCapacity] = this.#binding.overlayInfo(this.handle);
    const keyCapacity = recordCapacity / RECORDS_PER_KEY;
    return records * 2 > recordCapacity || slotsUsed * 2 > keyCapacity;
  }

  /** Whether a delta of `changes` upserts and deletes fits now. */
  fits(changes: number): boolean {
    const [, records, slotsUsed, , recordCapacity, maxSlotsUsed] = this.#binding.overlayInfo(this.handle);
    return records + changes <= recordCapacity && slotsUsed + changes <= maxSlotsUsed;
  }

  /**
   * Applies a decoded delta whose bytes are `body`: committed and visible to lookups when this
   * resolves. PARAMS_NO_SPACE when the tier cannot hold its records (nothing applied).
   */
  async apply(body: Buffer, delta: DeltaBody): Promise<OverlayState> {
    if (this.#closed) throw new ParamsError('INTERNAL', `${this.path}: delta on a closed overlay`);
    try {
      const [, , , , chunks, pausedChunks, sleptMs, cpuMs, wallMs] = await this.#binding.overlayApply(this.handle, body, delta.upserts, delta.deletes);
      this.#lastPacing = { chunks, pausedChunks, sleptMs, cpuMs, wallMs };
      return this.state();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOSPC') throw new ParamsError('PARAMS_NO_SPACE', `no room on the tier for the delta's records in ${this.path}; the served version is unchanged`, { cause: err });
      throw new ParamsError('INTERNAL', `${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Releases the mapping (after an apply in progress). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#binding.overlayUnmap(this.handle);
  }
}
