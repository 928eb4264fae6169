import { StrataError } from '../errors/index.js';

export type SyncErrorCode =
  | 'LINK_NOT_FOUND'
  | 'LINK_EXISTS'
  | 'LINK_OVERLAP'
  | 'LINK_BUSY'
  | 'JOB_NOT_FOUND'
  | 'API_BAD_REQUEST';

/** Links, jobs and events: what an admin asked for cannot be done as asked. */
export class SyncError extends StrataError<SyncErrorCode> {}
