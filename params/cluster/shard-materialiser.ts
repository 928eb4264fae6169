import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { OpenStoreOptions } from '../../store/index.js';
import type { Logger } from '../../telemetry/index.js';
import { decodeDelta } from '../delta-body.js';
import type { ParamsService } from '../params-service.js';
import { ServedTable } from '../served-table.js';
import { defaultTableMapper } from '../table-mapper.js';
import { ClusterError } from './cluster-error.js';
import type { MemberRecord, SwitchRecord } from './cluster-records.js';
import { deltaForShards, recordsOfShards, writeRecordsTable } from './shard-records.js';
import type { ShardWriter } from './shard-writer.js';
import { copyServedTable } from './table-copy.js';

/** Copying a delta or a shard's rows from another member: large ones take a while, a dead member must not hang a prepare. */
const FETCH_TIMEOUT_MS = 5 * 60 * 1000;
/** Held table names in the params service: `cluster.<table>.v<version>`. */
export const LOCAL_PREFIX = 'cluster.';

/** A version this member holds shards of, as a table of its params service. */
export interface Held {
  readonly localName: string;
  readonly shards: readonly number[];
}

/** What a ShardMaterialiser needs of its cluster member. */
export interface MaterialiserHost {
  readonly node: string;
  readonly params: ParamsService;
  readonly stagingDir: string;
  readonly store?: OpenStoreOptions;
  readonly token?: string;
  readonly logger: Logger;
  readonly writer: ShardWriter;
  /** What this member holds of `name@version`, if anything. */
  held(key: string): Held | undefined;
  /** The live replicas of each shard of `name`'s serving version, as this member routes them. */
  replicas(name: string): ReadonlyArray<readonly string[]> | undefined;
  /** A delta body this member took (see ClusterNode.deltaBody). */
  deltaBody(id: string): Buffer;
  members(): Map<string, MemberRecord>;
}

/**
 * Makes the table a cluster member serves its shards of a new version from: written from
 * the source, copied with a delta applied, or gathered from its own rows and other members'.
 */
export class ShardMaterialiser {
  readonly #host: MaterialiserHost;

  constructor(host: MaterialiserHost) {
    this.#host = host;
  }

  /**
   * This member's table for `shards` of the switch's version:
   * - publish: written from byte ranges of the source;
   * - delta: the current table if the delta touches none of its shards, else a copy of it
   *   (its in-place deltas included) with the delta's part for its shards applied (the
   *   single-node load and delta);
   * - repair: the current table if it has every shard, else one written from its own rows
   *   and, for shards new to it, rows from a live replica (or from the source, when the
   *   table has no deltas and no replica is left).
   */
  async materialise(sw: SwitchRecord, shards: readonly number[]): Promise<Held> {
    const localName = `${LOCAL_PREFIX}${sw.name}.v${sw.version}`;
    const params = this.#host.params;
    if (sw.kind === 'publish') {
      await this.#stageAndLoad(localName, async (staged) => {
        const report = await this.#host.writer.write({ source: sw.source, etag: sw.etag, store: this.#host.store ?? {}, shards, dest: staged });
        this.#host.logger.info({ table: sw.name, version: sw.version, shards: shards.length, keys: report.keys, bytesRead: report.bytesRead }, 'shards of a new version loaded from the source');
      });
      return { localName, shards };
    }
    const base = sw.base !== undefined ? this.#host.held(`${sw.name}@${sw.base}`) : undefined;
    if (sw.kind === 'delta') {
      if (!base || shards.some((s) => !base.shards.includes(s))) throw new ClusterError('CLUSTER_VERSION_GONE', `this member does not hold its shards of version ${sw.base} of ${sw.name} to apply the delta to`);
      const mine = new Set(shards.filter((s) => sw.delta!.touched.includes(s)));
      if (mine.size === 0) return { localName: base.localName, shards };
      const body = await this.#fetchDelta(sw);
      const part = deltaForShards(decodeDelta(body), mine, sw.shards, sw.seed);
      await copyServedTable(params, base.localName, localName);
      try {
        await params.applyDelta(localName, part);
      } catch (err) {
        await params.unload(localName).catch(() => undefined);
        throw err;
      }
      return { localName, shards };
    }
    if (base && shards.every((s) => base.shards.includes(s))) return { localName: base.localName, shards };
    const own = base ? shards.filter((s) => base.shards.includes(s)) : [];
    const fetched = shards.filter((s) => !own.includes(s));
    const chunks: Buffer[] = [];
    if (base && own.length > 0) chunks.push(recordsOfShards(params.table(base.localName), new Set(own)));
    const fromSource: number[] = [];
    for (const s of fetched) {
      const holder = this.#host.replicas(sw.name)?.[s]?.find((n) => n !== this.#host.node);
      if (holder) chunks.push(await this.#fetchRecords(holder, sw.name, sw.base!, [s]));
      else if ((sw.deltas ?? 0) === 0) fromSource.push(s);
      else throw new ClusterError('CLUSTER_UNAVAILABLE', `no live replica of shard ${s} of ${sw.name} to copy, and the source lacks its deltas`);
    }
    await this.#stageAndLoad(localName, async (staged) => {
      if (fromSource.length > 0) {
        const partial = `${staged}.source`;
        try {
          await this.#host.writer.write({ source: sw.source, etag: sw.etag, store: this.#host.store ?? {}, shards: fromSource, dest: partial });
          const written = ServedTable.open(partial, defaultTableMapper());
          chunks.push(recordsOfShards(written, new Set(fromSource)));
          written.close();
        } finally {
          await rm(partial, { force: true });
        }
      }
      writeRecordsTable(staged, sw, chunks);
    });
    this.#host.logger.info({ table: sw.name, version: sw.version, kept: own.length, copied: fetched.length - fromSource.length, fromSource: fromSource.length }, 'shards placed on this member');
    return { localName, shards };
  }

  /** Writes a table file in the staging folder with `write`, then has the params service load it as `localName`. */
  async #stageAndLoad(localName: string, write: (staged: string) => Promise<void>): Promise<void> {
    const staged = join(this.#host.stagingDir, `${localName}-${randomBytes(4).toString('hex')}.params`);
    try {
      await write(staged);
      await this.#host.params.load(localName, staged);
    } finally {
      await rm(staged, { force: true });
    }
  }

  async #fetchDelta(sw: SwitchRecord): Promise<Buffer> {
    if (sw.delta!.from === this.#host.node) return this.#host.deltaBody(sw.id);
    return this.#fetchFrom(sw.delta!.from, `/v1/params/cluster/deltas/${encodeURIComponent(sw.id)}`);
  }

  #fetchRecords(node: string, name: string, version: number, shards: readonly number[]): Promise<Buffer> {
    return this.#fetchFrom(node, `/v1/params/cluster/${encodeURIComponent(name)}/versions/${version}/records?shards=${shards.join(',')}`);
  }

  async #fetchFrom(node: string, path: string): Promise<Buffer> {
    const member = this.#host.members().get(node);
    if (!member) throw new ClusterError('CLUSTER_UNAVAILABLE', `${node} is not a member any more`);
    const headers: Record<string, string> = this.#host.token ? { authorization: `Bearer ${this.#host.token}` } : {};
    const res = await fetch(new URL(path, member.api), { headers, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    if (!res.ok) throw new ClusterError('CLUSTER_UNAVAILABLE', `${node} answered ${res.status} to ${path}: ${(await res.text()).slice(0, 200)}`);
    return Buffer.from(await res.arrayBuffer());
  }
}
