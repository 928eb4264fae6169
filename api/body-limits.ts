import { MAX_BATCH_KEYS } from '../params/index.js';

/**
 * An mget body of MAX_BATCH_KEYS keys, plus room so that a slightly larger one gets
 * PARAMS_BATCH_TOO_LARGE rather than a generic 413. Its own module, without the request
 * schemas: the early API (early-params.ts) answers mget before zod loads.
 */
export const MGET_BODY_LIMIT = MAX_BATCH_KEYS * 8 * 2;
