import { StrataError } from '../errors/index.js';

export type WritePathErrorCode = 'CHECKPOINT_STAGING_FULL' | 'CHECKPOINT_UPLOAD_FAILED' | 'CHECKPOINT_HANDLE_CLOSED' | 'CONFIG_INVALID';

/** A failure of the write path (staging, journal, upload) that callers can act on. */
export class WritePathError extends StrataError<WritePathErrorCode> {}
