import { constants } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../telemetry/index.js';
import { errnoOf } from './errno.js';
import { opSeconds, promiseOf, reportFailure } from './fuse-metrics.js';
import { outHeader } from './kernel-protocol.js';
import type { FuseBinding, FuseSessionHandle } from './native-binding.js';

/**
 * Answers to the kernel for the native FUSE session: each request is pending from the moment
 * it is served until its answer is written (a body, nothing, or an errno), its time observed
 * and a failure reported once; requests that outlive the operation timeout are answered
 * ETIMEDOUT (an answer that arrives later is dropped).
 */

const E = constants.errno;

interface Pending {
  readonly op: string;
  readonly started: number;
}

export class FuseReplies {
  readonly #binding: FuseBinding;
  readonly #session: FuseSessionHandle;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #ended: () => boolean;
  readonly #pending = new Map<bigint, Pending>();

  constructor(binding: FuseBinding, session: FuseSessionHandle, logger: Logger, timeoutMs: number, ended: () => boolean) {
    this.#binding = binding;
    this.#session = session;
    this.#logger = logger;
    this.#timeoutMs = timeoutMs;
    this.#ended = ended;
  }

  /** Runs `work` and answers its result: a body, nothing, or a negative errno. */
  serve(op: string, unique: bigint, path: string, work: () => Promise<Buffer | number | undefined> | Buffer | number | undefined): void {
    const started = performance.now();
    this.#pending.set(unique, { op, started });
    promiseOf(work).then(
      (value) => {
        if (!this.#pending.delete(unique)) return;
        if (typeof value === 'number') {
          opSeconds.observe({ op }, (performance.now() - started) / 1000);
          this.#write(outHeader(unique, value, 0));
          return;
        }
        this.respond(unique, op, started, value);
      },
      (err: unknown) => this.#failed(unique, op, path, started, err),
    );
  }

  /** Answers a READ with what `read` resolves to, cut to `size` bytes. */
  serveRead(unique: bigint, path: string, size: number, read: () => Promise<Buffer>): void {
    const started = performance.now();
    this.#pending.set(unique, { op: 'read', started });
    read().then(
      (bytes) => {
        if (!this.#pending.delete(unique)) return;
        opSeconds.observe({ op: 'read' }, (performance.now() - started) / 1000);
        const data = bytes.length > size ? bytes.subarray(0, size) : bytes;
        this.#write(outHeader(unique, 0, data.length), data);
      },
      (err: unknown) => this.#failed(unique, 'read', path, started, err),
    );
  }

  /** Answers at once with `body` (or nothing), observing the time since `started`. */
  respond(unique: bigint, op: string, started: number, body: Buffer | undefined): void {
    opSeconds.observe({ op }, (performance.now() - started) / 1000);
    this.#write(outHeader(unique, 0, body?.length ?? 0), body);
  }

  /** Answers a negative errno at once (a request refused before any work). */
  fail(unique: bigint, errno: number): void {
    this.#write(outHeader(unique, errno, 0));
  }

  /** Answers ETIMEDOUT to requests that waited longer than the operation timeout (a bug's symptom). */
  expire(): void {
    const now = performance.now();
    for (const [unique, pending] of this.#pending) {
      if (now - pending.started < this.#timeoutMs) continue;
      this.#pending.delete(unique);
      this.#logger.error({ op: pending.op, ms: Math.round(now - pending.started) }, 'FUSE operation timed out; answered ETIMEDOUT');
      this.#write(outHeader(unique, -E.ETIMEDOUT, 0));
    }
  }

  #failed(unique: bigint, op: string, path: string, started: number, err: unknown): void {
    if (!this.#pending.delete(unique)) return;
    opSeconds.observe({ op }, (performance.now() - started) / 1000);
    reportFailure(op, path, err, this.#logger);
    this.#write(outHeader(unique, errnoOf(err), 0));
  }

  #write(header: Buffer, body?: Buffer): void {
    if (this.#ended()) return;
    const err = this.#binding.reply(this.#session, header, body);
    // ENOENT: the caller was interrupted (a signal) and no longer waits. Anything else is a bug.
    if (err !== 0 && err !== E.ENOENT) this.#logger.error({ errno: err }, 'cannot answer a FUSE request');
  }
}
