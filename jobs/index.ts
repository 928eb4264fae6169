/**
 * Jobs: long-running work an admin starts and watches through the API (`JobManager`: ids,
 * progress, cancel), and the prefetch job that warms the cache from a path or a manifest.
 */
export { JobManager, type JobStatus, type JobState, type JobBody, type JobProgress } from './job-manager.js';
export { prefetchJob, matcher, type PrefetchOptions, type PrefetchSource } from './prefetch.js';
export { JobError, type JobErrorCode } from './job-error.js';
