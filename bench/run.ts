/**
 * `npm run bench [-- NAME...]`: runs the benchmarks (all, or those named), each of which
 * prints its own table, and writes every result as JSON under bench/results/.
 * Figures are ratios against a baseline measured in the same run wherever the machine's
 * noise matters (2 shared cores).
 */
// Strata targets Node 20; keep the SDK's notice about Node 22 out of benchmark tables.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

type Bench = () => Promise<Record<string, unknown>>;

const BENCHES: Record<string, () => Promise<{ run: Bench }>> = {
  'cache-tiers': () => import('./cache-tiers.js'),
  'p2p-model': () => import('./p2p-model.js'),
  'read-path': () => import('./read-path.js'),
  'cold-read': () => import('./cold-read.js'),
  'native-fuse': () => import('./native-fuse.js'),
  warmup: () => import('./warmup.js'),
  'checkpoint-mount': () => import('./checkpoint-mount.js'),
  'checkpoint-write': () => import('./checkpoint-write.js'),
  'params-lookup': () => import('./params-lookup.js'),
  'memory-load': () => import('./memory-load.js'),
  startup: () => import('./startup.js'),
  'params-delta': () => import('./params-delta.js'),
  'params-tail': () => import('./params-tail.js'),
  'params-cluster': () => import('./params-cluster.js'),
  'params-shard-load': () => import('./params-shard-load.js'),
};

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !(name in BENCHES));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown benchmark ${unknown.join(', ')}; known: ${Object.keys(BENCHES).join(', ')}\n`);
  process.exit(2);
}
const resultsDir = join(import.meta.dirname, 'results');
await mkdir(resultsDir, { recursive: true });
let failed = 0;
for (const name of wanted.length > 0 ? wanted : Object.keys(BENCHES)) {
  process.stdout.write(`\n=== ${name} ===\n`);
  try {
    const { run } = await BENCHES[name]!();
    const result = await run();
    await writeFile(join(resultsDir, `${name}.json`), `${JSON.stringify({ name, at: new Date().toISOString(), result }, null, 2)}\n`);
  } catch (err) {
    failed++;
    process.stderr.write(`bench ${name} failed: ${(err as Error).stack ?? String(err)}\n`);
  }
}
process.exit(failed > 0 ? 1 : 0);
