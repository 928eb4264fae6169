import { loadAddon } from '../native/index.js';

/** An open /dev/fuse connection of the addon; opaque to JavaScript. */
export type FuseSessionHandle = { readonly __brand: 'FuseSessionHandle' };

/** The calls of native/src/strata_fuse.c (see its header comment for the contracts). */
export interface FuseBinding {
  mount(target: string, source: string, options: string, maxWrite: number, wantPassthrough: boolean): FuseSessionHandle;
  start(session: FuseSessionHandle, onRequest: (request: Buffer) => void, threads: number): void;
  /** 0, or the errno of the write (ENOENT: the request was interrupted meanwhile). */
  reply(session: FuseSessionHandle, header: Buffer, data?: Buffer): number;
  notify(session: FuseSessionHandle, message: Buffer): void;
  backingOpen(session: FuseSessionHandle, fd: number): number;
  backingClose(session: FuseSessionHandle, id: number): void;
  /**
   * Reader threads answer READs of handle `fh` from these places: block i is the file
   * `places[i]` from `offsets[i]`, CRC-32C `checksums[i]`, checked on its first read; or the
   * Buffer `places[i]` (the whole block, copied from directly: the caller keeps it alive and
   * unchanged until `forgetFiles`); or null (the block is not cached). What the threads cannot
   * serve still reaches `onRequest`.
   */
  serveFiles(session: FuseSessionHandle, fh: number, objectSize: number, blockSize: number, places: Array<string | Buffer | null>, offsets: Float64Array, checksums: Uint32Array): void;
  /** The blocks of `fh` the threads read (once each); no thread reads its places once this returns. */
  forgetFiles(session: FuseSessionHandle, fh: number): number[];
  /** READs answered by the threads, their bytes, READs of served handles left to JavaScript, blocks that failed their check. */
  fileStats(session: FuseSessionHandle): { reads: number; bytes: number; fallbacks: number; mismatches: number };
  /** Process-wide: large requests (WRITEs) handed over in the buffer they were read into, the buffers allocated because the pool had none free, and the free ones it holds now. */
  requestBufferStats(): { handoffs: number; allocations: number; pooled: number };
  /** Frees the request buffers pooled for reuse (up to 32 of max_write bytes each); answers how many. */
  trimRequestBuffers(): number;
  /** false when the connection is still alive (a lazy detach with open files). */
  stop(session: FuseSessionHandle): boolean;
}

let binding: FuseBinding | undefined;

/** The project's FUSE addon, built with the others by `npm install`; throws when it is missing. */
export function loadFuseBinding(): FuseBinding {
  // Through native/ so the path is right from the sources and from dist/ alike.
  binding ??= loadAddon<FuseBinding>('strata_fuse');
  return binding;
}
