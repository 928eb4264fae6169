/**
 * Links: which bucket prefix appears at which folder of the mount, with its import and export
 * policies, kept durably (`LinkRegistry`), checked against one schema (`link-schema.ts`), told
 * about changes by bucket events (`events.ts`) and refreshed by `strata links sync`
 * (`link-sync.ts`); `LinkRuntime` holds the live links of a daemon, each with its open store
 * and namespace.
 */
export { LinkRegistry, overlaps } from './link-registry.js';
export { linkCreateSchema, linkPatchSchema, importPolicySchema, exportPolicySchema, eagerFilter, LINK_NAME, type Link, type LinkInput, type LinkPatch } from './link-schema.js';
export { LinkRuntime, storeIdOf, type LiveLink } from './link-runtime.js';
export { s3EventSchema, objectEvents, decodeEventKey, type ObjectEvent } from './events.js';
export { LinkError, type LinkErrorCode } from './link-error.js';
export { linkSyncJob, type LinkSyncTarget } from './link-sync.js';
