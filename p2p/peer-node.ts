import type { FetchRange } from '../cache/index.js';
import { blockId, blockKeyOf } from '../cache/index.js';
import type { ObjectReader } from '../cache/index.js';
import type { ObjectRef } from '../store/index.js';
import type { Logger } from '../telemetry/index.js';
import type { Clock, PeerMembership, PeerState } from './membership.js';
import { p2pMetrics } from './metrics.js';
import { PeerClient, PeerFetchError, type FallbackReason } from './peer-client.js';
import { PeerServer, type PeerServing } from './peer-server.js';
import { rendezvousOwner } from './rendezvous.js';
import { selfIdFor } from './self-address.js';
import type { PeerRequest, PeerResponse, PeerTransport } from './transport.js';

export interface PeerNodeOptions {
  readonly membership: PeerMembership;
  readonly transport: PeerTransport;
  /** STRATA_PEER_SECRET: signs and verifies every request and block reply. */
  readonly secret: string;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Default 500 ms: a peer on the same network connects in well under a millisecond; longer means it is gone. */
  readonly connectTimeoutMs?: number;
  /**
   * Default 5 s for a whole block from its owner: the owner may itself be fetching it from
   * the store (a 4 MiB GET took 30-300 ms here, more under load), so this waits for a busy
   * owner but not for a stuck one.
   */
  readonly blockTimeoutMs?: number;
  /** STRATA_TOKEN, sent as a bearer token: peers whose admin API requires it accept us. */
  readonly apiToken?: string | undefined;
}

/** What asking one peer to take part in a distribution gave. */
export interface PeerDistribution {
  readonly peer: string;
  readonly job?: unknown;
  readonly error?: string;
}

/** Reasons after which the owner is skipped for a while: it is gone, slow, misconfigured or faulty. */
const MARK_DOWN: ReadonlySet<FallbackReason> = new Set(['unreachable', 'unauthorized', 'signature', 'checksum']);

const DEFAULT_CONNECT_TIMEOUT_MS = 500;
const DEFAULT_BLOCK_TIMEOUT_MS = 5000;

/**
 * One daemon's part in block sharing. `wrap` turns the store fetch of the block cache into
 * a peer-aware one: the block's owner (rendezvous hashing of the block id over the live
 * members, self included) is asked first, and the store is used when self owns the block,
 * when the owner fails in any way (it is then marked down for a backoff), or when the
 * block is being read on behalf of a peer (a peer's request is never forwarded, so two
 * daemons with different member lists cannot bounce a block between them). Reads never
 * fail because of a peer: the worst case is one timeout, then the store.
 */
export class PeerNode {
  readonly membership: PeerMembership;
  readonly #client: PeerClient;
  readonly #server: PeerServer;
  readonly #transport: PeerTransport;
  readonly #logger: Logger;

  constructor(options: PeerNodeOptions) {
    const clock = options.clock ?? Date.now;
    this.membership = options.membership;
    this.#transport = options.transport;
    this.#logger = options.logger;
    this.#client = new PeerClient({
      transport: options.transport,
      secret: options.secret,
      clock,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      blockTimeoutMs: options.blockTimeoutMs ?? DEFAULT_BLOCK_TIMEOUT_MS,
      apiToken: options.apiToken,
    });
    this.#server = new PeerServer({ secret: options.secret, clock, logger: options.logger });
  }

  /** The server side of the transport: every peer request goes through here. */
  readonly handle = (request: PeerRequest): Promise<PeerResponse> => this.#server.handle(request);

  /**
   * Connects the daemon's cache and jobs so this node can serve peers. `serving.readBlock`
   * must read with a session opened with `origin: 'peer'` (as `serveFrom` does), so that a
   * block a peer asked for is fetched from the store, never forwarded.
   */
  attach(serving: PeerServing): void {
    this.#server.attach(serving);
  }

  /**
   * Serves peers from `reader` (the daemon's block cache: concurrent askers of one block
   * share its one store fetch) and starts distributions with `startDistribute`.
   */
  serveFrom(reader: ObjectReader, startDistribute: (paths: readonly string[]) => unknown): void {
    this.attach({
      readBlock: async (ref, start, length) => {
        const session = reader.openSession(ref, { origin: 'peer' });
        try {
          return await reader.read(session, start, length);
        } finally {
          reader.closeSession(session);
        }
      },
      startDistribute,
    });
  }

  /**
   * Tells the node where its admin API listens, so it finds its own entry among the peers
   * (see selfIdFor) and never asks itself. Until then every block comes from the store.
   */
  listening(apiHost: string, port: number, advertise?: string): string {
    const { id, listed } = selfIdFor({ known: this.membership.known(), apiHost, port, advertise });
    if (!listed) this.#logger.warn({ self: id, peers: this.membership.known() }, 'this daemon is not in its own peer list; peers will not ask it for blocks (pass --advertise URL?)');
    this.membership.setSelf(id);
    this.#logger.info({ self: id, peers: this.membership.known() }, 'peer-to-peer block sharing on');
    return id;
  }

  /** The member that owns block `index` of `ref` now (undefined before self is known and no peer is up). */
  ownerOf(ref: ObjectRef, index: number): string | undefined {
    return rendezvousOwner(blockId(blockKeyOf(ref, index)), this.membership.members());
  }

  /** True when this daemon should fetch block `index` of `ref` from the store itself. */
  owns(ref: ObjectRef, index: number): boolean {
    const owner = this.ownerOf(ref, index);
    return owner === undefined || owner === this.membership.self;
  }

  /** `storeFetch` made peer-aware, for a cache whose blocks are `blockSize` bytes. */
  wrap(fetchFromStore: FetchRange, blockSize: number): FetchRange {
    const storeFetch: FetchRange = async (request) => {
      const bytes = await fetchFromStore(request);
      p2pMetrics.storeBytes.inc(bytes.length);
      return bytes;
    };
    return async (request) => {
      const { ref, range: { start, length }, signal } = request;
      if (request.origin === 'peer' || this.membership.self === undefined) return storeFetch(request);
      const owner = this.ownerOf(ref, Math.floor(start / blockSize));
      if (owner === undefined || owner === this.membership.self) return storeFetch(request);
      try {
        const bytes = await this.#client.fetchBlock(owner, { ref, start, length }, signal);
        this.membership.markUp(owner);
        p2pMetrics.blocksFromPeers.inc();
        p2pMetrics.bytesFromPeers.inc(bytes.length);
        return bytes;
      } catch (err) {
        // The cache is closing: no point in asking the store either.
        if (signal?.aborted) throw err;
        const reason: FallbackReason = err instanceof PeerFetchError ? err.reason : 'unreachable';
        if (MARK_DOWN.has(reason)) this.membership.markDown(owner, (err as Error).message);
        p2pMetrics.fallbacks.inc({ reason });
        this.#logger.debug({ peer: owner, key: ref.key, start, reason, err: (err as Error).message }, 'peer fetch failed; reading from the store');
        return storeFetch(request);
      }
    };
  }

  /** Asks every other live member to start its share of distributing `paths`. Never throws. */
  async distributeToPeers(paths: readonly string[]): Promise<PeerDistribution[]> {
    return Promise.all(
      this.membership.others().map(async (peer): Promise<PeerDistribution> => {
        try {
          return { peer, job: await this.#client.startDistribute(peer, paths) };
        } catch (err) {
          this.#logger.warn({ peer, err: (err as Error).message }, 'peer did not start its share of a distribution');
          return { peer, error: (err as Error).message };
        }
      }),
    );
  }

  peers(): PeerState[] {
    return this.membership.view();
  }

  async close(): Promise<void> {
    this.membership.close();
    await this.#transport.close();
  }
}
