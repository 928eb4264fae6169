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
