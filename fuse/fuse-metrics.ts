import { StrataError, isStrataError } from '../errors/index.js';
import { counter, histogram, type Logger } from '../telemetry/index.js';

/** Latency of every FUSE operation, whichever FUSE path serves the mount. */
export const opSeconds = histogram('strata_fuse_operation_seconds', 'Latency of FUSE operations', ['op'], [
  0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5,
]);
export const opErrors = counter('strata_fuse_operation_errors_total', 'FUSE operations answered with an error', ['op', 'code']);

/** The promise of `work`, which may return a value or a promise, or throw. */
export function promiseOf<T>(work: () => Promise<T> | T): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Counts a failed operation and logs it once at the level it deserves: refusals a program
 * expects (ENOENT, EROFS, ...) at debug, other Strata errors at warn, anything else at error.
 */
export function reportFailure(op: string, path: string, err: unknown, logger: Logger): void {
  const code = err instanceof StrataError ? err.code : 'INTERNAL';
  opErrors.inc({ op, code });
  if (isStrataError(err, 'FS_NOT_FOUND', 'FS_READ_ONLY', 'FS_NOT_A_DIRECTORY', 'FS_IS_A_DIRECTORY', 'FS_EXISTS', 'FS_NOT_EMPTY')) {
    logger.debug({ op, path, code }, 'fuse operation refused');
  } else if (err instanceof StrataError) {
    logger.warn({ op, path, code, err: err.message }, 'fuse operation failed');
  } else {
    logger.error({ op, path, err }, 'fuse operation failed unexpectedly');
  }
}
