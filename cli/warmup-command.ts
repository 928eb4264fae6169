import type { JobStatus } from '../jobs/index.js';
import { UsageError } from './usage-error.js';
import { apiBase, callApi } from './api-client.js';
import { readManifest } from './manifest.js';
import { progressLine } from './progress-line.js';
import { formatSize } from '../config/index.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/**
 * How long each progress request may wait: four redraws a second look live without loading
 * the daemon, and the daemon answers at once when the job ends, so the command exits
 * without a polling lag (`GET /v1/jobs/:id?waitMs=`).
 */
const POLL_MS = 250;
/** Without a terminal, a progress line every few seconds keeps CI logs short. */
const PLAIN_LINE_EVERY_MS = 5000;

/**
 * `strata warmup PATH... [--manifest FILE] [--tier T] [--pin]`: starts a prefetch job and
 * follows it with a progress bar until it ends. Ctrl-C cancels the job. Exit 0 when the
 * job is done, 1 when it failed or was cancelled.
 */
export async function runWarmup(values: Values, positionals: string[]): Promise<number> {
  const paths = [...positionals];
  if (typeof values.manifest === 'string') paths.push(...(await readManifest(values.manifest)));
  if (paths.length === 0) throw new UsageError('USAGE', 'warmup needs at least one PATH (or --manifest FILE)');
  const base = apiBase(values.api);
  const body = {
    paths: paths.map((p) => (p.startsWith('/') ? p : `${process.cwd()}/${p}`)),
    ...(typeof values.tier === 'string' ? { tier: values.tier } : {}),
    ...(values.pin === true ? { pin: true } : {}),
  };
  const started = (await callApi(base, 'POST', '/v1/prefetch', body)) as JobStatus;
  const cancel = () => void callApi(base, 'DELETE', `/v1/jobs/${started.id}`).catch(() => undefined);
  process.once('SIGINT', cancel);
  const tty = process.stderr.isTTY === true;
  const begin = Date.now();
  let lastPlain = 0;
  let status = started;
  try {
    while (status.state === 'queued' || status.state === 'running') {
      status = (await callApi(base, 'GET', `/v1/jobs/${started.id}?waitMs=${POLL_MS}`)) as JobStatus;
      const line = progressLine(status, (Date.now() - begin) / 1000);
      if (tty) process.stderr.write(`\r${line}\x1b[K`);
      else if (Date.now() - lastPlain >= PLAIN_LINE_EVERY_MS) {
        process.stderr.write(`${line}\n`);
        lastPlain = Date.now();
      }
    }
  } finally {
    process.off('SIGINT', cancel);
  }
  if (tty) process.stderr.write('\n');
  const summary = `${status.state}: ${status.filesDone}/${status.filesTotal} files, ${formatSize(status.bytesDone)} in ${((Date.now() - begin) / 1000).toFixed(1)} s`;
  if (values.json === true) process.stdout.write(`${JSON.stringify(status)}\n`);
  else process.stdout.write(`warmup ${summary}${status.error ? `: ${status.error}` : ''}\n`);
  return status.state === 'done' ? 0 : 1;
}
