/**
 * Small concurrency mechanisms, one of each: a bounded-parallel runner, one lock per key,
 * and a wait that an AbortSignal ends.
 */
export { inParallel } from './in-parallel.js';
export { KeyLock } from './key-lock.js';
export { untilAborted } from './until-aborted.js';
export { outcomeOf, type Outcome } from './outcome.js';
