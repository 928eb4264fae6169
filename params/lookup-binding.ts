import { loadAddon } from '../native/index.js';

/** An opaque table handle of the native kernel; it keeps the table's Buffers alive. */
export type NativeTableHandle = { readonly __nativeTable: unique symbol };
/** An opaque handle of a mapped overlay file (native/src/strata_overlay.c). */
export type NativeOverlayHandle = { readonly __nativeOverlay: unique symbol };

/** The calls of native/src/strata_lookup.c (its header comment has the contracts). */
export interface LookupBinding {
  crc32c(data: Uint8Array, crc?: number, threads?: number): number;
  table(index: Buffer, first: Float64Array, homes: Float64Array, chunks: Buffer[], chunkShift: number, dim: number, seed: number, keyCount: number): NativeTableHandle;
  mget(handle: NativeTableHandle, keys: Uint32Array, n: number, from: number, to: number, out: Uint32Array, overlay?: NativeOverlayHandle): number;
  /** `populate` (default true): fill the index's page tables at once, for a mapping that answers lookups. */
  mapTable(fd: number, indexOffset: number, indexBytes: number, valuesOffset: number, valuesBytes: number, first: Float64Array, homes: Float64Array, dim: number, seed: number, keyCount: number, populate?: boolean): NativeTableHandle;
  crc32cOf(handle: NativeTableHandle, region: 0 | 1, crc: number, threads: number): number;
  /** CRC-32C of a byte range of a file read with pread (not a mapping), continuing `crc`, on up to `threads` threads. */
  crc32cOfFile(fd: number, offset: number, length: number, crc: number, threads: number): number;
  slotRow(handle: NativeTableHandle, slot: number): number;
  resident(handle: NativeTableHandle): number;
  unmapTable(handle: NativeTableHandle): void;
  overlayMap(fd: number, table?: NativeTableHandle): NativeOverlayHandle;
  /** [epoch, records, slotsUsed, liveKeys, rolledBackRecords] */
  overlayRecover(handle: NativeOverlayHandle): [number, number, number, number, number];
  /**
   * Resolves [epoch, records, slotsUsed, liveKeys, chunks, pausedChunks, sleptMs, cpuMs, wallMs]
   * once the delta is committed and published: the state, then what its pacing did (chunks of
   * work, chunks after which it slept because lookups were running, the time slept, the CPU
   * time of the applying thread and its wall time).
   */
  overlayApply(handle: NativeOverlayHandle, body: Uint8Array, upserts: number, deletes: number): Promise<[number, number, number, number, number, number, number, number, number]>;
  /** Sets how this overlay's next applies pace themselves while lookups run; answers the previous [share, windowMs]. share 1 or windowMs 0: never paced. */
  overlayPacing(handle: NativeOverlayHandle, share: number, windowMs: number): [number, number];
  /** [publishedEpoch, records, slotsUsed, liveKeys, recordCapacity, maxSlotsUsed, baseTag, dim, logCrc] */
  overlayInfo(handle: NativeOverlayHandle): [number, number, number, number, number, number, number, number, number];
  overlayUnmap(handle: NativeOverlayHandle): void;
}

let loaded: LookupBinding | null | undefined;

/**
 * The native lookup kernel and CRC-32C, built by `npm install` / `npm ci` with the mmap
 * addon, or undefined when it is not built: callers then use the JavaScript versions, which
 * give the same answers more slowly. Setting STRATA_PARAMS_NATIVE=0 forces that fallback
 * (the tests and the benchmark compare the two).
 */
export function lookupBinding(): LookupBinding | undefined {
  if (loaded === undefined) {
    try {
      loaded = process.env.STRATA_PARAMS_NATIVE === '0' ? null : loadAddon<LookupBinding>('strata_lookup');
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}
