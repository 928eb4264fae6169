import { constants } from 'node:os';
import type { ErrorCode } from '../errors/index.js';
import { StrataError } from '../errors/index.js';

const E = constants.errno;

/**
 * The one place where Strata's error codes become errno values. Exhaustive: adding a
 * code to errors/catalogue.ts without choosing its errno here fails to type-check.
 */
export const ERRNO_BY_CODE = {
  CONFIG_INVALID: E.EINVAL,
  USAGE: E.EINVAL,

  STORE_URL_INVALID: E.EINVAL,
  STORE_NOT_FOUND: E.ENOENT,
  STORE_BUCKET_NOT_FOUND: E.ENOENT,
  STORE_ACCESS_DENIED: E.EACCES,
  STORE_UNREACHABLE: E.EIO,
  // The object changed under an open handle: the handle is stale, the caller reopens.
  STORE_PRECONDITION_FAILED: E.ESTALE,
  STORE_INVALID_RANGE: E.EINVAL,
  STORE_IO: E.EIO,

  FS_NOT_FOUND: E.ENOENT,
  FS_NOT_A_DIRECTORY: E.ENOTDIR,
  FS_IS_A_DIRECTORY: E.EISDIR,
  FS_READ_ONLY: E.EROFS,
  FS_NOT_SUPPORTED: E.ENOSYS,
  FS_STALE: E.ESTALE,
  FS_BAD_HANDLE: E.EBADF,
  FS_INVALID_ARGUMENT: E.EINVAL,
  FS_EXISTS: E.EEXIST,
  FS_NOT_EMPTY: E.ENOTEMPTY,
  FS_CROSS_DEVICE: E.EXDEV,
  FS_NOT_PERMITTED: E.EPERM,
  FS_NAME_TOO_LONG: E.ENAMETOOLONG,

  MOUNT_POINT_MISSING: E.ENOENT,
  MOUNT_POINT_NOT_DIRECTORY: E.ENOTDIR,
  MOUNT_POINT_NOT_EMPTY: E.ENOTEMPTY,
  MOUNT_FAILED: E.EIO,
  FUSE_UNAVAILABLE: E.ENODEV,
  UNMOUNT_BUSY: E.EBUSY,
  NOT_MOUNTED: E.EINVAL,
  UNMOUNT_TIMEOUT: E.ETIMEDOUT,

  CACHE_TIER_INVALID: E.EINVAL,
  // Both are handled inside the cache (refetch, treat as a miss); if one escapes, it is an I/O error.
  CACHE_CHECKSUM_MISMATCH: E.EIO,
  CACHE_TIER_IO: E.EIO,
  CACHE_BUDGET_EXCEEDED: E.ENOMEM,

  // Admin API codes never reach FUSE; listed so the table stays exhaustive.
  API_NOT_FOUND: E.ENOENT,
  API_BAD_REQUEST: E.EINVAL,
  API_BODY_TOO_LARGE: E.E2BIG,
  API_UNAUTHORIZED: E.EACCES,
  API_UNREACHABLE: E.EIO,
  API_STARTING: E.EAGAIN,

  // Link and job codes never reach FUSE either.
  LINK_NOT_FOUND: E.ENOENT,
  LINK_EXISTS: E.EEXIST,
  LINK_OVERLAP: E.EEXIST,
  LINK_BUSY: E.EBUSY,
  JOB_NOT_FOUND: E.ENOENT,

  CHECKPOINT_STAGING_FULL: E.ENOSPC,
  // fsync or a sync close gave up waiting; the data is staged and still uploading.
  CHECKPOINT_UPLOAD_FAILED: E.EIO,
  CHECKPOINT_HANDLE_CLOSED: E.EBADF,

  // Peer codes stay inside the daemon (a failed peer is a fallback to the store); listed for exhaustiveness.
  P2P_DISABLED: E.ENOENT,
  P2P_UNAUTHORIZED: E.EACCES,
  P2P_PEER_FAILED: E.EIO,

  // Parameter-table codes reach the API and the CLI only; listed for exhaustiveness.
  PARAMS_TABLE_NOT_FOUND: E.ENOENT,
  PARAMS_TABLE_VERIFYING: E.EAGAIN,
  PARAMS_BAD_INPUT: E.EINVAL,
  PARAMS_DUPLICATE_KEY: E.EINVAL,
  PARAMS_BAD_TABLE: E.EIO,
  PARAMS_UNSUPPORTED_MEDIA_TYPE: E.EINVAL,
  PARAMS_BAD_KEYS: E.EINVAL,
  PARAMS_BATCH_TOO_LARGE: E.E2BIG,
  PARAMS_BAD_DELTA: E.EINVAL,
  PARAMS_NO_SPACE: E.ENOSPC,

  CLUSTER_DISABLED: E.ENOENT,
  CLUSTER_UNAVAILABLE: E.EIO,
  CLUSTER_SWITCH_ABORTED: E.EIO,
  CLUSTER_NOT_ENOUGH_MEMBERS: E.EINVAL,
  CLUSTER_VERSION_GONE: E.ESTALE,

  INTERNAL: E.EIO,
} as const satisfies Record<ErrorCode, number>;

/**
 * The errno (as a negative number, as FUSE wants it) for any thrown value. Anything
 * that is not a StrataError is a bug or an unexpected failure, and becomes EIO (but for
 * a full disk, ENOSPC).
 */
export function errnoOf(err: unknown): number {
  if (err instanceof StrataError) return -ERRNO_BY_CODE[err.code as ErrorCode];
  // A full disk is no bug: a local write of the daemon (a journal, a staged file) that
  // meets it answers ENOSPC, as the write that filled the disk did.
  if (isNoSpace(err)) return -E.ENOSPC;
  return -E.EIO;
}

function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
