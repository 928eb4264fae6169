/**
 * Small concurrency mechanisms, one of each: a bounded-parallel runner, one lock per key, the
 * one waiter (a weighted semaphore), retry with backoff and jitter, a cancellable sleep, an
 * outcome that never rejects, a wait that an AbortSignal ends, and a queue between producers
 * and workers.
 */
export { inParallel } from './in-parallel.js';
export { KeyLock } from './key-lock.js';
export { untilAborted } from './until-aborted.js';
export { outcomeOf, type Outcome } from './outcome.js';
export { backoffDelay, retry, type Backoff, type RetryOptions } from './retry.js';
export { realSleep, type Sleep } from './sleep.js';
export { Semaphore } from './semaphore.js';
export { WorkQueue } from './work-queue.js';
