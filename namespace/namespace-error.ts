import { StrataError } from '../errors/index.js';

export type NamespaceErrorCode = 'FS_NOT_FOUND' | 'FS_NOT_A_DIRECTORY' | 'FS_IS_A_DIRECTORY' | 'FS_NAME_TOO_LONG';

/** A path that does not resolve to what the caller needs. */
export class NamespaceError extends StrataError<NamespaceErrorCode> {}
