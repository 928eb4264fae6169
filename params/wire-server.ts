import { timingSafeEqual } from 'node:crypto';
import { chmod, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { StrataError } from '../errors/index.js';
import { counter, silentLogger, type Logger } from '../telemetry/index.js';
import type { AnswerLease } from './answer-buffers.js';
import { ParamsError } from './params-error.js';
import { FrameError, FrameReader, MAX_REQUEST_BYTES, REQUEST_HEADER_BYTES, responseHeader, WIRE_OPS } from './wire-frames.js';

/**
 * Requests of one connection being answered at once. Past this the server stops reading
 * the connection until answers go out: a client that pipelines without end, or never reads
 * its answers, holds at most this many answers here and slows nobody else down. 16 keeps
 * 2 lookup threads busy from a single connection (bench/params-lookup).
 */
const MAX_IN_FLIGHT = 16;
/** Answer bytes queued on a socket the client does not read, before reading from it stops (two 20,000-key answers at dim 16 fit). */
const MAX_QUEUED_ANSWER_BYTES = 4 * 1024 * 1024;

const framingErrors = counter('strata_params_wire_frame_errors_total', 'Binary-protocol connections closed for a malformed frame or a failed authentication');

export interface ParamsWireConfig {
  /**
   * Answers an mget of `keys` (N little-endian u64) in table `name` into a lease released once
   * sent. `keys` is only valid during the call (the server gathers the connection's next frame
   * into the same bytes): it must be read, or copied, before this returns, as
   * ParamsService.mgetLease does (the lookup threads get a copy in shared memory).
   */
  readonly mget: (name: string, keys: Uint8Array) => Promise<AnswerLease>;
  /** When set, a connection's first frame must be AUTH with this token (as STRATA_TOKEN for the REST API). */
  readonly token?: string | undefined;
  readonly logger?: Logger;
}

/** Where the server listens: a TCP host and port (0: any free port), or a unix socket path. */
export type ParamsWireAddress = { readonly host: string; readonly port: number } | { readonly path: string };

/**
 * The params binary protocol (wire-frames.ts, docs/PARAMS.md "Binary protocol") beside the
 * HTTP route: mget over persistent connections with pipelined, length-prefixed frames.
 * Answers of one connection may come back in any order (matched by id). A malformed
 * frame is answered with its error code and the connection closed; it never throws out of
 * the server.
 */
export class ParamsWireServer {
  readonly #config: ParamsWireConfig;
  readonly #logger: Logger;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #token: Buffer | undefined;

  constructor(config: ParamsWireConfig) {
    this.#config = config;
    this.#logger = (config.logger ?? silentLogger()).child({ component: 'params-wire' });
    this.#token = config.token ? Buffer.from(config.token) : undefined;
    this.#server = createServer({ noDelay: true }, (socket) => this.#serve(socket));
  }

  /**
   * Listens; answers the bound address (the port chosen when 0 was given). A unix socket
   * left behind by a process that was killed (nobody accepts on it) is replaced; one that
   * another server accepts on fails with EADDRINUSE. The socket is made 0600: only this
   * user may connect.
   */
  async listen(address: ParamsWireAddress): Promise<ParamsWireAddress> {
    try {
      await this.#listenOnce(address);
    } catch (err) {
      if (!('path' in address) || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || (await socketAnswers(address.path))) throw err;
      await unlink(address.path).catch(() => {});
      await this.#listenOnce(address);
    }
    const bound = this.#server.address();
    if (typeof bound === 'string' || bound === null) {
      const path = 'path' in address ? address.path : String(bound);
      await chmod(path, 0o600);
      this.#logger.info({ path }, 'params binary protocol listening');
      return { path };
    }
    this.#logger.info({ host: bound.address, port: bound.port }, 'params binary protocol listening');
    return { host: bound.address, port: bound.port };
  }

  #listenOnce(address: ParamsWireAddress): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      const done = () => {
        this.#server.off('error', reject);
        resolve();
      };
      if ('path' in address) this.#server.listen(address.path, done);
      else this.#server.listen(address.port, address.host, done);
    });
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: Socket): void {
    this.#sockets.add(socket);
    // Requests spread over chunks (a 20,000-key frame is 160 KB, socket reads are 64 KiB) are
    // gathered into one buffer per connection, reused: a fresh one per request was most of the
    // server's garbage, collected in major GCs for external memory (bench/params-tail).
    const reader = new FrameReader(REQUEST_HEADER_BYTES, MAX_REQUEST_BYTES, { reuse: true });
    let authed = this.#token === undefined;
    let inFlight = 0;
    let closing = false;
    const throttle = () => {
      const full = inFlight >= MAX_IN_FLIGHT || socket.writableLength > MAX_QUEUED_ANSWER_BYTES;
      if (full && !socket.isPaused()) socket.pause();
      else if (!full && socket.isPaused() && !closing) socket.resume();
    };
    const fail = (id: number, err: unknown, close: boolean) => {
      const error = err instanceof StrataError ? err : new ParamsError('INTERNAL', (err as Error).message ?? String(err));
      const body = Buffer.from(JSON.stringify({ statusCode: error.statusCode, code: error.code, message: error.message }));
      if (socket.destroyed) return;
      socket.cork();
      socket.write(responseHeader(id, error.statusCode, body.length));
      socket.write(body);
      socket.uncork();
      if (close) {
        closing = true;
        framingErrors.inc();
        socket.end();
      }
    };
    const onFrame = (frame: Buffer) => {
      if (closing) return;
      const id = frame.readUInt32LE(4);
      const op = frame.readUInt8(8);
      const nameBytes = frame.readUInt8(9);
      if (REQUEST_HEADER_BYTES + nameBytes > frame.length) return fail(id, new ParamsError('PARAMS_BAD_KEYS', `a frame of ${frame.length} bytes cannot hold its ${nameBytes}-byte table name`), true);
      const payload = frame.subarray(REQUEST_HEADER_BYTES + nameBytes);
      if (op === WIRE_OPS.auth) {
        if (this.#token && (payload.length !== this.#token.length || !timingSafeEqual(payload, this.#token))) return fail(id, new StrataError('API_UNAUTHORIZED', 'the token does not match STRATA_TOKEN'), true);
        authed = true;
        socket.write(responseHeader(id, 0, 0));
        return;
      }
      if (!authed) return fail(id, new StrataError('API_UNAUTHORIZED', 'STRATA_TOKEN is set: the first frame must be AUTH with it'), true);
      if (op !== WIRE_OPS.mget) return fail(id, new ParamsError('PARAMS_BAD_INPUT', `unknown operation ${op} (1 AUTH, 2 MGET)`), false);
      const name = frame.toString('utf8', REQUEST_HEADER_BYTES, REQUEST_HEADER_BYTES + nameBytes);
      inFlight++;
      throttle();
      let answer: Promise<AnswerLease>;
      try {
        answer = this.#config.mget(name, payload);
      } catch (err) {
        answer = Promise.reject(err);
      }
      answer.then(
        (lease) => {
          inFlight--;
          if (socket.destroyed) return lease.release();
          socket.cork();
          socket.write(responseHeader(id, 0, lease.bytes.length));
          // The socket is done with the bytes when this write's callback runs (sent, or the connection gone).
          socket.write(lease.bytes, () => lease.release());
          socket.uncork();
          throttle();
        },
        (err: unknown) => {
          inFlight--;
          fail(id, err, false);
          throttle();
        },
      );
    };
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, onFrame);
      } catch (err) {
        if (!(err instanceof FrameError)) throw err;
        const tooLarge = err.frameBytes > MAX_REQUEST_BYTES;
        fail(0, new ParamsError(tooLarge ? 'PARAMS_BATCH_TOO_LARGE' : 'PARAMS_BAD_KEYS', err.message), true);
      }
    });
    socket.on('drain', throttle);
    socket.on('error', (err) => this.#logger.debug({ err: err.message }, 'params binary protocol connection failed'));
    socket.on('close', () => this.#sockets.delete(socket));
  }
}

/** Whether some server accepts connections on the unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
