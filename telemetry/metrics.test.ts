import { describe, expect, it } from 'vitest';
import { collectProcessMetrics, counter, metricsRegistry, metricsText } from './metrics.js';

const processSection = (text: string) => text.split('\n').filter((line) => line.includes('strata_process_') || line.includes('strata_nodejs_'));
const sample = (text: string, name: string) => Number(text.split('\n').find((line) => line.startsWith(`${name} `))?.split(' ')[1]);

describe('metricsText', () => {
  it("answers the registry's metrics live and Node's process metrics as sampled at most once a second", async () => {
    const ticks = counter('strata_test_metrics_text_total', 'test counter');
    collectProcessMetrics();
    const first = await metricsText(10_000);
    expect(sample(first, 'strata_process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
    expect(first).toContain('strata_nodejs_heap_size_used_bytes');

    ticks.inc(3);
    // Burn some CPU so that a fresh sample would differ.
    const until = process.cpuUsage().user + 30_000;
    while (process.cpuUsage().user < until);
    const within = await metricsText(10_999);
    expect(sample(within, 'strata_test_metrics_text_total')).toBe(3);
    expect(processSection(within)).toEqual(processSection(first));

    const after = await metricsText(11_000);
    expect(sample(after, 'strata_process_cpu_user_seconds_total')).toBeGreaterThan(sample(first, 'strata_process_cpu_user_seconds_total'));
  });
});

describe('the metrics registry', () => {
  it("holds prom-client's own classes (loaded from their files, not the package's index)", async () => {
    const prom = await import('prom-client');
    expect(counter('strata_test_class_total', 'test counter')).toBeInstanceOf(prom.Counter);
    expect(metricsRegistry).toBeInstanceOf(prom.Registry);
    expect(metricsRegistry.contentType).toBe(prom.register.contentType);
  });
});
