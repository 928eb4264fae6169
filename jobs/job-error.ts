import { StrataError } from '../errors/index.js';

export type JobErrorCode = 'JOB_NOT_FOUND' | 'API_BAD_REQUEST';

/** Jobs (prefetch, sync, distribute): the job asked for does not exist or cannot run as asked. */
export class JobError extends StrataError<JobErrorCode> {}
