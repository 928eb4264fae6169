/** One store request per key at a time, shared by concurrent callers. */

export interface Pending<T> {
  readonly promise: Promise<T>;
  readonly startedAt: number;
}

/**
 * Runs `load` once per key at a time; concurrent callers share the result. A request older
 * than `maxAgeMs` is not joined (the store hung on it): a new one starts, at most one per
 * `maxAgeMs` per key, so a store that comes back is seen at once.
 */
export function coalesce<T>(pending: Map<string, Pending<T>>, key: string, load: () => Promise<T>, now: number, maxAgeMs: number): Promise<T> {
  const running = pending.get(key);
  if (running && now - running.startedAt < maxAgeMs) return running.promise;
  const started: Pending<T> = {
    promise: load().finally(() => {
      if (pending.get(key) === started) pending.delete(key);
    }),
    startedAt: now,
  };
  pending.set(key, started);
  return started.promise;
}
