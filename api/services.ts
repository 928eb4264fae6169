import type { BlockCache, PinSet, TierName } from '../cache/index.js';
import type { WritePath } from '../checkpoints/index.js';
import type { DaemonConfig } from '../config/index.js';
import type { Filesystem, FuseMountInfo } from '../fuse/index.js';
import type { JobManager, JobStatus } from '../jobs/index.js';
import type { LinkRegistry, LinkRuntime } from '../links/index.js';
import type { PeerDistribution, PeerNode } from '../p2p/index.js';
import type { ClusterNode } from '../params/cluster/index.js';
import type { ParamsService } from '../params/index.js';
import type { Logger } from '../telemetry/index.js';

/**
 * Everything the admin API acts on. Owned by the Daemon; routes get it, never build it.
 */
export interface DaemonServices {
  readonly config: DaemonConfig;
  readonly logger: Logger;
  readonly cache: BlockCache;
  readonly links: LinkRuntime;
  /** Persisted links (`strata serve`); absent for `strata mount`, whose one link is fixed. */
  readonly registry: LinkRegistry | undefined;
  readonly jobs: JobManager;
  readonly fs: Filesystem;
  /** Pinned paths: their blocks are never evicted from the persistent tiers. */
  readonly pins: PinSet;
  /** Starts a prefetch job over mount paths (pinning what it finds with `pin`); answers the job's status. */
  prefetch(paths: readonly string[], options?: { include?: readonly string[]; exclude?: readonly string[]; kind?: string; pin?: boolean; tier?: TierName }): ReturnType<JobManager['submit']>;
  healthy(): boolean;
  /** How the mount is served (FUSE path, passthrough); undefined until mounted. */
  mountInfo(): FuseMountInfo | undefined;
  /** Block sharing with peer daemons (`--peers`); absent without it. */
  readonly peers: PeerNode | undefined;
  /** Starts this daemon's share of distributing mount `paths` and asks every live peer to start theirs. */
  distribute(paths: readonly string[]): Promise<{ job: JobStatus; peers: PeerDistribution[] }>;
  /** Parameter tables served from the persistent tier. */
  readonly params: ParamsService;
  /** This daemon's membership in a parameter-table cluster (`--cluster`), once joined; undefined without one. */
  cluster(): ClusterNode | undefined;
  /** The write path: staged files, their uploads, flush. */
  readonly writes: WritePath;
  /** Uploads not yet committed for the link at a mount path. */
  pendingUploads?: (path: string) => number;
  /** The whole process's memory against its limit (`--memory` plus the fixed overhead); absent in tests' fakes. */
  processMemory?: () => ProcessMemoryReport;
}

/** `GET /v1/cache`'s `memory.process`: where the process's resident bytes are, against the watchdog's limit. */
export interface ProcessMemoryReport {
  readonly rssBytes: number;
  /** V8's heap (JavaScript objects), reserved and used. */
  readonly heapTotalBytes: number;
  readonly heapUsedBytes: number;
  /** Memory outside V8's heap that JavaScript objects own: Buffers (block buffers among them) and native objects. */
  readonly externalBytes: number;
  /** The part of `externalBytes` that is ArrayBuffers and Buffers. */
  readonly arrayBuffersBytes: number;
  readonly limitBytes: number;
  /** What the watchdog lets the DRAM tier hold now (its capacity unless upload buffers or the process's size need the room). */
  readonly dramCapBytes: number;
  /** The write path's upload buffers, counted in `--memory` and taken from the DRAM tier. */
  readonly uploadBuffersBytes: number;
  /** Full garbage collections the watchdog forced since start, and the event-loop time they took (ms). */
  readonly reclaims: number;
  readonly reclaimMs: number;
}
