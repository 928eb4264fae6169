import type { PeerDistribution } from '../p2p/index.js';
import type { JobStatus } from '../jobs/index.js';
import { UsageError } from './usage-error.js';
import { apiBase, callApi } from './api-client.js';
import { formatSize } from '../config/index.js';
import { progressLine } from './progress-line.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** Progress polling, as for warmup: four redraws a second. */
const POLL_MS = 250;

/**
 * `strata distribute PATH...`: asks the daemon to spread files to every peer (each peer
 * fetches the blocks it owns from the store, then the rest from its peers), follows this
 * daemon's share with a progress bar and lists which peers started theirs. Exit 0 when this
 * daemon's share is done, 1 otherwise.
 */
export async function runDistribute(values: Values, positionals: string[]): Promise<number> {
  if (positionals.length === 0) throw new UsageError('USAGE', 'distribute needs at least one PATH');
  const base = apiBase(values.api);
  const paths = positionals.map((p) => (p.startsWith('/') ? p : `${process.cwd()}/${p}`));
  const started = (await callApi(base, 'POST', '/v1/distribute', { paths })) as JobStatus & { peers: PeerDistribution[] };
  const cancel = () => void callApi(base, 'DELETE', `/v1/jobs/${started.id}`).catch(() => undefined);
  process.once('SIGINT', cancel);
  const tty = process.stderr.isTTY === true;
  const begin = Date.now();
  let status: JobStatus = started;
  try {
    while (status.state === 'queued' || status.state === 'running') {
      await new Promise((r) => setTimeout(r, POLL_MS));
      status = (await callApi(base, 'GET', `/v1/jobs/${started.id}`)) as JobStatus;
      if (tty) process.stderr.write(`\r${progressLine(status, (Date.now() - begin) / 1000)}\x1b[K`);
    }
  } finally {
    process.off('SIGINT', cancel);
  }
  if (tty) process.stderr.write('\n');
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ ...status, peers: started.peers })}\n`);
  } else {
    process.stdout.write(`distribute ${status.state}: ${status.filesDone}/${status.filesTotal} files, ${formatSize(status.bytesDone)} here in ${((Date.now() - begin) / 1000).toFixed(1)} s${status.error ? `: ${status.error}` : ''}\n`);
    for (const peer of started.peers) process.stdout.write(`  peer ${peer.peer}: ${peer.error ? `not started (${peer.error})` : `job ${(peer.job as { id?: string } | undefined)?.id ?? '?'}`}\n`);
  }
  return status.state === 'done' ? 0 : 1;
}
