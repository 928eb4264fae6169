import type { Campaign, Election, Lease, Namespace } from 'etcd3';
import type { Logger } from '../../telemetry/index.js';
import { KEYS, type MemberRecord, type ReadyRecord } from './cluster-records.js';
import { splitKey } from './held-versions.js';
import type { Held } from './shard-materialiser.js';

/** What membership needs of its member. */
export interface MembershipHost {
  readonly node: string;
  /** This member's admin API base URL as the other members reach it. */
  readonly api: string;
  readonly leaseSeconds: number;
  readonly logger: Logger;
  closed(): boolean;
  /** Versions this member holds now, announced again under a new lease. */
  held(): Iterable<[string, Held]>;
  /** This member was elected coordinator. */
  elected(): void;
}

/**
 * One member's presence in the cluster: its record under a lease (kept alive, granted again
 * when etcd was unreachable long enough to lose it, with the versions it holds announced again)
 * and its campaign for coordinator (campaigning again after a failure).
 */
export class ClusterMembership {
  readonly #ns: Namespace;
  readonly #host: MembershipHost;
  #lease: Lease | undefined;
  #election: Election | undefined;
  #campaign: Campaign | undefined;
  #leader = false;

  constructor(ns: Namespace, host: MembershipHost) {
    this.#ns = ns;
    this.#host = host;
  }

  /** Whether this member is the elected coordinator now. */
  get leader(): boolean {
    return this.#leader;
  }

  /** The lease this member's keys live under (undefined before `join`). */
  get lease(): Lease | undefined {
    return this.#lease;
  }

  /** Writes the member record under a new lease, then campaigns. */
  async join(): Promise<void> {
    await this.#register();
    this.#election = this.#ns.election('coordinator', this.#host.leaseSeconds);
    this.#campaignLoop();
  }

  /** The coordinator's name as etcd has it, undefined if none or etcd does not answer. */
  async coordinator(): Promise<string | undefined> {
    return this.#election?.leader().catch(() => undefined);
  }

  /** Resigns and revokes the lease: the member and its ready keys go at once. */
  async leave(): Promise<void> {
    await this.#campaign?.resign().catch(() => undefined);
    await this.#lease?.revoke().catch(() => undefined);
  }

  /** Grants the lease and writes the member record; again after a lost lease. */
  async #register(): Promise<void> {
    const host = this.#host;
    const lease = this.#ns.lease(host.leaseSeconds, { autoKeepAlive: true });
    this.#lease = lease;
    lease.on('lost', (err) => {
      if (host.closed() || this.#lease !== lease) return;
      host.logger.error({ err: err.message }, 'cluster lease lost (etcd unreachable too long); joining again');
      void this.#register().catch((e: unknown) => host.logger.error({ err: (e as Error).message }, 'rejoining the cluster failed'));
    });
    const record: MemberRecord = { node: host.node, api: host.api, joinedAt: Date.now() };
    await lease.put(KEYS.member(host.node)).value(JSON.stringify(record));
    // Versions held under the old lease are announced again.
    for (const [key, held] of host.held()) {
      const [name, version] = splitKey(key);
      await lease.put(KEYS.ready(name, version, host.node)).value(JSON.stringify({ shards: held.shards, ms: 0 } satisfies ReadyRecord));
    }
  }

  #campaignLoop(): void {
    const host = this.#host;
    if (host.closed() || !this.#election) return;
    const campaign = this.#election.campaign(host.node);
    this.#campaign = campaign;
    campaign.on('elected', () => {
      this.#leader = true;
      host.logger.info('elected cluster coordinator');
      host.elected();
    });
    campaign.on('error', (err: Error) => {
      this.#leader = false;
      if (host.closed()) return;
      host.logger.warn({ err: err.message }, 'coordinator campaign failed; campaigning again');
      setTimeout(() => this.#campaignLoop(), 1000).unref();
    });
  }
}
