import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockCache, type FetchRange } from '../cache/index.js';
import { resolveBlockCacheConfig } from '../cache/index.js';
import type { ObjectRef } from '../store/index.js';
import { daemonConfig } from '../config/index.js';
import { StoreError } from '../store/index.js';
import { metricsRegistry, silentLogger } from '../telemetry/index.js';
import { PeerMembership } from './membership.js';
import { MemoryPeerNetwork } from './memory-transport.js';
import { PeerNode } from './peer-node.js';
import { parsePeerSource } from './peer-source.js';
import { blockRequestPath, CHECKSUM_HEADER } from './protocol.js';
import { rendezvousOwner } from './rendezvous.js';
import { selfIdFor } from './self-address.js';
import { MAX_CLOCK_SKEW_MS, SIGNATURE_HEADER, signRequest, TIME_HEADER, verifyRequest } from './signature.js';
import type { PeerResponse } from './transport.js';

const MiB = 1024 * 1024;
const BLOCK = 1 * MiB;
const logger = silentLogger();
const SECRET = 'test-secret-0123456789';

/** One object in a fake store that counts the GETs it answers and can be slowed down. */
class FakeStore {
  fetches = 0;
  delayMs = 0;
  constructor(readonly bytes: Buffer, readonly ref: ObjectRef) {}
  readonly fetchRange: FetchRange = async ({ ref, range: { start, length } }) => {
    this.fetches += 1;
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (ref.etag !== this.ref.etag) throw new StoreError('STORE_PRECONDITION_FAILED', `${ref.key} changed`);
    return Buffer.from(this.bytes.subarray(start, start + length));
  };
}

interface TestNode {
  readonly id: string;
  readonly node: PeerNode;
  readonly cache: BlockCache;
  readonly store: FakeStore;
  read(start: number, length: number): Promise<Buffer>;
}

function objectOf(size: number): { bytes: Buffer; ref: ObjectRef } {
  const bytes = randomBytes(size);
  return { bytes, ref: { storeId: 's3://bucket', key: 'models/m.bin', etag: 'e1', size } };
}

const caches: BlockCache[] = [];
afterEach(async () => {
  for (const cache of caches.splice(0)) await cache.close();
});

/** A daemon's peer node over its own block cache (readahead off, so fetch counts are exact) and its own view of one store. */
function startNode(
  id: string,
  ids: readonly string[],
  network: MemoryPeerNetwork,
  object: { bytes: Buffer; ref: ObjectRef },
  options: { secret?: string; tamper?: (peer: string, r: PeerResponse) => PeerResponse; blockTimeoutMs?: number; clock?: () => number } = {},
): TestNode {
  const membership = new PeerMembership({ source: { kind: 'static', urls: ids }, logger, ...(options.clock ? { clock: options.clock } : {}) });
  membership.setSelf(id);
  const node = new PeerNode({ membership, transport: network.transport(options.tamper), secret: options.secret ?? SECRET, logger, blockTimeoutMs: options.blockTimeoutMs ?? 2000 });
  const store = new FakeStore(object.bytes, object.ref);
  const cache = new BlockCache(resolveBlockCacheConfig({ blockSize: BLOCK, memoryBudgetBytes: 64 * MiB, readaheadMaxBlocks: 0 }), logger, node.wrap(store.fetchRange, BLOCK));
  caches.push(cache);
  const read = async (start: number, length: number) => {
    const session = cache.openSession(object.ref);
    try {
      return await cache.read(session, start, length);
    } finally {
      cache.closeSession(session);
    }
  };
  node.serveFrom(cache, () => ({ id: 'job' }));
  network.attach(id, node.handle);
  return { id, node, cache, store, read };
}

const IDS = ['http://10.0.0.1:7070', 'http://10.0.0.2:7070', 'http://10.0.0.3:7070'];

/** The first block index of `ref` that `owner` owns among IDS. */
function blockOwnedBy(node: PeerNode, ref: ObjectRef, owner: string, except: readonly number[] = []): number {
  for (let index = 0; ; index += 1) if (node.ownerOf(ref, index) === owner && !except.includes(index)) return index;
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const found = (await metricsRegistry.getSingleMetric(name)?.get())?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return found?.value ?? 0;
}

describe('rendezvous ownership', () => {
  it('spreads blocks evenly and moves only the blocks of a member that leaves', () => {
    const items = Array.from({ length: 3000 }, (_, i) => JSON.stringify(['s3://b', 'k', '"e"', i]));
    const before = items.map((item) => rendezvousOwner(item, IDS)!);
    for (const id of IDS) {
      const share = before.filter((o) => o === id).length / items.length;
      expect(share).toBeGreaterThan(0.28);
      expect(share).toBeLessThan(0.39);
    }
    // Same answer whatever the order of the list.
    expect(items.map((item) => rendezvousOwner(item, [...IDS].reverse()))).toEqual(before);
    const after = items.map((item) => rendezvousOwner(item, IDS.filter((id) => id !== IDS[1]))!);
    items.forEach((_, i) => {
      if (before[i] !== IDS[1]) expect(after[i]).toBe(before[i]);
      else expect(after[i]).not.toBe(IDS[1]);
    });
    expect(rendezvousOwner('x', [])).toBeUndefined();
  });
});

describe('membership', () => {
  it('skips a failed peer for a backoff that doubles, and takes it back after one success', () => {
    let now = 1_000_000;
    const membership = new PeerMembership({ source: { kind: 'static', urls: IDS }, logger, clock: () => now, backoffMs: 1000, maxBackoffMs: 4000 });
    membership.setSelf(IDS[0]!);
    expect(membership.members()).toEqual(IDS);
    membership.markDown(IDS[1]!, 'refused');
    expect(membership.members()).toEqual([IDS[0], IDS[2]]);
    now += 999;
    expect(membership.others()).toEqual([IDS[2]]);
    now += 1;
    expect(membership.others()).toEqual([IDS[1], IDS[2]]); // backoff passed: tried again
    membership.markDown(IDS[1]!, 'refused again'); // 2 s now
    now += 1999;
    expect(membership.others()).toEqual([IDS[2]]);
    now += 1;
    membership.markDown(IDS[1]!, 'third'); // 4 s
    membership.markDown(IDS[1]!, 'fourth'); // capped at 4 s
    expect(membership.view().find((p) => p.id === IDS[1])).toMatchObject({ up: false, failures: 4, retryAt: now + 4000, lastError: 'fourth' });
    membership.markUp(IDS[1]!);
    expect(membership.others()).toEqual([IDS[1], IDS[2]]);
    membership.markDown(IDS[0]!, 'self is never down');
    expect(membership.members()).toContain(IDS[0]);
  });

  it('follows a DNS answer, keeps the last list when a lookup fails, and keeps self even when unlisted', async () => {
    let answer: string[] | Error = ['10.0.0.2', '10.0.0.1'];
    const membership = new PeerMembership({
      source: parsePeerSource('dns:strata-peers.ns.svc:7070'),
      logger,
      resolve: async () => {
        if (answer instanceof Error) throw answer;
        return answer;
      },
    });
    await membership.refresh();
    expect(membership.known()).toEqual(['http://10.0.0.1:7070', 'http://10.0.0.2:7070']);
    answer = ['10.0.0.1', '10.0.0.2', '10.0.0.3', 'fd00::5'];
    await membership.refresh();
    expect(membership.known()).toEqual([...IDS, 'http://[fd00::5]:7070']);
    answer = new Error('SERVFAIL');
    await membership.refresh();
    expect(membership.known()).toHaveLength(4);
    membership.setSelf('http://10.0.0.9:7070');
    expect(membership.members()).toContain('http://10.0.0.9:7070');
  });

  it('parses --peers and finds its own entry in the list', () => {
    expect(parsePeerSource('http://a:1/, https://b:2')).toEqual({ kind: 'static', urls: ['http://a:1', 'https://b:2'] });
    expect(() => parsePeerSource('ftp://a:1')).toThrow(/http\(s\)/);
    expect(() => parsePeerSource('dns:name')).toThrow(/dns:NAME:PORT/);
    expect(() => parsePeerSource('http://a:1/x')).toThrow(/path/);
    const known = ['http://127.0.0.1:7001', 'http://127.0.0.1:7002', 'http://10.1.2.3:7070'];
    expect(selfIdFor({ known, apiHost: '127.0.0.1', port: 7002 })).toEqual({ id: 'http://127.0.0.1:7002', listed: true });
    expect(selfIdFor({ known, apiHost: '0.0.0.0', port: 7070, localAddresses: ['10.1.2.3'] })).toEqual({ id: 'http://10.1.2.3:7070', listed: true });
    expect(selfIdFor({ known, apiHost: '0.0.0.0', port: 7070, localAddresses: ['10.9.9.9'] }).listed).toBe(false);
    expect(selfIdFor({ known, apiHost: '0.0.0.0', port: 7070, advertise: 'http://10.1.2.3:7070/' })).toEqual({ id: 'http://10.1.2.3:7070', listed: true });
  });
});

describe('--peers in the daemon config', () => {
  const base = { store: 's3://models', mountPoint: '/mnt/x', stateDir: '/tmp/s' };

  it('takes a list or a DNS name with STRATA_PEER_SECRET, and refuses to start without one', () => {
    const config = daemonConfig({ ...base, peers: 'http://10.0.0.1:7070,http://10.0.0.2:7070', peerTimeout: '2.5' }, { STRATA_PEER_SECRET: SECRET });
    expect(config.peers).toEqual({ kind: 'static', urls: ['http://10.0.0.1:7070', 'http://10.0.0.2:7070'] });
    expect(config.peerTimeoutMs).toBe(2500);
    expect(daemonConfig({ ...base, peers: 'dns:strata-peers.ns.svc:7070' }, { STRATA_PEER_SECRET: SECRET }).peers).toEqual({ kind: 'dns', name: 'strata-peers.ns.svc', port: 7070 });
    expect(() => daemonConfig({ ...base, peers: 'http://10.0.0.1:7070' }, {})).toThrow(/STRATA_PEER_SECRET/);
    expect(() => daemonConfig({ ...base, peers: 'http://10.0.0.1:7070' }, { STRATA_PEER_SECRET: 'short' })).toThrow(/at least 16/);
    expect(() => daemonConfig({ ...base, peers: 'dns:x' }, { STRATA_PEER_SECRET: SECRET })).toThrow(/--peers/);
    expect(() => daemonConfig({ ...base, peerTimeout: '0' }, {})).toThrow(/--peer-timeout/);
    expect(daemonConfig(base, {}).peers).toBeUndefined();
  });
});

describe('request signatures', () => {
  const parts = { method: 'GET', path: '/v1/p2p/blocks?key=a', body: Buffer.alloc(0), time: 1_700_000_000_000 };
  const signature = signRequest(SECRET, parts);

  it('accepts a request signed with the shared secret within the allowed clock skew', () => {
    expect(verifyRequest(SECRET, parts, signature, parts.time + MAX_CLOCK_SKEW_MS)).toEqual({ ok: true });
  });

  it('refuses another secret, a changed path or body, an old timestamp and a missing signature', () => {
    expect(verifyRequest('other-secret', parts, signature, parts.time).ok).toBe(false);
    expect(verifyRequest(SECRET, { ...parts, path: '/v1/p2p/blocks?key=b' }, signature, parts.time).ok).toBe(false);
    expect(verifyRequest(SECRET, { ...parts, method: 'POST' }, signature, parts.time).ok).toBe(false);
    expect(verifyRequest(SECRET, { ...parts, body: Buffer.from('x') }, signature, parts.time).ok).toBe(false);
    expect(verifyRequest(SECRET, parts, signature, parts.time + MAX_CLOCK_SKEW_MS + 1)).toEqual({ ok: false, reason: expect.stringMatching(/off/) });
    expect(verifyRequest(SECRET, parts, undefined, parts.time)).toEqual({ ok: false, reason: 'no peer signature' });
  });

  it('answers 401 P2P_UNAUTHORIZED to an unsigned or badly signed request, and the block to a signed one', async () => {
    const network = new MemoryPeerNetwork();
    const object = objectOf(2 * BLOCK);
    const owner = startNode(IDS[0]!, IDS, network, object);
    const path = blockRequestPath({ ref: object.ref, start: 0, length: BLOCK });
    const unsigned = await owner.node.handle({ method: 'GET', path, headers: {}, body: Buffer.alloc(0) });
    expect(unsigned.status).toBe(401);
    expect(JSON.parse(unsigned.body.toString())).toMatchObject({ statusCode: 401, code: 'P2P_UNAUTHORIZED' });
    const time = Date.now();
    const forged = await owner.node.handle({ method: 'GET', path, headers: { [TIME_HEADER]: String(time), [SIGNATURE_HEADER]: signRequest('wrong', { method: 'GET', path, body: Buffer.alloc(0), time }) }, body: Buffer.alloc(0) });
    expect(forged.status).toBe(401);
    const signed = await owner.node.handle({ method: 'GET', path, headers: { [TIME_HEADER]: String(time), [SIGNATURE_HEADER]: signRequest(SECRET, { method: 'GET', path, body: Buffer.alloc(0), time }) }, body: Buffer.alloc(0) });
    expect(signed.status).toBe(200);
    expect(signed.body.equals(object.bytes.subarray(0, BLOCK))).toBe(true);
    expect(signed.headers[CHECKSUM_HEADER]).toMatch(/^[0-9a-f]{8}$/);
  });
});

describe('block sharing between peers (in memory)', () => {
  it('fetches a block from its owner, which fetches it from the store once', async () => {
    const network = new MemoryPeerNetwork();
    const object = objectOf(12 * BLOCK);
    const nodes = IDS.map((id) => startNode(id, IDS, network, object));
    const fromPeersBefore = await metric('strata_p2p_bytes_from_peers_total');
    const results = await Promise.all(nodes.map((n) => n.read(0, object.bytes.length)));
    for (const bytes of results) expect(bytes.equals(object.bytes)).toBe(true);
    // Every block was fetched from the store exactly once, by its owner.
    expect(nodes.reduce((sum, n) => sum + n.store.fetches, 0)).toBe(12);
    for (const n of nodes) {
      const owned = Array.from({ length: 12 }, (_, i) => i).filter((i) => n.node.ownerOf(object.ref, i) === n.id).length;
      expect(n.store.fetches).toBe(owned);
    }
    expect((await metric('strata_p2p_bytes_from_peers_total')) - fromPeersBefore).toBe(2 * 12 * BLOCK);
  });

  it('coalesces three askers of one block into one store fetch at the owner', async () => {
    const network = new MemoryPeerNetwork();
    const object = objectOf(4 * BLOCK);
    const ids = [...IDS, 'http://10.0.0.4:7070'];
    const nodes = ids.map((id) => startNode(id, ids, network, object));
    const index = blockOwnedBy(nodes[0]!.node, object.ref, ids[3]!);
    const owner = nodes[3]!;
    owner.store.delayMs = 50; // the askers all arrive while the owner's store fetch is in flight
    const reads = await Promise.all(nodes.slice(0, 3).map((n) => n.read(index * BLOCK, BLOCK)));
    for (const bytes of reads) expect(bytes.equals(object.bytes.subarray(index * BLOCK, (index + 1) * BLOCK))).toBe(true);
    expect(owner.store.fetches).toBe(1);
    for (const n of nodes.slice(0, 3)) expect(n.store.fetches).toBe(0);
  });

  it('falls back to the store when a block fails its checksum, and skips that peer for a while', async () => {
    const network = new MemoryPeerNetwork();
    const object = objectOf(4 * BLOCK);
    const flip = (_peer: string, r: PeerResponse): PeerResponse => {
      if (r.status !== 200) return r;
      const body = Buffer.from(r.body);
      body[100] = body[100]! ^ 0xff;
      return { ...r, body };
    };
    const asker = startNode(IDS[0]!, IDS, network, object, { tamper: flip });
    startNode(IDS[1]!, IDS, network, object);
    startNode(IDS[2]!, IDS, network, object);
    const index = blockOwnedBy(asker.node, object.ref, IDS[1]!);
    const before = await metric('strata_p2p_fallbacks_total', { reason: 'checksum' });
    const bytes = await asker.read(index * BLOCK, BLOCK);
    expect(bytes.equals(object.bytes.subarray(index * BLOCK, (index + 1) * BLOCK))).toBe(true);
    expect(asker.store.fetches).toBe(1);
    expect((await metric('strata_p2p_fallbacks_total', { reason: 'checksum' })) - before).toBe(1);
    expect(asker.node.membership.others()).toEqual([IDS[2]]);
  });

  it('reads from the store when the owner is gone, too slow, or refuses our secret', async () => {
    const network = new MemoryPeerNetwork();
    const object = objectOf(24 * BLOCK);
    const asker = startNode(IDS[0]!, IDS, network, object, { blockTimeoutMs: 100 });
    const slow = startNode(IDS[1]!, IDS, network, object);
    const gone = startNode(IDS[2]!, IDS, network, object);
    network.detach(gone.id);
    const goneBlock = blockOwnedBy(asker.node, object.ref, gone.id);
    expect((await asker.read(goneBlock * BLOCK, BLOCK)).equals(object.bytes.subarray(goneBlock * BLOCK, (goneBlock + 1) * BLOCK))).toBe(true);
    expect(asker.node.membership.others()).toEqual([slow.id]);

    network.setDelay(slow.id, 300);
    const slowBlock = blockOwnedBy(asker.node, object.ref, slow.id, [goneBlock]);
    const started = Date.now();
    expect((await asker.read(slowBlock * BLOCK, BLOCK)).equals(object.bytes.subarray(slowBlock * BLOCK, (slowBlock + 1) * BLOCK))).toBe(true);
    expect(Date.now() - started).toBeLessThan(290);
    expect(asker.node.membership.others()).toEqual([]);
    expect(asker.store.fetches).toBe(2);

    // A node with another secret is refused (401) and reads from the store.
    const network2 = new MemoryPeerNetwork();
    const stranger = startNode(IDS[0]!, IDS, network2, object, { secret: 'not-the-secret' });
    startNode(IDS[1]!, IDS, network2, object);
    const before = await metric('strata_p2p_fallbacks_total', { reason: 'unauthorized' });
    const index = blockOwnedBy(stranger.node, object.ref, IDS[1]!);
    expect((await stranger.read(index * BLOCK, BLOCK)).equals(object.bytes.subarray(index * BLOCK, (index + 1) * BLOCK))).toBe(true);
    expect((await metric('strata_p2p_fallbacks_total', { reason: 'unauthorized' })) - before).toBe(1);
  });

  it('never forwards a block a peer asked for, even when its own view names another owner', async () => {
    const network = new MemoryPeerNetwork();
    const object = objectOf(8 * BLOCK);
    // Node 2 believes node 3 exists; nodes 1 and 3 do not know each other as owners of these blocks.
    const a = startNode(IDS[0]!, IDS.slice(0, 2), network, object);
    const b = startNode(IDS[1]!, IDS, network, object);
    startNode(IDS[2]!, IDS, network, object);
    const index = blockOwnedBy(a.node, object.ref, IDS[1]!);
    const sentBefore = network.sent;
    await a.read(index * BLOCK, BLOCK);
    expect(network.sent - sentBefore).toBe(1);
    expect(b.store.fetches).toBe(1);
  });
});
