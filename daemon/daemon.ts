import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { ParamsService } from '../params/index.js';
import { ClusterNode } from '../params/cluster/index.js';
import { WritePath } from '../checkpoints/index.js';
import { StoreError, releaseFreedBlockMemory, reserveBlockMemory } from '../store/index.js';
import { BlockCache, PinSet, resolveBlockCacheConfig, type FetchRange, type TierName } from '../cache/index.js';
import { StrataError } from '../errors/index.js';
import { Filesystem, FuseMount, prepareMountPoint, type FuseMountInfo } from '../fuse/index.js';
import { MountRoutes } from '../namespace/index.js';
import type { ObjectRef } from '../store/index.js';
import { distributeJob, openPeerNode, type PeerDistribution, type PeerNode } from '../p2p/index.js';
import { JobManager, prefetchJob, type PrefetchSource } from '../jobs/index.js';
import { LinkRegistry, LinkRuntime, eagerFilter, linkCreateSchema, type Link } from '../links/index.js';
import type { Logger } from '../telemetry/index.js';
import { startApiServer, type ApiServer, type DaemonServices } from '../api/index.js';
import type { DaemonConfig } from '../config/index.js';
import { FetchScheduler } from './fetch-scheduler.js';
import { MemoryWatchdog } from './memory-watchdog.js';
import { collectForBlockArena, processMemory, processMemoryLimit, reclaimMemory, tuneAllocator } from './process-memory.js';
import { listenParamsWire, openParams, type EarlyStart } from './params-start.js';
import { makeFolders } from '../durable/index.js';

export class Daemon {
  readonly api: ApiServer;
  readonly #services: DaemonServices;
  readonly #cleanups: Array<() => Promise<unknown>>;
  #stopped = false;

  private constructor(api: ApiServer, services: DaemonServices, cleanups: Array<() => Promise<unknown>>) {
    this.api = api;
    this.#services = services;
    this.#cleanups = cleanups;
  }

  get services(): DaemonServices {
    return this.#services;
  }

  /**
   * Start order: cache, links (stores checked for `strata mount`), file system, API, and
   * the mount last, so a failure before it leaves nothing mounted. Stop runs in reverse.
   * `early` (startParamsEarly) holds the parameter tables and the API socket already
   * answering their lookups; the daemon takes both over. Node's process metrics are the
   * executable's to start (`collectProcessMetrics`, once the daemon is announced).
   */
  static async start(config: DaemonConfig, logger: Logger, early?: EarlyStart): Promise<Daemon> {
    // Before the FUSE threads and the I/O pool allocate their first buffers.
    tuneAllocator(logger);
    // GET bodies land in one reserved arena, reused once collected (store/block-arena.ts).
    if (!reserveBlockMemory(config.memoryBudgetBytes, collectForBlockArena)) logger.warn('no block memory arena (the strata_arena addon is missing or the reservation was refused): blocks use ordinary memory');
    const cleanups: Array<() => Promise<unknown>> = [];
    if (early) {
      // Closed last on a failed start (or by the API's close once it owns the socket).
      cleanups.push(() => early.api.close(), () => early.params.close());
    }
    const undo = async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((err) => logger.warn({ err }, 'shutdown step failed'));
    };
    try {
      // The mount point is checked first, so a wrong path fails before anything starts.
      await prepareMountPoint(config.mountPoint, logger);
      await makeFolders(config.stateDir);
      let fs: Filesystem | undefined;
      let mount: FuseMount | undefined;
      const scheduler = new FetchScheduler();
      const links = new LinkRuntime({
        logger,
        metadataTtlMs: config.metadataTtlSeconds * 1000,
        staleOnErrorMs: config.staleOnErrorSeconds * 1000,
        // A link added, changed or removed can change any path: the kernel forgets all it knows.
        onRoutes: (routes) => {
          fs?.setRoutes(routes);
          mount?.invalidate();
        },
        foreground: scheduler.foreground,
        metadataFromHead: config.objectMetadata === 'listed',
        onInvalidate: (path, subtree) => mount?.invalidate(path, { subtree }),
      });
      cleanups.push(() => links.close());
      const pins = await PinSet.open(config.stateDir);
      const peers = config.peers ? await openPeerNode({ peers: config.peers, peerTimeoutMs: config.peerTimeoutMs, secret: config.secrets.peerSecret ?? '', apiToken: config.secrets.token }, logger.child({ component: 'p2p' })) : undefined;
      if (peers) cleanups.push(() => peers.close());
      const cache = await openBlockCache(config, links, pins, scheduler, logger, peers);
      cleanups.push(() => cache.close());
      const writes = await openWritePath(config, links, pins, cache, logger);
      const watchdog = watchMemory(config, cache, writes, logger);
      cleanups.push(async () => watchdog.stop());

      fs = new Filesystem({
        routes: new MountRoutes([]),
        reader: cache,
        logger,
        writes,
        ...(config.uid !== undefined ? { uid: config.uid } : {}),
        ...(config.gid !== undefined ? { gid: config.gid } : {}),
        ...(config.fileMode !== undefined ? { fileMode: config.fileMode } : {}),
        ...(config.dirMode !== undefined ? { dirMode: config.dirMode } : {}),
      });

      let registry: LinkRegistry | undefined;
      if (config.store) {
        const link = linkCreateSchema.parse({
          name: 'root',
          path: '/',
          store: config.store,
          endpoint: config.endpoint,
          region: config.region,
          readOnly: config.readOnly,
          export: { mode: config.close },
        });
        await links.add(link, { check: true });
      } else {
        registry = await LinkRegistry.open(config.stateDir);
        for (const link of registry.list()) await addPersistedLink(links, link, logger);
      }

      // Closed files journaled by a previous run go to the store again (their links are back now).
      await writes.recover();
      cleanups.push(() => writes.close());

      const jobs = new JobManager(logger.child({ component: 'jobs' }));
      cleanups.push(() => jobs.close());
      const params = early?.params ?? (await openParams(config, logger));
      if (!early) cleanups.push(() => params.close());
      // An early start from options read before the schema opens no wire listener: it opens here.
      if (early && !early.wire && config.paramsWire) await listenParamsWire(params, config.paramsWire, config.secrets.token);
      let cluster: ClusterNode | undefined;
      const distributeSource: PrefetchSource = { routes: () => links.routes(), reader: cache, blockSize: cache.config.blockSize };
      const distributeHere = (paths: readonly string[]) =>
        jobs.submit('distribute', distributeJob(distributeSource, (ref, index) => peers?.owns(ref, index) ?? true, paths));
      peers?.serveFrom(cache, distributeHere);
      const services: DaemonServices = {
        config,
        logger,
        cache,
        links,
        registry,
        jobs,
        fs,
        pins,
        prefetch: (paths, options = {}) =>
          jobs.submit(
            options.kind ?? 'prefetch',
            prefetchJob(
              {
                routes: () => links.routes(),
                reader: cache,
                blockSize: cache.config.blockSize,
                warmBlock: (ref, index, tier) => cache.warmBlock(ref, index, tier),
                writesSettled: () => cache.writesSettled(),
              },
              {
                paths,
                ...(options.tier ? { tier: options.tier } : {}),
                ...(options.include ? { include: options.include } : {}),
                ...(options.exclude ? { exclude: options.exclude } : {}),
                ...(options.pin ? { onFile: (root: string, ref: ObjectRef) => pins.cover(root, ref) } : {}),
              },
            ),
          ),
        healthy: () => mount !== undefined,
        mountInfo: () => mount?.info,
        writes,
        params,
        cluster: () => cluster,
        pendingUploads: (path) => {
          const live = links.all().find((l) => l.link.path === path);
          return live ? writes.pendingUnder(live.storeId, '').length : 0;
        },
        processMemory: () => watchdog.report(),
        peers,
        distribute: async (paths) => ({ job: distributeHere(paths), peers: peers ? await peers.distributeToPeers(paths) : [] }),
      };
      const api = await startApiServer({ host: config.api.host, port: config.api.port, logger, services, early: early?.api });
      cleanups.push(() => api.close());
      peers?.listening(config.api.host, api.port, config.advertise);
      // The cluster learns this member's API address, so it joins once the API listens.
      if (config.cluster) {
        cluster = await ClusterNode.join({
          address: config.cluster,
          node: config.nodeName,
          api: config.advertise ?? `http://${config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host}:${api.port}`,
          params,
          stagingDir: join(config.stateDir, 'cluster-staging'),
          store: { endpoint: config.endpoint, region: config.region },
          logger,
          ...(config.secrets.token ? { token: config.secrets.token } : {}),
        });
        const joined = cluster;
        cleanups.push(() => joined.close());
      }
      mount = await FuseMount.mount(
        fs,
        config.mountPoint,
        { metadataTtlSeconds: config.metadataTtlSeconds, allowOther: config.allowOther, allowRoot: config.allowRoot, fsName: 'strata', fusePath: config.fusePath },
        logger,
      );
      const mounted = mount;
      cleanups.push(async () => {
        const how = await mounted.unmount();
        logger.info({ mountPoint: config.mountPoint, how }, 'unmounted');
      });
      logger.info({ store: config.store, mountPoint: config.mountPoint, links: links.all().length, api: `${config.api.host}:${api.port}` }, 'mounted');
      for (const live of links.all()) if (live.link.import.mode === 'eager') services.prefetch([live.link.path], eagerFilter(live.link));
      // Pinned paths are read again at start: that finds their current versions and keeps them cached.
      if (pins.paths().length > 0) services.prefetch(pins.paths(), { kind: 'pins', pin: true });
      return new Daemon(api, services, cleanups);
    } catch (err) {
      await undo();
      throw err;
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const cleanup of this.#cleanups.splice(0).reverse()) {
      await cleanup().catch((err) => this.#services.logger.warn({ err }, 'shutdown step failed'));
    }
  }
}

/**
 * The write path: files staged under `<state-dir>/staging` (at most half of the free space
 * there at start, so staging cannot fill the disk the journal needs), uploaded to their
 * link's store; the newest checkpoints stay pinned in the cache.
 */
async function openWritePath(config: DaemonConfig, links: LinkRuntime, pins: PinSet, cache: BlockCache, logger: Logger): Promise<WritePath> {
  const stagingDir = join(config.stateDir, 'staging');
  await makeFolders(stagingDir);
  const space = await statfs(stagingDir);
  const writes = new WritePath(
    {
      stagingDir,
      stagingLimitBytes: config.stagingBytes ?? Math.floor((space.bavail * space.bsize) / 2),
      closeMode: config.close,
      shareWithKernel: config.writePassthrough,
      pins: { pin: (ref) => pins.pinVersion(ref), unpin: (ref) => pins.unpinVersion(ref) },
      logger: logger.child({ component: 'writes' }),
    },
    // A staged file whose link is gone waits for it: the upload fails with STORE_NOT_FOUND and is retried.
    (storeId) => links.storeFor(storeId),
    // The uploaded bytes go into the cache under the new ETag instead of being read back.
    async (ref, stagedFile) => {
      await cache.adopt(ref, stagedFile);
    },
  );
  return writes;
}

/**
 * Samples this often: the process grows by at most a few blocks per 250 ms under the
 * bench/memory-load mix, and a sample (process.memoryUsage) costs about a millisecond.
 */
const MEMORY_CHECK_EVERY_MS = 250;
/** The DRAM tier keeps at least this many blocks however hard it is squeezed: a sequential reader's block and its readahead. */
const MIN_DRAM_BLOCKS = 4;

/** Holds the process's resident size under `--memory` plus the fixed overhead (memory-watchdog.ts). */
function watchMemory(config: DaemonConfig, cache: BlockCache, writes: WritePath, logger: Logger): MemoryWatchdog {
  const watchdog = new MemoryWatchdog({
    limitBytes: processMemoryLimit(config.memoryBudgetBytes),
    dramBytes: cache.config.dramBytes,
    minDramBytes: Math.min(cache.config.dramBytes, MIN_DRAM_BLOCKS * cache.config.blockSize),
    sample: processMemory,
    dramUsed: () => cache.stats().find((tier) => tier.name === 'dram')?.usedBytes ?? 0,
    uploadBuffers: () => writes.uploadBufferBytes(),
    reclaim: reclaimMemory,
    limitDram: (bytes, pressure) => {
      cache.limitMemory(bytes, pressure);
      // What the cap evicts must leave the resident size, not wait in the arena for reuse.
      releaseFreedBlockMemory(bytes !== undefined);
    },
    logger: logger.child({ component: 'memory' }),
  });
  watchdog.start(MEMORY_CHECK_EVERY_MS);
  return watchdog;
}

/**
 * A persisted link comes back even if its store is unreachable at start: its files then
 * fail with EIO until the store answers, instead of the whole daemon failing to start.
 */
async function addPersistedLink(links: LinkRuntime, link: Link, logger: Logger): Promise<void> {
  const live = await links.add(link, { check: false });
  live.store.check().catch((err: unknown) => {
    logger.warn({ link: link.name, store: link.store, err: err instanceof StrataError ? err.message : String(err) }, 'link store not usable at start');
  });
}

/** The block cache over the configured tiers; a miss is fetched from its link's store, ETag checked. */
async function openBlockCache(config: DaemonConfig, links: LinkRuntime, pins: PinSet, scheduler: FetchScheduler, logger: Logger, peers: PeerNode | undefined): Promise<BlockCache> {
  const { tiers } = config;
  let nvme;
  if (tiers.nvme) {
    await makeFolders(tiers.nvme.path);
    // Without a size the tier may use the whole filesystem; its own free-space guard keeps a reserve.
    const fsInfo = await statfs(tiers.nvme.path);
    nvme = {
      dir: tiers.nvme.path,
      capacityBytes: tiers.nvme.bytes ?? fsInfo.blocks * fsInfo.bsize,
      wholeFiles: config.nvmeWholeFiles,
      scrubBytesPerSecond: config.nvmeScrubBytesPerSecond,
    };
  }
  const cacheConfig = resolveBlockCacheConfig({
    ...(config.blockSizeBytes ? { blockSize: config.blockSizeBytes } : {}),
    memoryBudgetBytes: config.memoryBudgetBytes,
    ioPoolBytes: config.memoryBudgetBytes - tiers.dramBytes,
    ...(tiers.pmem
      ? { pmem: { path: tiers.pmem.path, capacityBytes: tiers.pmem.bytes, wholeFiles: config.pmemWholeFiles, scrubBytesPerSecond: config.pmemScrubBytesPerSecond } }
      : {}),
    ...(nvme ? { nvme } : {}),
    isPinned: pins.isPinned,
  });
  const fetchRange: FetchRange = async ({ ref, range: { start, length }, signal }) => {
    const store = links.storeFor(ref.storeId);
    // The ref's size lets a block that is the whole object (any file up to a block) go out as a plain GET.
    const result = await store.getRange(ref.key, start, length, { ifMatch: ref.etag, objectSize: ref.size, ...(signal ? { signal } : {}) });
    // The ref's size decides every block's length; one that is not the object's (a peer's
    // request can carry any) must not put a short or long block into the cache.
    if (result.size !== ref.size) throw new StoreError('STORE_PRECONDITION_FAILED', `${ref.key} has ${result.size} bytes, not the ${ref.size} asked for`);
    return result.body;
  };
  // With peers, a miss asks the block's owner first and falls back to fetchRange.
  return BlockCache.open(cacheConfig, logger.child({ component: 'cache' }), scheduler.wrap(peers ? peers.wrap(fetchRange, cacheConfig.blockSize) : fetchRange));
}
