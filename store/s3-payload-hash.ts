import type { PayloadHasher } from './payload-hasher.js';

/** Bodies below this are hashed by the SDK itself: a threadpool round trip costs more than hashing them. */
const OFF_THREAD_HASH_MIN_BYTES = 1024 * 1024;

/**
 * Hands the SigV4 payload hash (SHA-256 of `body`) to the signer as its header, computed on a
 * worker thread (payload-hasher.ts). Without it the SDK hashes a Buffer body synchronously on
 * the event loop (with no checksum trailer, as here, over plain HTTP and HTTPS alike): 20-40 ms
 * per 16 MiB part here, during which the FUSE requests of a file being written wait. The
 * store still checks the hash, so the payload stays signed.
 */
export async function signWithPayloadHash(command: { middlewareStack: { add: (...args: never[]) => void } }, body: Buffer, hasher: PayloadHasher): Promise<void> {
  if (body.length < OFF_THREAD_HASH_MIN_BYTES) return;
  const hash = await hasher.hash(body);
  const middleware = (next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
    const request = (args as { request?: { headers?: Record<string, string> } }).request;
    if (request?.headers) request.headers['x-amz-content-sha256'] = hash;
    return next(args);
  };
  (command.middlewareStack as unknown as { add(m: unknown, o: { step: string; name: string; override: boolean }): void }).add(middleware, {
    step: 'build',
    name: 'strataPayloadHash',
    override: true,
  });
}
