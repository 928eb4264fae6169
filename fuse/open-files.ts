import type { ReadSession } from '../cache/index.js';
import type { WriteHandle } from '../checkpoints/index.js';
import { FsError } from './fs-error.js';
import type { LinkRoute } from './fs-paths.js';

/**
 * The Filesystem's table of open handles: what each handle number reads or writes, which
 * writers have written since they were opened, and the hidden names of files unlinked while
 * open. It decides nothing about files; `FileIo` and the facade act on it.
 */

/** An open handle: it reads (from the cache, or a file still staged) or it writes, never both. */
export type OpenFile =
  | { readonly kind: 'read'; readonly path: string; readonly route: LinkRoute; readonly session: ReadSession }
  | { readonly kind: 'staged'; readonly path: string; readonly route: LinkRoute; readonly storeId: string; readonly key: string }
  | { readonly kind: 'write'; readonly path: string; readonly route: LinkRoute; readonly writer: WriteHandle }
  /**
   * A writer whose file was finalised by a FLUSH (close() of one of its descriptors); RELEASE
   * is still to come. A write through another (dup()ed) descriptor reopens it as a new version.
   */
  | { readonly kind: 'flushed'; readonly path: string; readonly route: LinkRoute; reopening?: Promise<void> };

export type WriterFile = Extract<OpenFile, { kind: 'write' }>;

export class OpenFiles {
  readonly #handles = new Map<number, OpenFile>();
  /** Writers that have written or truncated since they were opened. */
  readonly dirty = new Set<number>();
  /** Hidden names of files unlinked while open (see `Filesystem.hide`), to the path they were opened as. */
  readonly hidden = new Map<string, string>();
  #nextHandle = 1;

  /** Adds `file` under a new handle number and answers it. */
  add(file: OpenFile): number {
    const handle = this.#nextHandle++;
    this.#handles.set(handle, file);
    return handle;
  }

  get(handle: number): OpenFile | undefined {
    return this.#handles.get(handle);
  }

  /** The open file of `handle`, or FS_BAD_HANDLE. */
  require(handle: number): OpenFile {
    const file = this.#handles.get(handle);
    if (!file) throw new FsError('FS_BAD_HANDLE', `file handle ${handle} is not open`);
    return file;
  }

  set(handle: number, file: OpenFile): void {
    this.#handles.set(handle, file);
  }

  /** Forgets `handle` (and that it wrote); answers what it was. */
  remove(handle: number): OpenFile | undefined {
    const file = this.#handles.get(handle);
    this.#handles.delete(handle);
    this.dirty.delete(handle);
    return file;
  }

  entries(): IterableIterator<[number, OpenFile]> {
    return this.#handles.entries();
  }

  get size(): number {
    return this.#handles.size;
  }

  /** The writer of `handle`, or FS_BAD_HANDLE (not open, closed by a FLUSH, or a reader). */
  writerOf(handle: number): WriterFile {
    const file = this.require(handle);
    if (file.kind === 'flushed') throw new FsError('FS_BAD_HANDLE', `${file.path} was closed; it takes no more writes`);
    if (file.kind !== 'write') throw new FsError('FS_BAD_HANDLE', `${file.path} is open for reading only`);
    return file;
  }

  /** A writer open on `path`, if any. */
  writerAt(path: string): WriterFile | undefined {
    for (const file of this.#handles.values()) if (file.kind === 'write' && file.path === path) return file;
    return undefined;
  }

  /** A handle open on `path`: a writer if there is one (it knows the size as written), else a reader. */
  handleOf(path: string): number | undefined {
    let reader: number | undefined;
    for (const [handle, file] of this.#handles) {
      if (file.path !== path) continue;
      if (file.kind === 'write') return handle;
      if (file.kind === 'read') reader ??= handle;
    }
    return reader;
  }
}
