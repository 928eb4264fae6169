/**
 * Small concurrency mechanisms, one of each: a bounded-parallel runner, one lock per key, the
 * one waiter (a weighted semaphore), retry with backoff and jitter, a cancellable sleep, an
 * outcome that never rejects, and a wait that an AbortSignal ends.
 */
export { inParallel } from './in-parallel.js';
export { KeyLock } from './key-lock.js';
export { untilAborted } from './until-aborted.js';
export { outcomeOf, type Outcome } from './outcome.js';
export { backoffDelay, retry, type Backoff, type RetryOptions } from './retry.js';
export { realSleep, type Sleep } from './sleep.js';
export { Semaphore } from './semaphore.js';
