/**
 * In-place deltas of a 10M-key dim-16 table (docs/PARAMS.md, "In-place deltas"): the time of a
 * delta of 100,000 upserts in place against the copy-on-write rewrite it replaces (a child
 * without the addon, same delta, same run), the mget rate of 4 callers on 2 lookup threads while
 * deltas are applied against the rate in quiet rounds between them (deltas paced, as the service
 * applies them, and not paced, in alternate rounds), and the data part of recovery after SIGKILL
 * with 1.1M keys of deltas applied, against the same table without deltas.
 *
 *   npx tsx bench/params-delta.ts          (PARAMS_BENCH_KEYS=1000000 for a quick run)
 */
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { loadavg } from 'node:os';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { allocateDelta, buildTable, DELTA_HEADER_BYTES, ParamsService } from '../params/index.js';
import { printTable } from './lib/table.js';
import { lookupBinding } from '../params/lookup-binding.js';
import { makeBodies, summarise, writeInput, type Rate } from './params-lookup.js';

const KEYS = Number(process.env.PARAMS_BENCH_KEYS ?? 10_000_000);
const DIM = 16;
const DELTA_UPSERTS = 100_000;
const CALLERS = 4;
const BATCH = 20_000;
const THREADS = 2;
/**
 * Updating rounds, each followed by a quiet round: the deltas of rounds 1 and 4 are paced (the
 * service's default, docs/PARAMS.md "Pacing"), those of rounds 2 and 3 not (overlayPacing off),
 * so that a drift over the run weighs on both alike.
 */
const PACED = [true, false, false, true];
const ROUNDS = PACED.length;
/** Deltas applied back to back in one updating round; the quiet round after it lasts as long. */
const DELTAS_PER_ROUND = 2;
/**
 * Deltas in the table when it is killed: 11 x 100,000 = 1.1M keys of deltas. With the killed
 * child's first delta the overlay holds 1.2M keys, under the half of its 2.5M that starts a
 * compaction (whose thread would take a core from the measurements).
 */
const DELTAS_BEFORE_KILL = 11;
const SELF = import.meta.filename;
/** Lookups before the measured rounds: 3 s of 20,000-key batches touch most pages of a 10M-key table's rows. */
const WARMUP_MS = 3_000;

function step(what: string): void {
  process.stderr.write(`params-delta: ${what}\n`);
}

function load(): string {
  return loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
}

/** A delta of DELTA_UPSERTS upserts: half of them keys of the table, half new ones. */
function delta(keys: Uint32Array, seed: number): Buffer {
  const recordBytes = 8 + 4 * DIM;
  const body = allocateDelta(DIM, DELTA_UPSERTS, 0);
  const fresh = new Uint32Array(DELTA_UPSERTS);
  randomFillSync(fresh);
  for (let i = 0; i < DELTA_UPSERTS; i++) {
    const at = DELTA_HEADER_BYTES + i * recordBytes;
    if (i % 2 === 0) {
      const k = Math.floor(Math.random() * (keys.length / 2));
      body.writeUInt32LE(keys[2 * k]!, at);
      body.writeUInt32LE(keys[2 * k + 1]!, at + 4);
    } else {
      body.writeUInt32LE(fresh[i]!, at);
      body.writeUInt32LE(0xdead0000 + (seed & 0xffff), at + 4); // new keys: a high half the random table keys rarely have
    }
    for (let d = 0; d < DIM; d++) body.writeFloatLE(seed + d, at + 8 + 4 * d);
  }
  return body;
}

export async function run(): Promise<Record<string, unknown>> {
  const work = await mkdtemp('/dev/shm/strata-params-delta-');
  try {
    step(`writing and building ${KEYS} keys`);
    const input = join(work, 'input.bin');
    const keys = await writeInput(input);
    const source = join(work, 'emb.params');
    await buildTable(input, source, { dim: DIM, shards: 4 });
    await rm(input);
    const bodies = makeBodies(keys, BATCH);
    const deltas = Array.from({ length: DELTAS_BEFORE_KILL + 1 }, (_, i) => delta(keys, i + 1));
    const deltaFile = join(work, 'delta.bin');
    await writeFile(deltaFile, deltas[0]!);

    step('copy-on-write baseline (a child without the addon)');
    const cow = JSON.parse(await child(['cow', join(work, 'cow'), source, deltaFile], { STRATA_PARAMS_NATIVE: '0' })) as { applyMs: number };
    await rm(join(work, 'cow'), { recursive: true, force: true });

    const tier = join(work, 'tier');
    await mkdir(tier);
    const service = new ParamsService({ dir: tier, lookupThreads: THREADS });
    await service.load('emb', source);
    while (!service.runsOnThreads('emb')) await new Promise((r) => setTimeout(r, 10));
    step('recovery of the table without deltas (3 children)');
    const baseRecovery: Recovery[] = [];
    const baseRecoveryRebooted: Recovery[] = [];
    for (let i = 0; i < 3; i++) {
      baseRecovery.push(JSON.parse(await child(['recover', tier])) as Recovery);
      baseRecoveryRebooted.push(JSON.parse(await child(['recover', tier, 'another-boot'])) as Recovery);
    }

    step('first delta (makes the overlay)');
    let started = performance.now();
    await service.applyDelta('emb', deltas[0]!);
    const firstMs = performance.now() - started;
    let next = 1;

    // A first pass of lookups, not measured: the lookup threads' mappings are new, and the first
    // lookups fault in the pages of the rows they read (on the development VM about a second of
    // lookups for 10M keys), which would fall on the first round only.
    step('warming the lookup threads\' mappings (not measured)');
    const warm = { done: false };
    const warming = measure(service, bodies, warm);
    await new Promise((r) => setTimeout(r, WARMUP_MS));
    warm.done = true;
    await warming;

    const quiet: Rate[] = [];
    const updating: Rate[] = [];
    // Per kind of round (paced, not paced): each delta's wall time and its applying thread's CPU time.
    const appliedUnderLoad = { paced: [] as number[], unpaced: [] as number[] };
    const applyCpuUnderLoad = { paced: [] as number[], unpaced: [] as number[] };
    const loads: string[] = [];
    const binding = lookupBinding()!;
    for (let round = 0; round < ROUNDS; round++) {
      const paced = PACED[round]!;
      const kind = paced ? 'paced' : 'unpaced';
      step(`round ${round + 1}: ${DELTAS_PER_ROUND} deltas (${paced ? 'paced' : 'not paced'}) under lookups, then a quiet round as long`);
      const overlay = service.table('emb').overlay!;
      const pacing = paced ? undefined : binding.overlayPacing(overlay.handle, 1, 0);
      const stop = { done: false };
      const lookups = measure(service, bodies, stop);
      started = performance.now();
      for (let d = 0; d < DELTAS_PER_ROUND; d++) {
        const t = performance.now();
        await service.applyDelta('emb', deltas[next++]!);
        appliedUnderLoad[kind].push(performance.now() - t);
        applyCpuUnderLoad[kind].push(overlay.lastPacing!.cpuMs);
      }
      const spanMs = performance.now() - started;
      if (pacing) binding.overlayPacing(overlay.handle, pacing[0], pacing[1]);
      stop.done = true;
      updating.push(await lookups);
      const quietStop = { done: false };
      const quietLookups = measure(service, bodies, quietStop);
      await new Promise((r) => setTimeout(r, spanMs));
      quietStop.done = true;
      quiet.push(await quietLookups);
      loads.push(load());
    }
    step('deltas with no lookups');
    const appliedQuiet: number[] = [];
    // CPU time of the process over an apply with nothing else running: what the apply costs,
    // less sensitive than wall time to the other users of the machine's 2 cores.
    const appliedQuietCpu: number[] = [];
    while (next < DELTAS_BEFORE_KILL) {
      const t = performance.now();
      const cpu = process.cpuUsage();
      await service.applyDelta('emb', deltas[next++]!);
      const used = process.cpuUsage(cpu);
      appliedQuiet.push(performance.now() - t);
      appliedQuietCpu.push((used.user + used.system) / 1000);
    }
    const info = service.list()[0]!;
    await service.close();

    step('SIGKILL during a delta, then recovery (3 children)');
    const killed = await killDuringDelta(tier, deltas[DELTAS_BEFORE_KILL]!);
    // The first child recovers what the kill left (undoing the cut delta); the others find it recovered.
    const deltaRecovery: Recovery[] = [];
    const deltaRecoveryRebooted: Recovery[] = [];
    for (let i = 0; i < 3; i++) {
      deltaRecovery.push(JSON.parse(await child(['recover', tier])) as Recovery);
      deltaRecoveryRebooted.push(JSON.parse(await child(['recover', tier, 'another-boot'])) as Recovery);
    }

    const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}`;
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    printTable(`delta of ${DELTA_UPSERTS} upserts (half new keys) into ${KEYS} keys of dim ${DIM}; load average ${load()}`, ['case', 'median ms', 'range ms', 'n'], [
      ['copy-on-write rewrite (the old way; a child without the addon)', cow.applyMs, '', 1],
      ['in place, first delta (makes the overlay)', firstMs, '', 1],
      [`in place, while ${CALLERS} callers look up on ${THREADS} threads, paced`, median(appliedUnderLoad.paced), range(appliedUnderLoad.paced), appliedUnderLoad.paced.length],
      ['  the same: CPU time of the applying thread', median(applyCpuUnderLoad.paced), range(applyCpuUnderLoad.paced), applyCpuUnderLoad.paced.length],
      [`in place, while ${CALLERS} callers look up on ${THREADS} threads, not paced`, median(appliedUnderLoad.unpaced), range(appliedUnderLoad.unpaced), appliedUnderLoad.unpaced.length],
      ['  the same: CPU time of the applying thread', median(applyCpuUnderLoad.unpaced), range(applyCpuUnderLoad.unpaced), applyCpuUnderLoad.unpaced.length],
      ['in place, no lookups', median(appliedQuiet), range(appliedQuiet), appliedQuiet.length],
      ['in place, no lookups: CPU time of the process', median(appliedQuietCpu), range(appliedQuietCpu), appliedQuietCpu.length],
    ]);
    const row = (label: string, r: Rate, base: Rate, l: string) => [label, r.keysPerSec / 1e6, r.keysPerSec / base.keysPerSec, r.p50Ms, r.p99Ms, r.requests, l];
    printTable(`mget, ${CALLERS} callers in-process, ${THREADS} lookup threads, ${BATCH}-key batches; x = against the quiet round after it`, ['round', 'Mkeys/s', 'x quiet', 'p50 ms', 'p99 ms', 'requests', 'load avg'], [
      ...updating.flatMap((u, i) => [row(`${i + 1}: deltas applying, ${PACED[i] ? 'paced' : 'not paced'}`, u, quiet[i]!, loads[i]!), row(`${i + 1}: quiet`, quiet[i]!, quiet[i]!, loads[i]!)]),
    ]);
    const recoveryRow = (label: string, rs: Recovery[]) => [label, median(rs.map((r) => r.ms)), range(rs.map((r) => r.ms)), median(rs.map((r) => r.cpuMs)), range(rs.map((r) => r.cpuMs)), median(rs.map((r) => r.recheckMs)), range(rs.map((r) => r.recheckMs))];
    printTable(`recovery, data part (ParamsService.recover in a fresh process); ${info.keys} keys; load average ${load()}`, ['case', 'median ms', 'range ms', 'CPU ms', 'CPU range', 'checks again ms', 'again range'], [
      recoveryRow('the table without deltas, same boot (file read whole before: index not read)', baseRecovery),
      recoveryRow('the table without deltas, as after a reboot (index read)', baseRecoveryRebooted),
      recoveryRow(`after SIGKILL with ${DELTAS_BEFORE_KILL * DELTA_UPSERTS} upserts applied (${killed} at the kill; undone: ${deltaRecovery[0]!.rolledBack} records), same boot`, deltaRecovery),
      recoveryRow('the same, as after a reboot (base index read)', deltaRecoveryRebooted),
    ]);
    return { keys: KEYS, dim: DIM, deltaUpserts: DELTA_UPSERTS, cow, firstMs, appliedUnderLoad, applyCpuUnderLoad, appliedQuiet, appliedQuietCpu, updating, quiet, loads, baseRecovery, baseRecoveryRebooted, deltaRecovery, deltaRecoveryRebooted, killed };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * CALLERS callers of mgetLease (the HTTP route's and the binary protocol's call: answers in
 * reused buffers) until `stop.done`. mgetAsync once took a new 1.4 MB SharedArrayBuffer per
 * batch, and the kernel's zeroing of that fresh memory came and went in phases of seconds
 * (5 against 16-19 Mkeys/s here), which swamped the deltas' effect on the rate.
 */
async function measure(service: ParamsService, bodies: Buffer[], stop: { done: boolean }): Promise<Rate> {
  const latencies: number[] = [];
  const begin = performance.now();
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, c) => {
      for (let i = c; !stop.done; i += CALLERS) {
        const sent = performance.now();
        const lease = await service.mgetLease('emb', bodies[i % bodies.length]!);
        latencies.push(performance.now() - sent);
        lease.release();
      }
    }),
  );
  return summarise(latencies, BATCH, (performance.now() - begin) / 1000);
}

/** Runs this file as a child in `mode` and answers its one line of output. */
function child(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', SELF, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    proc.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`child ${args[0]} exited ${code}: ${out}`))));
  });
}

/** A child recovers the table and applies `body` again and again; it is SIGKILLed during the second apply. Answers what it said last. */
function killDuringDelta(tier: string, body: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const deltaFile = join(tier, '..', 'kill-delta.bin');
    void writeFile(deltaFile, body).then(() => {
      const proc = spawn(process.execPath, ['--import', 'tsx', SELF, 'stream', tier, deltaFile], { stdio: ['ignore', 'pipe', 'inherit'] });
      let last = 'nothing';
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        last = line;
        // Applying the second delta: killed a random part of the way into it (a delta here takes tens of ms).
        if (line === 'applying 2') setTimeout(() => proc.kill('SIGKILL'), Math.random() * 40);
      });
      proc.once('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve(last) : reject(new Error(`the streaming child exited on its own after "${last}"`))));
    });
  });
}

/** What a recovering child reports (childMain's `recover`). */
interface Recovery {
  readonly ms: number;
  readonly cpuMs: number;
  readonly recheckMs: number;
  readonly rolledBack: number;
}

async function childMain(mode: string, args: string[]): Promise<void> {
  const { readFile } = await import('node:fs/promises');
  if (mode === 'cow') {
    const [dir, source, deltaFile] = args;
    const service = new ParamsService({ dir: dir! });
    await service.load('emb', source!);
    const body = await readFile(deltaFile!);
    const t = performance.now();
    await service.applyDelta('emb', body);
    process.stdout.write(`${JSON.stringify({ applyMs: performance.now() - t })}\n`);
  } else if (mode === 'recover') {
    if (args[1] === 'another-boot') {
      // As after a reboot: the manifest's stamps name another boot, so the recovery reads the
      // base index (and the values right after) instead of trusting the file (docs/PARAMS.md).
      const manifestPath = join(args[0]!, 'manifest.json');
      const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { tables: Array<{ checked?: { boot: string } }> };
      for (const t of manifest.tables) if (t.checked) t.checked.boot = 'another-boot';
      await writeFile(manifestPath, JSON.stringify(manifest));
    }
    const service = new ParamsService({ dir: args[0]! });
    const cpu = process.cpuUsage();
    const report = await service.recover();
    const used = process.cpuUsage(cpu); // the index checks run on 2 threads: CPU time can exceed wall time
    if (report.tables !== 1) throw new Error(`recovered ${report.tables} tables`);
    // The same checks again in the same process (the base index read and checked as recovery
    // does, and the overlay's recovery): what they cost once the process is up, without the
    // one-time costs of a new process and new mappings.
    const table = service.table('emb');
    const binding = lookupBinding()!;
    const { openSync, closeSync } = await import('node:fs');
    const again = performance.now();
    const fd = openSync(table.path, 'r');
    binding.crc32cOfFile(fd, table.header.indexOffset, table.header.indexBytes, 0, 2);
    closeSync(fd);
    if (table.overlay) binding.overlayRecover(table.overlay.handle);
    const recheckMs = performance.now() - again;
    process.stdout.write(`${JSON.stringify({ ms: report.ms, cpuMs: (used.user + used.system) / 1000, recheckMs, rolledBack: table.overlay?.rolledBack ?? 0 })}\n`);
    await service.valuesChecked; // and stamped again in the manifest, for the next child
    await service.close();
  } else if (mode === 'stream') {
    const service = new ParamsService({ dir: args[0]! });
    await service.recover();
    const body = await readFile(args[1]!);
    for (let n = 1; ; n++) {
      process.stdout.write(`applying ${n}\n`);
      await service.applyDelta('emb', body);
    }
  }
  process.exit(0); // background compactions, if any, are not part of these measurements
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode) await childMain(mode, args);
  else await run();
}
