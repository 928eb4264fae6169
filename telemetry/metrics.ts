import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

/**
 * prom-client's classes from their own files, not its index: the index also loads Summary,
 * the Pushgateway, the cluster aggregator and the default process metrics, whose CPU metric
 * pulls in @opentelemetry/api (about 180 modules in all, most of the package's load time),
 * before the daemon answers its first parameter lookup (bench/startup.ts). The classes are
 * the same objects the index exports (it re-exports these files). The process metrics load
 * when `collectProcessMetrics` asks for them.
 */
const load = createRequire(import.meta.url);
const Registry = load('prom-client/lib/registry') as typeof PromClient.Registry;
const Counter = load('prom-client/lib/counter') as typeof PromClient.Counter;
const Gauge = load('prom-client/lib/gauge') as typeof PromClient.Gauge;
const Histogram = load('prom-client/lib/histogram') as typeof PromClient.Histogram;
type Counter<L extends string> = PromClient.Counter<L>;
type Gauge<L extends string> = PromClient.Gauge<L>;
type Histogram<L extends string> = PromClient.Histogram<L>;

/**
 * The one metrics registry of the process. Modules get their metrics through the
 * helpers below, which return the existing metric when a name is asked for twice
 * (several caches or mounts in one test process share the same series, told apart
 * by labels).
 */
export const metricsRegistry = new Registry();
/** Node's process metrics (collectProcessMetrics), apart: they are sampled, not kept up to date. */
const processRegistry = new Registry();
let defaultsCollected = false;

/**
 * Node's process metrics are sampled at most this often, and scrapes in between get the last
 * sample. Collecting them is most of a scrape's cost (process.memoryUsage, cpuUsage, a listing
 * of /proc/self/fd, the active handles, the event-loop histogram's statistics: 4-5 ms of the
 * event loop per scrape on a busy 2-core machine, bench/memory-load); Prometheus scrapes every
 * 15 s or so, and values a second old say as much, while a dashboard polling many times a second
 * no longer takes the event loop from the mount.
 */
const PROCESS_METRICS_EVERY_MS = 1_000;
let processText: { at: number; text: Promise<string> } | undefined;

/** Adds Node's process metrics (heap, event-loop lag); the daemon calls this once. */
export function collectProcessMetrics(): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  const collectDefaultMetrics = load('prom-client/lib/defaultMetrics') as typeof PromClient.collectDefaultMetrics;
  collectDefaultMetrics({ register: processRegistry, prefix: 'strata_' });
}

/** The Prometheus text of every metric: the registry's now, Node's process metrics as last sampled (at most a second ago). */
export async function metricsText(now = Date.now()): Promise<string> {
  if (!defaultsCollected) return metricsRegistry.metrics();
  if (processText === undefined || now - processText.at >= PROCESS_METRICS_EVERY_MS) {
    const text = processRegistry.metrics();
    processText = { at: now, text };
    // A failed collection is not kept for the next second's scrapes.
    text.catch(() => {
      if (processText?.text === text) processText = undefined;
    });
  }
  const [own, sampled] = await Promise.all([metricsRegistry.metrics(), processText.text]);
  return `${own}${sampled}`;
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
