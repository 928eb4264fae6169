export { LinkRegistry, overlaps } from './link-registry.js';
export { linkCreateSchema, linkPatchSchema, importPolicySchema, exportPolicySchema, LINK_NAME, type Link, type LinkInput, type LinkPatch } from './link-schema.js';
export { JobManager, type JobStatus, type JobState, type JobBody, type JobProgress } from './job-manager.js';
export { prefetchJob, matcher, type PrefetchOptions, type PrefetchSource } from './prefetch.js';
export { s3EventSchema, objectEvents, decodeEventKey, type ObjectEvent } from './events.js';
export { SyncError, type SyncErrorCode } from './sync-error.js';
export { linkSyncJob, type LinkSyncTarget } from './link-sync.js';
