import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The one metrics registry of the process. Modules get their metrics through the
 * helpers below, which return the existing metric when a name is asked for twice
 * (several caches or mounts in one test process share the same series, told apart
 * by labels).
 */
export const metricsRegistry = new Registry();
let defaultsCollected = false;

/** Adds Node's process metrics (heap, event-loop lag); the daemon calls this once. */
export function collectProcessMetrics(): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  collectDefaultMetrics({ register: metricsRegistry, prefix: 'strata_' });
}

export function counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  const existing = metricsRegistry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter({ name, help, labelNames: [...labelNames], registers: [metricsRegistry] });
}

/** A gauge; `collect` (if given) sets it at every scrape, for values that change without an event (ages). */
export function gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = [], collect?: (gauge: Gauge<L>) => void): Gauge<L> {
  const existing = metricsRegistry.getSingleMetric(name);
  if (existing) return existing as Gauge<L>;
  return new Gauge({
    name,
    help,
    labelNames: [...labelNames],
    registers: [metricsRegistry],
    ...(collect ? { collect(this: Gauge<L>) { collect(this); } } : {}),
  });
}

export function histogram<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[] = [],
  buckets?: number[],
): Histogram<L> {
  const existing = metricsRegistry.getSingleMetric(name);
  if (existing) return existing as Histogram<L>;
  return new Histogram({ name, help, labelNames: [...labelNames], registers: [metricsRegistry], ...(buckets ? { buckets } : {}) });
}
