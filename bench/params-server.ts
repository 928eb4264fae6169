/**
 * Child entry of bench/params-lookup.ts: a loopback fastify server with the params
 * routes over a ParamsService in `dir`. `recover` serves what the manifest lists;
 * `load NAME SOURCE` loads a table first. Prints one JSON line with its timings (ms since
 * the process started, from performance.now()) once it listens.
 *
 *   tsx bench/params-server.ts DIR recover
 *   tsx bench/params-server.ts DIR load NAME SOURCE
 *
 * PARAMS_LOOKUP_THREADS=N answers mget on N worker threads.
 */
import { performance } from 'node:perf_hooks';

const entryMs = performance.now();
const [dir, mode, name, source] = process.argv.slice(2);
const { default: Fastify } = await import('fastify');
const { ParamsService } = await import('../params/index.js');
const { registerParamsRoutes } = await import('../daemon/api/params-routes.js');
const importedMs = performance.now();

const service = new ParamsService({ dir: dir!, tier: 'pmem', lookupThreads: Number(process.env.PARAMS_LOOKUP_THREADS ?? 0) });
const recovered = await service.recover();
const recoveredMs = performance.now();
let loadMs = 0;
if (mode === 'load') {
  const before = performance.now();
  await service.load(name!, source!);
  loadMs = performance.now() - before;
}
const app = Fastify({ logger: false });
registerParamsRoutes(app, service);
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
const port = typeof address === 'object' && address ? address.port : 0;
process.stdout.write(
  `${JSON.stringify({ port, entryMs, importMs: importedMs - entryMs, recoverMs: recoveredMs - importedMs, recoverReportMs: recovered.ms, loadMs, listeningAtMs: performance.now() })}\n`,
);
