/**
 * Child of params/params-crash.test.ts: serves the table in DIR (loading SOURCE first when
 * nothing is served), then applies the delta stream (delta-stream.ts) from where the table is,
 * while lookups on a lookup thread and on the event loop check every answer they get: each
 * answer must hold one prefix of the stream whole (the one its sequence key names).
 * Prints `ready N` after recovery and `applied N` after each delta; the test SIGKILLs it.
 *
 *   node --import tsx params/testing/crash-child.ts DIR SOURCE
 */
import { ParamsService } from '../params-service.js';
import { KEY_SPACE, SEQUENCE_KEY, STREAM_DIM, StreamModel, streamDelta } from './delta-stream.js';

const [dir, source] = process.argv.slice(2);
const service = new ParamsService({ dir: dir!, lookupThreads: 1 });
await service.recover();
if (service.list().length === 0) await service.load('emb', source!);
const model = new StreamModel();
let sequence = sequenceIn(service.mget('emb', keys([SEQUENCE_KEY])), 1);
process.stdout.write(`ready ${sequence}\n`);

/** Random lookups that also ask for the sequence key, checked against the model at that sequence. */
async function reader(onThreads: boolean): Promise<never> {
  for (;;) {
    const asked = [SEQUENCE_KEY, ...Array.from({ length: 2000 }, () => BigInt(Math.floor(Math.random() * KEY_SPACE)))];
    const answer = onThreads ? await service.mgetAsync('emb', keys(asked)) : service.mget('emb', keys(asked));
    const at = sequenceIn(answer, asked.length);
    const state = model.at(at);
    const bitmapBytes = Math.ceil(asked.length / 32) * 4;
    for (let i = 1; i < asked.length; i++) {
      const want = state[Number(asked[i]!)];
      const found = (answer[i >> 3]! >> (i & 7)) & 1;
      const have = found ? Array.from({ length: STREAM_DIM }, (_, d) => answer.readFloatLE(bitmapBytes + (i * STREAM_DIM + d) * 4)) : undefined;
      if ((want === undefined) !== (have === undefined) || (want && want.join() !== have!.join())) {
        process.stdout.write(`mismatch at sequence ${at}: key ${asked[i]} has ${have?.join() ?? 'nothing'}, want ${want?.join() ?? 'nothing'}\n`);
        process.exit(2);
      }
    }
    // Both yield: until the lookup thread has the table mapped, mgetAsync answers on this thread
    // at once, and a loop of resolved promises would starve the event loop.
    await new Promise((r) => setImmediate(r));
  }
}

void reader(true);
void reader(false);
for (;;) {
  await service.applyDelta('emb', streamDelta(sequence + 1));
  sequence++;
  process.stdout.write(`applied ${sequence}\n`);
}

function keys(list: readonly bigint[]): Buffer {
  const out = Buffer.alloc(list.length * 8);
  list.forEach((k, i) => out.writeBigUInt64LE(k, i * 8));
  return out;
}

/** The sequence number an answer of `n` keys holds (its first key is SEQUENCE_KEY): 0 for the base table. */
function sequenceIn(answer: Buffer, n: number): number {
  return (answer[0]! & 1) === 0 ? 0 : answer.readFloatLE(Math.ceil(n / 32) * 4);
}
