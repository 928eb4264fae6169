import type { ObjectRef } from '../store/index.js';
import type { ObjectMeta } from '../store/index.js';
import type { UploadState } from './pending-upload.js';
import type { CloseMode } from './write-path-config.js';

/** Where a file goes: a store (by id, as `stores` resolves it) and a key in it. */
export interface WriteTarget {
  readonly storeId: string;
  readonly key: string;
}

export interface OpenOptions {
  /**
   * Start empty (O_TRUNC, O_CREAT of a new file). Otherwise the current bytes are copied in
   * first: the newest pending version's, else the object's as the store has it (one HEAD).
   */
  readonly truncate: boolean;
  readonly closeMode?: CloseMode | undefined;
  /** The attributes the file is committed with (mode at create, or the existing object's). */
  readonly meta?: ObjectMeta | undefined;
}

/** One entry of `uploads()`, the shape `GET /v1/uploads` serves (the caller adds `path`). */
export interface UploadStatus {
  readonly path?: string;
  readonly storeId: string;
  readonly key: string;
  readonly bytes: number;
  readonly uploadedBytes: number;
  readonly state: UploadState;
  /** Failed store calls so far; 0 while all goes well. */
  readonly attempts: number;
  readonly lastError?: string;
}

export interface PendingFile {
  readonly key: string;
  readonly size: number;
  readonly mtime: Date;
  readonly meta?: ObjectMeta | undefined;
}

/** Hands the staged bytes of a committed version to the block cache (it may copy or link the file, not keep it). */
export type AdoptHook = (ref: ObjectRef, stagedFile: string) => Promise<void>;

/** An open writer. Opaque: pass it back to the WritePath that opened it. */
export class WriteHandle {
  readonly id: number;
  readonly storeId: string;
  /** The key at open time (a rename retargets the upload, not this field). */
  readonly key: string;

  constructor(id: number, target: WriteTarget) {
    this.id = id;
    this.storeId = target.storeId;
    this.key = target.key;
  }
}
