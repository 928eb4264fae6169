import { randomUUID } from 'node:crypto';
import { counter, gauge, type Logger } from '../telemetry/index.js';
import { JobError } from './job-error.js';

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

/** A job as `GET /v1/jobs/:id` shows it. */
export interface JobStatus {
  readonly id: string;
  readonly kind: string;
  readonly state: JobState;
  readonly filesDone: number;
  readonly filesTotal: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
  readonly error?: string;
  readonly createdAt: string;
  readonly finishedAt?: string;
}

/** What a running job reports through; totals may grow while a job discovers its files. */
export interface JobProgress {
  readonly signal: AbortSignal;
  addTotal(files: number, bytes: number): void;
  addDone(files: number, bytes: number): void;
}

export type JobBody = (progress: JobProgress) => Promise<void>;

/** Finished jobs kept for `GET /v1/jobs`; older ones are forgotten first. */
const FINISHED_JOBS_KEPT = 200;
/** Jobs that run at once; the rest wait queued, so a burst of requests does not flood the store. */
const DEFAULT_CONCURRENT_JOBS = 2;

const jobFiles = gauge('strata_job_files', 'Files of running jobs', ['state']);
const jobBytes = gauge('strata_job_bytes', 'Bytes of running jobs', ['state']);
const jobsFinished = counter('strata_jobs_finished_total', 'Jobs finished, by outcome', ['kind', 'state']);

class Job {
  readonly id = randomUUID();
  readonly createdAt = new Date();
  readonly controller = new AbortController();
  state: JobState = 'queued';
  filesDone = 0;
  filesTotal = 0;
  bytesDone = 0;
  bytesTotal = 0;
  error: string | undefined;
  finishedAt: Date | undefined;
  readonly finished: Promise<void>;
  #finish!: () => void;

  constructor(readonly kind: string, readonly body: JobBody) {
    this.finished = new Promise((resolve) => (this.#finish = resolve));
  }

  end(state: JobState, error?: string): void {
    this.state = state;
    this.error = error;
    this.finishedAt = new Date();
    this.#finish();
  }

  status(): JobStatus {
    return {
      id: this.id,
      kind: this.kind,
      state: this.state,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      ...(this.error ? { error: this.error } : {}),
      createdAt: this.createdAt.toISOString(),
      ...(this.finishedAt ? { finishedAt: this.finishedAt.toISOString() } : {}),
    };
  }
}

/**
 * Runs background jobs (prefetch, sync) a few at a time, with progress, cancellation
 * and a bounded history. A job's body gets an AbortSignal and must stop soon after it
 * fires; a job that throws ends `failed` with the error's message.
 */
export class JobManager {
  readonly #jobs = new Map<string, Job>();
  readonly #queue: Job[] = [];
  readonly #logger: Logger;
  readonly #concurrency: number;
  #running = 0;

  constructor(logger: Logger, concurrency = DEFAULT_CONCURRENT_JOBS) {
    this.#logger = logger;
    this.#concurrency = concurrency;
  }

  submit(kind: string, body: JobBody): JobStatus {
    const job = new Job(kind, body);
    this.#jobs.set(job.id, job);
    this.#queue.push(job);
    this.#forgetOld();
    this.#pump();
    return job.status();
  }

  list(): JobStatus[] {
    return [...this.#jobs.values()].map((j) => j.status());
  }

  get(id: string): JobStatus {
    return this.#job(id).status();
  }

  /** Resolves when the job has ended, with its final status. */
  async wait(id: string): Promise<JobStatus> {
    const job = this.#job(id);
    await job.finished;
    return job.status();
  }

  /** Resolves with the job's status once it has ended or after `ms`, whichever comes first. */
  async waitUpTo(id: string, ms: number): Promise<JobStatus> {
    const job = this.#job(id);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([job.finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
    return job.status();
  }

  /** Cancels a queued or running job; cancelling a finished job changes nothing. */
  cancel(id: string): JobStatus {
    const job = this.#job(id);
    if (job.state === 'queued') {
      this.#queue.splice(this.#queue.indexOf(job), 1);
      job.end('cancelled');
    } else if (job.state === 'running') {
      job.controller.abort();
    }
    return job.status();
  }

  /** Cancels everything and waits for running jobs to stop (daemon shutdown). */
  async close(): Promise<void> {
    const all = [...this.#jobs.values()];
    for (const job of all) if (job.state === 'queued' || job.state === 'running') this.cancel(job.id);
    await Promise.all(all.map((j) => j.finished));
  }

  #job(id: string): Job {
    const job = this.#jobs.get(id);
    if (!job) throw new JobError('JOB_NOT_FOUND', `no job with id ${id}`);
    return job;
  }

  #pump(): void {
    while (this.#running < this.#concurrency && this.#queue.length > 0) {
      const job = this.#queue.shift()!;
      this.#running++;
      void this.#run(job).finally(() => {
        this.#running--;
        this.#pump();
      });
    }
  }

  async #run(job: Job): Promise<void> {
    job.state = 'running';
    const progress: JobProgress = {
      signal: job.controller.signal,
      addTotal: (files, bytes) => {
        job.filesTotal += files;
        job.bytesTotal += bytes;
        jobFiles.inc({ state: 'total' }, files);
        jobBytes.inc({ state: 'total' }, bytes);
      },
      addDone: (files, bytes) => {
        job.filesDone += files;
        job.bytesDone += bytes;
        jobFiles.inc({ state: 'done' }, files);
        jobBytes.inc({ state: 'done' }, bytes);
      },
    };
    try {
      await job.body(progress);
      job.end(job.controller.signal.aborted ? 'cancelled' : 'done');
    } catch (err) {
      if (job.controller.signal.aborted) job.end('cancelled');
      else {
        this.#logger.warn({ job: job.id, kind: job.kind, err: (err as Error).message }, 'job failed');
        job.end('failed', (err as Error).message);
      }
    } finally {
      jobFiles.dec({ state: 'total' }, job.filesTotal);
      jobFiles.dec({ state: 'done' }, job.filesDone);
      jobBytes.dec({ state: 'total' }, job.bytesTotal);
      jobBytes.dec({ state: 'done' }, job.bytesDone);
      jobsFinished.inc({ kind: job.kind, state: job.state });
    }
  }

  #forgetOld(): void {
    const finished = [...this.#jobs.values()].filter((j) => j.finishedAt);
    for (const job of finished.slice(0, Math.max(0, finished.length - FINISHED_JOBS_KEPT))) this.#jobs.delete(job.id);
  }
}
