import { StrataError } from '../errors/index.js';

export type FsErrorCode =
  | 'FS_NOT_FOUND'
  | 'FS_IS_A_DIRECTORY'
  | 'FS_NOT_A_DIRECTORY'
  | 'FS_READ_ONLY'
  | 'FS_NOT_SUPPORTED'
  | 'FS_STALE'
  | 'FS_BAD_HANDLE'
  | 'FS_INVALID_ARGUMENT'
  | 'FS_EXISTS'
  | 'FS_NOT_EMPTY'
  | 'FS_CROSS_DEVICE'
  | 'FS_NOT_PERMITTED';

/** A file system call that cannot be carried out; `fuse/errno.ts` turns it into an errno. */
export class FsError extends StrataError<FsErrorCode> {}
