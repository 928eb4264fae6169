/**
 * Child entry of bench/params-lookup.ts: a loopback fastify server with the params
 * routes over a ParamsService in `dir`. `recover` serves what the manifest lists;
 * `load NAME SOURCE` loads a table first. Prints one JSON line with its timings (ms since
 * the process started, from performance.now()) once it listens.
 *
 *   tsx bench/params-server.ts DIR recover
 *   tsx bench/params-server.ts DIR load NAME SOURCE
 *   tsx bench/params-server.ts DIR transport DIM
 *
 * Beside HTTP the child serves the params binary protocol (params/wire-server.ts) on a
 * second port, `wirePort` in its JSON line, and on a unix socket, `wirePath`; in `transport` mode it too answers without a
 * lookup. On SIGUSR2 it prints one JSON line of the garbage collections since the last
 * one (count, total and longest pause), so a bench can tell GC pauses from the rest of a p99.
 *
 * PARAMS_LOOKUP_THREADS=N answers mget on N worker threads; STRATA_PARAMS_NATIVE=0 uses
 * the JavaScript kernel. `transport` serves the mget route with no table and no lookup:
 * the body is read and an answer of the right size (one buffer kept per size) sent, which
 * is what HTTP alone costs.
 */
import { performance } from 'node:perf_hooks';

const entryMs = performance.now();
const [dir, mode, name, source] = process.argv.slice(2);
const { default: Fastify } = await import('fastify');
const { ParamsService, mgetAnswerBytes } = await import('../params/index.js');
const { registerParamsRoutes } = await import('../api/params-routes.js');
const { ParamsWireServer } = await import('../params/wire-server.js');
const { PerformanceObserver } = await import('node:perf_hooks');
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
// With lookup threads, serve only once they have every table mapped, so a measurement
// never runs on the main thread by accident (threads take a while to start on a busy machine).
while (Number(process.env.PARAMS_LOOKUP_THREADS ?? 0) > 0 && !service.list().every((t) => service.runsOnThreads(t.name))) {
  await new Promise((r) => setTimeout(r, 10));
}
const app = Fastify({ logger: false });
if (mode === 'transport') {
  const dim = Number(name);
  const answers = new Map<number, Buffer>();
  app.register(async (scope) => {
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    scope.post('/v1/params/:name/mget', { bodyLimit: 2 * 1024 * 1024 }, async (request, reply) => {
      const n = (request.body as Buffer).length / 8;
      let answer = answers.get(n);
      if (!answer) answers.set(n, (answer = Buffer.alloc(mgetAnswerBytes(n, dim))));
      return reply.type('application/octet-stream').send(answer);
    });
  });
} else {
  registerParamsRoutes(app, service);
}
const wireMget = mode === 'transport' ? transportLease(Number(name)) : (table: string, keys: Uint8Array) => service.mgetLease(table, keys);
const wire = new ParamsWireServer({ mget: wireMget });
const wireAddress = await wire.listen({ host: '127.0.0.1', port: 0 });
const wirePort = 'port' in wireAddress ? wireAddress.port : 0;
// The same protocol on a unix socket in DIR (`wirePath` in the JSON line).
const wirePath = `${dir}/params-wire.sock`;
await new ParamsWireServer({ mget: wireMget }).listen({ path: wirePath });
let gc = { count: 0, totalMs: 0, maxMs: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    gc.count++;
    gc.totalMs += entry.duration;
    gc.maxMs = Math.max(gc.maxMs, entry.duration);
  }
}).observe({ entryTypes: ['gc'] });
// A clean exit on SIGTERM, so a --cpu-prof profile gets written.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGUSR2', () => {
  process.stdout.write(`${JSON.stringify({ gc })}\n`);
  gc = { count: 0, totalMs: 0, maxMs: 0 };
});
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
const port = typeof address === 'object' && address ? address.port : 0;
process.stdout.write(
  `${JSON.stringify({ port, wirePort, wirePath, entryMs, importMs: importedMs - entryMs, recoverMs: recoveredMs - importedMs, recoverReportMs: recovered.ms, loadMs, listeningAtMs: performance.now() })}\n`,
);

/** The wire twin of the transport route: an answer of the right size (one kept per size), no lookup. */
function transportLease(dim: number): (table: string, keys: Uint8Array) => Promise<{ bytes: Buffer; release: () => void }> {
  const answers = new Map<number, Buffer>();
  return async (_table, keys) => {
    const n = keys.byteLength / 8;
    let answer = answers.get(n);
    if (!answer) answers.set(n, (answer = Buffer.alloc(mgetAnswerBytes(n, dim))));
    return { bytes: answer, release: () => {} };
  };
}
