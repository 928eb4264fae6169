import type { Readable } from 'node:stream';
import { StoreError, type CopyOptions, type GetRangeOptions, type ListOptions, type MultipartUpload, type ObjectMeta, type ObjectStore, type PutOptions, type UploadedPart } from '../../store/index.js';

type Method = 'head' | 'put' | 'createMultipart' | 'uploadPart' | 'listParts' | 'completeMultipart' | 'abortMultipart' | 'listMultipart' | 'getRange';

/**
 * Test double around a real store: records the calls the write path makes, fails the next N
 * calls (as an unreachable store does), or holds calls of one kind until a gate opens.
 */
export class ScriptedStore implements ObjectStore {
  readonly url: string;
  readonly calls: Method[] = [];
  readonly #inner: ObjectStore;
  #failures = 0;
  readonly #failOnly = new Set<Method>();
  readonly #gates = new Map<Method, { opened: Promise<void>; open: () => void }>();
  /** Milliseconds each uploadPart takes extra (a slow store). */
  partDelayMs = 0;

  constructor(inner: ObjectStore) {
    this.#inner = inner;
    this.url = inner.url;
  }

  /** The next `count` calls (of `only` methods, if given) throw STORE_UNREACHABLE. */
  failNext(count: number, only: Method[] = []): void {
    this.#failures = count;
    this.#failOnly.clear();
    for (const m of only) this.#failOnly.add(m);
  }

  /** Calls of `method` wait until the returned function is called. */
  hold(method: Method): () => void {
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    this.#gates.set(method, { opened, open });
    return () => {
      this.#gates.delete(method);
      open();
    };
  }

  /** Opens every gate (test cleanup). */
  openAll(): void {
    for (const gate of [...this.#gates.values()]) gate.open();
    this.#gates.clear();
  }

  count(method: Method): number {
    return this.calls.filter((c) => c === method).length;
  }

  /** Waits at the gate of `method`, if any; a `signal` ends the wait as it would end a real request. */
  async #enter(method: Method, signal?: AbortSignal): Promise<void> {
    this.calls.push(method);
    const gate = this.#gates.get(method);
    if (gate) {
      const aborted = new Promise<void>((resolve) => (signal?.aborted ? resolve() : signal?.addEventListener('abort', () => resolve(), { once: true })));
      await Promise.race([gate.opened, aborted]);
      if (signal?.aborted) throw new StoreError('STORE_IO', `${method} aborted`);
    }
    if (this.#failures > 0 && (this.#failOnly.size === 0 || this.#failOnly.has(method))) {
      this.#failures--;
      throw new StoreError('STORE_UNREACHABLE', `scripted outage (${method})`);
    }
  }

  check(): Promise<void> {
    return this.#inner.check();
  }
  async head(key: string) {
    await this.#enter('head');
    return this.#inner.head(key);
  }
  list(prefix: string, options?: ListOptions) {
    return this.#inner.list(prefix, options);
  }
  async getRange(key: string, start: number, length: number, options?: GetRangeOptions) {
    await this.#enter('getRange');
    return this.#inner.getRange(key, start, length, options);
  }
  async put(key: string, body: Buffer | Readable, options?: PutOptions) {
    await this.#enter('put', options?.signal);
    return this.#inner.put(key, body, options);
  }
  delete(key: string) {
    return this.#inner.delete(key);
  }
  copy(fromKey: string, toKey: string, options?: CopyOptions) {
    return this.#inner.copy(fromKey, toKey, options);
  }
  async createMultipart(key: string, options?: { readonly meta?: ObjectMeta }) {
    await this.#enter('createMultipart');
    return this.#inner.createMultipart(key, options);
  }
  async uploadPart(upload: MultipartUpload, partNumber: number, body: Buffer): Promise<UploadedPart> {
    await this.#enter('uploadPart');
    if (this.partDelayMs > 0) await new Promise((r) => setTimeout(r, this.partDelayMs));
    return this.#inner.uploadPart(upload, partNumber, body);
  }
  async listParts(upload: MultipartUpload) {
    await this.#enter('listParts');
    return this.#inner.listParts(upload);
  }
  async completeMultipart(upload: MultipartUpload, parts: readonly UploadedPart[]) {
    await this.#enter('completeMultipart');
    return this.#inner.completeMultipart(upload, parts);
  }
  async abortMultipart(upload: MultipartUpload) {
    await this.#enter('abortMultipart');
    return this.#inner.abortMultipart(upload);
  }
  async listMultipart(key: string) {
    await this.#enter('listMultipart');
    return this.#inner.listMultipart(key);
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}
