import type { JobStatus } from '../jobs/index.js';
import { UsageError } from './usage-error.js';
import { apiBase, callApi, table } from './api-client.js';
import { formatSize } from '../config/index.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** `strata jobs [ls]` and `strata jobs cancel ID`: thin client of `/v1/jobs`. */
export async function runJobs(values: Values, positionals: string[]): Promise<number> {
  const [sub = 'ls', ...args] = positionals;
  const base = apiBase(values.api);
  if (sub === 'ls') {
    const { jobs } = (await callApi(base, 'GET', '/v1/jobs')) as { jobs: JobStatus[] };
    if (values.json === true) process.stdout.write(`${JSON.stringify(jobs, null, 2)}\n`);
    else {
      const rows = jobs.map((j) => [j.id, j.kind, j.state, `${j.filesDone}/${j.filesTotal}`, `${formatSize(j.bytesDone)}/${formatSize(j.bytesTotal)}`, j.error ?? '']);
      process.stdout.write(table(['id', 'kind', 'state', 'files', 'bytes', 'error'], rows));
    }
    return 0;
  }
  if (sub === 'cancel' && args.length === 1) {
    const job = (await callApi(base, 'DELETE', `/v1/jobs/${encodeURIComponent(args[0]!)}`)) as JobStatus;
    process.stdout.write(values.json === true ? `${JSON.stringify(job)}\n` : `job ${job.id}: ${job.state}\n`);
    return 0;
  }
  throw new UsageError('USAGE', 'jobs needs ls or cancel ID; run strata jobs --help');
}
