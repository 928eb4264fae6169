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
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
const port = typeof address === 'object' && address ? address.port : 0;
process.stdout.write(
  `${JSON.stringify({ port, entryMs, importMs: importedMs - entryMs, recoverMs: recoveredMs - importedMs, recoverReportMs: recovered.ms, loadMs, listeningAtMs: performance.now() })}\n`,
);
