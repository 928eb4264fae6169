import type { Namespace } from '../namespace/index.js';
import type { ObjectRef } from '../store/index.js';
import type { ObjectStore } from '../store/index.js';
import type { JobBody } from '../jobs/index.js';

export interface LinkSyncTarget {
  readonly store: ObjectStore;
  readonly namespace: Namespace;
  /** Drops the cached blocks of one object version; answers how many blocks went. */
  readonly evict: (ref: ObjectRef) => Promise<number>;
  /** Runs after the comparison (an eager link's prefetch); its progress is its own job's. */
  readonly afterSync?: () => void;
}

/** S3's page size: a sync lists 1,000 keys per request. */
const LIST_PAGE = 1000;

/**
 * Incremental sync of one link: lists every key under the link's root, compares each
 * file version the daemon knows with the store by ETag, drops the cached blocks of
 * versions that changed or vanished, and forgets all metadata so every path is
 * revalidated. Files count keys listed; bytes count the bytes of dropped versions.
 */
export function linkSyncJob(target: LinkSyncTarget): JobBody {
  return async (progress) => {
    const current = new Map<string, string>();
    let token: string | undefined;
    do {
      if (progress.signal.aborted) return;
      const page = await target.store.list('', { maxKeys: LIST_PAGE, ...(token ? { token } : {}) });
      for (const info of page.objects) current.set(info.key, info.etag);
      progress.addTotal(page.objects.length, 0);
      progress.addDone(page.objects.length, 0);
      token = page.nextToken;
    } while (token);
    for (const { ref } of target.namespace.knownFiles()) {
      if (current.get(ref.key) === ref.etag) continue;
      progress.addTotal(0, ref.size);
      await target.evict(ref);
      progress.addDone(0, ref.size);
    }
    target.namespace.invalidateAll();
    target.afterSync?.();
  };
}
