import { counter, gauge } from '../telemetry/index.js';

/** Per open WritePath: seconds its oldest queued upload has waited (0 when none waits). */
export const queuedAges = new Set<() => number>();

/** Prometheus series of the write path (one set per process, shared by every WritePath in it). */
export const writePathMetrics = {
  committed: counter('strata_uploads_committed_total', 'Files (versions) the write path committed to the store'),
  committedBytes: counter('strata_upload_committed_bytes_total', 'Bytes of the files the write path committed to the store'),
  restreamedParts: counter('strata_upload_parts_restreamed_total', 'Parts streamed while the kernel wrote the file (passthrough) that differed from the final file and were uploaded again'),
  failures: counter('strata_upload_failures_total', 'Store calls of the write path that failed and will be retried'),
  stagingUsed: gauge('strata_staging_used_bytes', 'Bytes staged on the local tier, waiting for or in upload'),
  stagingWaits: counter('strata_staging_waits_total', 'Writes that found staging full and waited for uploads to free space'),
  stagingWaitSeconds: counter('strata_staging_wait_seconds_total', 'Seconds writes spent waiting for staging space'),
  stagingWaiting: gauge('strata_staging_waiting_writes', 'Writes waiting for staging space now'),
  pending: gauge('strata_uploads_pending', 'Files written or released but not yet committed to the store'),
  oldestAge: gauge('strata_upload_oldest_pending_seconds', 'Seconds the oldest file waiting for the store has waited since it was queued (closed, fsync\'d or renamed); 0 when none waits', [], (g) => {
    g.set(Math.max(0, ...[...queuedAges].map((age) => age())));
  }),
};
