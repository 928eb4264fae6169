/**
 * The one job per object version that makes (or adopts) its whole file in a tier. A call for an
 * object whose job is running answers that job's promise; the object counts as running from
 * before `job` is called (a job's synchronous start may ask, for instance while making room, so
 * that its own blocks are not evicted for it) until the job settles. A job that rejects is
 * handed to `failed` and answers false, so the answer never rejects.
 */
export function wholeJob(running: Map<string, Promise<boolean>>, objectId: string, job: () => Promise<boolean>, failed: (err: unknown) => void): Promise<boolean> {
  const present = running.get(objectId);
  if (present !== undefined) return present;
  running.set(objectId, Promise.resolve(false));
  const work = job()
    .catch((err: unknown) => {
      failed(err);
      return false;
    })
    .finally(() => running.delete(objectId));
  running.set(objectId, work);
  return work;
}
