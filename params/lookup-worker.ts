import { parentPort } from 'node:worker_threads';
import type { FromWorker, ToWorker } from './lookup-messages.js';
import { mgetAnswerBytes, ServedTable } from './served-table.js';
import { defaultTableMapper } from './table-mapper.js';

/** A lookup thread: maps the table files the pool names and answers ranges of mget batches. */
const tables = new Map<string, ServedTable>();
const mapper = defaultTableMapper();
const port = parentPort!;

port.on('message', (message: ToWorker) => {
  let reply: FromWorker;
  if (message.type === 'open') {
    try {
      // Opened again when the file gained an overlay (its first delta): only the overlay is
      // mapped then, beside the base mapping this thread already has.
      const open = tables.get(message.path);
      if (open) open.attachOverlayFile();
      else tables.set(message.path, ServedTable.open(message.path, mapper, { trusted: true }));
      reply = { type: 'opened', path: message.path };
    } catch (err) {
      reply = { type: 'opened', path: message.path, error: (err as Error).message };
    }
  } else if (message.type === 'close') {
    // Messages run in order: every lookup sent before this one has been answered.
    tables.get(message.path)?.close();
    tables.delete(message.path);
    return;
  } else {
    const table = tables.get(message.path);
    if (!table) {
      reply = { type: 'done', id: message.id, error: `table file ${message.path} is not open in this worker` };
    } else {
      const { shared, n, from, to } = message;
      const keys = new Uint32Array(shared, 0, n * 2);
      const out = new Uint32Array(shared, n * 8, mgetAnswerBytes(n, table.dim) / 4);
      table.mgetRange(keys, n, from, to, out);
      reply = { type: 'done', id: message.id };
    }
  }
  port.postMessage(reply);
});
