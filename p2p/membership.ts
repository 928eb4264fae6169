import { lookup } from 'node:dns/promises';
import { gauge, type Logger } from '../telemetry/index.js';
import { peerIdOfAddress, type PeerSource } from './peer-source.js';

/** Resolves a name to all its addresses (A and AAAA). */
export type ResolveAll = (name: string) => Promise<string[]>;

/** Milliseconds since some epoch; tests pass a fake one. */
export type Clock = () => number;

export interface MembershipOptions {
  readonly source: PeerSource;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly resolve?: ResolveAll;
  /** How often a DNS source is resolved again (default 5 s). */
  readonly refreshMs?: number;
  /** First backoff after a failure (default 1 s); doubles per consecutive failure up to `maxBackoffMs` (default 30 s). */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** One member as `GET /v1/p2p/peers` shows it. */
export interface PeerState {
  readonly id: string;
  readonly self: boolean;
  readonly up: boolean;
  readonly failures: number;
  /** While down: when it is tried again (ms, the membership's clock). */
  readonly retryAt?: number;
  readonly lastError?: string;
}

/**
 * A headless service's DNS answer changes as pods come and go; 5 s follows a rollout closely
 * while costing one lookup per 5 s per daemon.
 */
const DEFAULT_REFRESH_MS = 5000;
/** A peer that failed is skipped for 1 s, then 2, 4, ... up to 30 s while it keeps failing. */
const DEFAULT_BACKOFF_MS = 1000;
const DEFAULT_MAX_BACKOFF_MS = 30_000;

const peersGauge = gauge('strata_p2p_peers', 'Peers this daemon knows, by state (self counts as up)', ['state']);

const resolveWithDns: ResolveAll = async (name) => (await lookup(name, { all: true })).map((entry) => entry.address);

interface Failure {
  failures: number;
  retryAt: number;
  lastError: string;
}

/**
 * Who the peers are and which of them are up. The member list is the static list, or
 * every address a DNS name resolves to (refreshed in the background; a failed lookup
 * keeps the previous answer). A peer marked down is left out of `members()` until its
 * backoff has passed; then it is tried again, and one success marks it up. Self is always
 * a member once known, and never marked down.
 */
export class PeerMembership {
  readonly #source: PeerSource;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #resolve: ResolveAll;
  readonly #refreshMs: number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #down = new Map<string, Failure>();
  #known: readonly string[];
  #self: string | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: MembershipOptions) {
    this.#source = options.source;
    this.#logger = options.logger;
    this.#clock = options.clock ?? Date.now;
    this.#resolve = options.resolve ?? resolveWithDns;
    this.#refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS;
    this.#backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
    this.#maxBackoffMs = options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
    this.#known = options.source.kind === 'static' ? [...options.source.urls].sort() : [];
    this.#publish();
  }

  /** Resolves a DNS source once, then keeps refreshing it until `close()`. A static source needs nothing. */
  async start(): Promise<void> {
    if (this.#source.kind !== 'dns') return;
    await this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.#refreshMs);
    // The refresh must not keep a stopping daemon alive.
    this.#timer.unref();
  }

  /** Resolves a DNS source again now. A failed lookup keeps the previous member list. */
  async refresh(): Promise<void> {
    const source = this.#source;
    if (source.kind !== 'dns') return;
    try {
      const addresses = await this.#resolve(source.name);
      const ids = [...new Set(addresses.map((address) => peerIdOfAddress(address, source.port)))].sort();
      if (ids.join(' ') !== this.#known.join(' ')) this.#logger.info({ name: source.name, peers: ids }, 'peer list changed');
      this.#known = ids;
      for (const id of this.#down.keys()) if (!ids.includes(id)) this.#down.delete(id);
      this.#publish();
    } catch (err) {
      this.#logger.warn({ name: source.name, err: (err as Error).message }, 'peer DNS lookup failed; keeping the previous peer list');
    }
  }

  /** Sets this daemon's own id (so it never asks itself, and owns its share of blocks). */
  setSelf(id: string): void {
    this.#self = id;
    this.#down.delete(id);
    this.#publish();
  }

  get self(): string | undefined {
    return this.#self;
  }

  /** Every id the source names (up or down), sorted. */
  known(): readonly string[] {
    return this.#known;
  }

  /** The members blocks are spread over now: self plus every peer that is up or whose backoff has passed. Sorted. */
  members(): string[] {
    const now = this.#clock();
    const live = this.#known.filter((id) => id === this.#self || (this.#down.get(id)?.retryAt ?? 0) <= now);
    if (this.#self !== undefined && !live.includes(this.#self)) live.push(this.#self);
    return live.sort();
  }

  /** Peers other than self that are members now. */
  others(): string[] {
    return this.members().filter((id) => id !== this.#self);
  }

  /** A request to `id` failed: skip it for a backoff that doubles with each consecutive failure. */
  markDown(id: string, reason: string): void {
    if (id === this.#self) return;
    const previous = this.#down.get(id);
    const failures = (previous?.failures ?? 0) + 1;
    const backoff = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** (failures - 1));
    this.#down.set(id, { failures, retryAt: this.#clock() + backoff, lastError: reason });
    if (previous === undefined) this.#logger.warn({ peer: id, reason, retryInMs: backoff }, 'peer marked down');
    this.#publish();
  }

  /** A request to `id` succeeded. */
  markUp(id: string): void {
    if (!this.#down.delete(id)) return;
    this.#logger.info({ peer: id }, 'peer is up again');
    this.#publish();
  }

  view(): PeerState[] {
    const ids = new Set([...this.#known, ...(this.#self ? [this.#self] : [])]);
    const now = this.#clock();
    return [...ids].sort().map((id) => {
      const failure = this.#down.get(id);
      const self = id === this.#self;
      if (!failure || self) return { id, self, up: true, failures: 0 };
      return { id, self, up: failure.retryAt <= now, failures: failure.failures, retryAt: failure.retryAt, lastError: failure.lastError };
    });
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #publish(): void {
    const view = this.view();
    peersGauge.set({ state: 'up' }, view.filter((p) => p.up).length);
    peersGauge.set({ state: 'down' }, view.filter((p) => !p.up).length);
  }
}
