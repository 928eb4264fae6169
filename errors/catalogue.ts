/**
 * Every error code Strata can produce, listed once. A code is stable: scripts and
 * dashboards match on it, so a code is never renamed or reused for another meaning.
 * docs/ERRORS.md documents each one and a test checks the two lists agree.
 *
 * `http` is the status an API route answers with when the error reaches it.
 */
export const ERROR_CATALOGUE = {
  // Configuration and command line
  CONFIG_INVALID: { http: 400, summary: 'An option or config value is invalid; the message names it.' },
  USAGE: { http: 400, summary: 'The command line is malformed (unknown command, missing argument).' },

  // Object store
  STORE_URL_INVALID: { http: 400, summary: 'The store URL has an unknown scheme or is malformed.' },
  STORE_NOT_FOUND: { http: 404, summary: 'The object does not exist in the store.' },
  STORE_BUCKET_NOT_FOUND: { http: 404, summary: 'The bucket (or the local store directory) does not exist.' },
  STORE_ACCESS_DENIED: { http: 403, summary: 'The store refused the credentials or the operation.' },
  STORE_UNREACHABLE: { http: 503, summary: 'The store endpoint could not be reached (DNS, refused, timeout).' },
  STORE_PRECONDITION_FAILED: { http: 412, summary: 'The object changed in the store (its ETag differs from the expected one).' },
  STORE_INVALID_RANGE: { http: 416, summary: 'A ranged read starts past the end of the object.' },
  STORE_IO: { http: 502, summary: 'The store answered with an unexpected error.' },

  // Namespace and file system
  FS_NOT_FOUND: { http: 404, summary: 'No file or folder at that path.' },
  FS_NOT_A_DIRECTORY: { http: 400, summary: 'A path component is a file where a folder is needed.' },
  FS_IS_A_DIRECTORY: { http: 400, summary: 'The operation needs a file but the path is a folder.' },
  FS_READ_ONLY: { http: 405, summary: 'The mount or link does not accept writes.' },
  FS_NOT_SUPPORTED: { http: 501, summary: 'The file system operation is not implemented.' },
  FS_STALE: { http: 409, summary: 'The object changed in the store while it was open; reopen the file.' },
  FS_BAD_HANDLE: { http: 400, summary: 'The file handle is not open.' },
  FS_INVALID_ARGUMENT: { http: 400, summary: 'An argument is out of range (negative offset, bad flags).' },
  FS_EXISTS: { http: 409, summary: 'Something already exists at that path.' },
  FS_NOT_EMPTY: { http: 409, summary: 'The folder is not empty.' },
  FS_CROSS_DEVICE: { http: 400, summary: 'A rename between two links; copy the file instead (mv does so by itself).' },
  FS_NOT_PERMITTED: { http: 403, summary: 'The operation is not permitted on this file system (hard links).' },
  FS_NAME_TOO_LONG: { http: 400, summary: 'A name is longer than 255 bytes, or the object key longer than the store\'s 1,024 bytes.' },

  // Mounting
  MOUNT_POINT_MISSING: { http: 400, summary: 'The mount point does not exist.' },
  MOUNT_POINT_NOT_DIRECTORY: { http: 400, summary: 'The mount point is not a directory.' },
  MOUNT_POINT_NOT_EMPTY: { http: 400, summary: 'The mount point is not empty.' },
  MOUNT_FAILED: { http: 500, summary: 'The kernel refused the FUSE mount.' },
  FUSE_UNAVAILABLE: { http: 500, summary: 'libfuse (Debian package libfuse2) or /dev/fuse is missing.' },
  UNMOUNT_BUSY: { http: 500, summary: 'The mount point stayed busy; it was lazily detached.' },
  NOT_MOUNTED: { http: 400, summary: 'strata unmount was given a path that is not a Strata mount.' },
  UNMOUNT_TIMEOUT: { http: 504, summary: 'The daemon serving the mount did not stop within the timeout; it is still running.' },

  // Block cache
  CACHE_TIER_INVALID: { http: 400, summary: 'A tier option is malformed or its path cannot be used.' },
  CACHE_CHECKSUM_MISMATCH: { http: 500, summary: 'A block read from a tier failed its checksum; it was dropped and refetched.' },
  CACHE_TIER_IO: { http: 500, summary: 'A tier failed to read or write a block; treated as a miss.' },
  CACHE_BUDGET_EXCEEDED: { http: 503, summary: 'The memory budget cannot fit the request even after eviction.' },

  // Admin API
  API_NOT_FOUND: { http: 404, summary: 'No such route.' },
  API_BAD_REQUEST: { http: 400, summary: 'The request body or parameters are invalid; the message names the field.' },
  API_BODY_TOO_LARGE: { http: 413, summary: 'The request body is larger than the API accepts.' },
  API_UNAUTHORIZED: { http: 401, summary: 'STRATA_TOKEN is set and the request has no valid bearer token.' },
  API_UNREACHABLE: { http: 503, summary: 'The CLI cannot reach the daemon\'s admin API.' },
  API_STARTING: { http: 503, summary: 'The daemon is starting: it answers parameter lookups already, this route in a moment (Retry-After).' },

  // Links and jobs
  LINK_NOT_FOUND: { http: 404, summary: 'No link with that name.' },
  LINK_EXISTS: { http: 409, summary: 'A link with that name already exists.' },
  LINK_OVERLAP: { http: 409, summary: 'The link path is the same as, inside or above another link\'s path.' },
  LINK_BUSY: { http: 409, summary: 'The link has pending uploads; finish them or remove it with force.' },
  JOB_NOT_FOUND: { http: 404, summary: 'No job with that id (finished jobs are kept for a while, then forgotten).' },

  // Checkpoint writes (staging and upload)
  CHECKPOINT_STAGING_FULL: { http: 507, summary: 'The staging space stayed full while a write waited for uploads to free it.' },
  CHECKPOINT_UPLOAD_FAILED: { http: 502, summary: 'The store did not take the file in time; its bytes stay staged and the upload keeps retrying.' },
  CHECKPOINT_HANDLE_CLOSED: { http: 400, summary: 'The write handle was already released.' },

  // Peer-to-peer block sharing
  P2P_DISABLED: { http: 404, summary: 'Peer-to-peer block sharing is not enabled on this daemon (start it with --peers).' },
  P2P_UNAUTHORIZED: { http: 401, summary: 'A peer request has no valid STRATA_PEER_SECRET signature, or its timestamp is too far off.' },
  P2P_PEER_FAILED: { http: 502, summary: 'A peer did not answer, timed out, refused or sent a block that failed its checksum; reads fall back to the store.' },

  // Parameter tables (params/)
  PARAMS_TABLE_NOT_FOUND: { http: 404, summary: 'No parameter table is loaded under that name.' },
  PARAMS_TABLE_VERIFYING: { http: 503, summary: 'The table was recovered after a restart and its values are still being checked; retry shortly.' },
  PARAMS_BAD_INPUT: { http: 400, summary: 'The builder input is invalid: dim of 0, length not a multiple of the record size, unreadable file.' },
  PARAMS_DUPLICATE_KEY: { http: 400, summary: 'The builder input repeats a key and --strict was given.' },
  PARAMS_BAD_TABLE: { http: 422, summary: 'A table file failed validation (magic, version, size or checksum); it is not served.' },
  PARAMS_UNSUPPORTED_MEDIA_TYPE: { http: 415, summary: 'The request body has the wrong Content-Type (mget and delta take application/octet-stream).' },
  PARAMS_BAD_KEYS: { http: 400, summary: 'A lookup body is malformed: length not a multiple of 8 bytes, or a key that is not a decimal uint64.' },
  PARAMS_BATCH_TOO_LARGE: { http: 413, summary: 'A lookup asks for more keys than one request may (100,000).' },
  PARAMS_BAD_DELTA: { http: 400, summary: 'A delta body is malformed or its dim differs from the table\'s.' },
  PARAMS_NO_SPACE: { http: 507, summary: 'No parameter tier has room for the table (pmem, then nvme); free space or give a larger tier.' },

  // Parameter-table cluster (params/cluster/)
  CLUSTER_DISABLED: { http: 404, summary: 'This daemon is not a cluster member (start it with --cluster etcd://HOST:PORT/PREFIX).' },
  CLUSTER_UNAVAILABLE: { http: 503, summary: 'etcd does not answer, or no live replica of some shard of the table answered.' },
  CLUSTER_SWITCH_ABORTED: { http: 409, summary: 'A publish was aborted (a member died, a load failed or the prepare timed out); the old version keeps serving.' },
  CLUSTER_NOT_ENOUGH_MEMBERS: { http: 409, summary: 'A publish asks for more replicas per shard than the cluster has members.' },
  CLUSTER_VERSION_GONE: { http: 409, summary: 'A member no longer holds the table version a routed request asked for; the router starts the request again on the serving version.' },

  INTERNAL: { http: 500, summary: 'An unexpected internal error; the log has details.' },
} as const satisfies Record<string, { http: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;
