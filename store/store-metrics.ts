import { performance } from 'node:perf_hooks';
import { gauge, histogram } from '../telemetry/index.js';

/** Store requests by kind, as a reader waits on them (a GET until its last byte arrived). */
const requestSeconds = histogram('strata_store_request_seconds', 'Latency of store requests (GET until the whole body arrived)', ['request'], [
  0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2,
]);

/** Store requests under way, by kind: how many GETs a cold reader keeps in flight (bench/cold-read.ts samples it). */
const inFlight = gauge('strata_store_requests_in_flight', 'Store requests sent and not yet answered in full', ['request']);

/** Runs one store request and records how long it took, failed or not. */
export async function timedRequest<T>(request: 'head' | 'list' | 'get', work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  inFlight.inc({ request });
  try {
    return await work();
  } finally {
    inFlight.dec({ request });
    requestSeconds.observe({ request }, (performance.now() - started) / 1000);
  }
}
