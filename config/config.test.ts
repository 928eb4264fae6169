import { describe, expect, it } from 'vitest';
import { daemonConfig } from './config.js';
import { parseSize } from './sizes.js';

const base = { store: 'file:///data/lake', mountPoint: '/mnt/x' };

describe('parseSize', () => {
  it('reads binary and decimal units', () => {
    expect(parseSize('512MiB')).toBe(512 * 1024 ** 2);
    expect(parseSize('4GiB')).toBe(4 * 1024 ** 3);
    expect(parseSize('1.5GB')).toBe(1.5e9);
    expect(parseSize('2g')).toBe(2 * 1024 ** 3);
    expect(parseSize('1048576')).toBe(1048576);
  });
  it('refuses what is not a size', () => {
    for (const bad of ['', 'lots', '12 parsecs', '-1GiB', '1e9', 'GiB']) expect(parseSize(bad)).toBeUndefined();
  });
});

describe('daemonConfig', () => {
  it('applies the documented defaults', () => {
    const config = daemonConfig(base, {});
    expect(config.metadataTtlSeconds).toBe(1);
    expect(config.close).toBe('async');
    expect(config.api).toEqual({ host: '127.0.0.1', port: 7070 });
    expect(config.tiers.dramBytes).toBeGreaterThan(0);
    expect(config.memoryBudgetBytes).toBeGreaterThan(config.tiers.dramBytes);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('reads owners and modes for objects without metadata', () => {
    const config = daemonConfig({ ...base, uid: '1000', gid: '100', fileMode: '0640', dirMode: '750', objectMetadata: 'listed', allowRoot: true }, {});
    expect(config).toMatchObject({ uid: 1000, gid: 100, fileMode: 0o640, dirMode: 0o750, objectMetadata: 'listed', allowRoot: true });
    expect(daemonConfig(base, {}).objectMetadata).toBe('known');
  });

  it('takes the NVMe whole-file and scrub options, with defaults, only with an NVMe tier', () => {
    const defaults = daemonConfig({ ...base, nvme: '/nvme/strata' }, {});
    expect(defaults.nvmeWholeFiles).toBe(true);
    expect(defaults.nvmeScrubBytesPerSecond).toBe(16 * 1024 ** 2);
    const set = daemonConfig({ ...base, nvme: '/nvme/strata', nvmeWholeFiles: 'off', nvmeScrubRate: '0' }, {});
    expect(set.nvmeWholeFiles).toBe(false);
    expect(set.nvmeScrubBytesPerSecond).toBe(0);
    expect(daemonConfig({ ...base, nvme: '/nvme/strata', nvmeScrubRate: '64MiB' }, {}).nvmeScrubBytesPerSecond).toBe(64 * 1024 ** 2);
    expect(() => daemonConfig({ ...base, nvme: '/nvme/strata', nvmeScrubRate: 'fast' }, {})).toThrow(/--nvme-scrub-rate: "fast" is not a size per second/);
    expect(() => daemonConfig({ ...base, nvme: '/nvme/strata', nvmeWholeFiles: 'yes' as never }, {})).toThrow(/--nvme-whole-files: must be on or off/);
    expect(() => daemonConfig({ ...base, nvmeScrubRate: '1MiB' }, {})).toThrow(/--nvme-scrub-rate: needs an NVMe tier/);
  });

  it('takes the pmem whole-file and scrub options, with defaults, only with a pmem tier', () => {
    const defaults = daemonConfig({ ...base, pmem: '/dev/shm/strata.pool:1GiB' }, {});
    expect(defaults.pmemWholeFiles).toBe(true);
    expect(defaults.pmemScrubBytesPerSecond).toBe(16 * 1024 ** 2);
    const set = daemonConfig({ ...base, pmem: '/dev/shm/strata.pool:1GiB', pmemWholeFiles: 'off', pmemScrubRate: '0' }, {});
    expect(set.pmemWholeFiles).toBe(false);
    expect(set.pmemScrubBytesPerSecond).toBe(0);
    expect(() => daemonConfig({ ...base, pmem: '/dev/shm/strata.pool:1GiB', pmemWholeFiles: 'yes' as never }, {})).toThrow(/--pmem-whole-files: must be on or off/);
    expect(() => daemonConfig({ ...base, pmem: '/dev/shm/strata.pool:1GiB', pmemScrubRate: 'fast' }, {})).toThrow(/--pmem-scrub-rate: "fast" is not a size per second/);
    expect(() => daemonConfig({ ...base, pmemWholeFiles: 'on' }, {})).toThrow(/--pmem-whole-files: needs a pmem tier/);
    expect(() => daemonConfig({ ...base, nvme: '/nvme/strata', pmemScrubRate: '1MiB' }, {})).toThrow(/--pmem-scrub-rate: needs a pmem tier/);
  });

  it('takes --write-passthrough on|off, on by default', () => {
    expect(daemonConfig(base, {}).writePassthrough).toBe(true);
    expect(daemonConfig({ ...base, writePassthrough: 'off' }, {}).writePassthrough).toBe(false);
    expect(() => daemonConfig({ ...base, writePassthrough: 'maybe' as never }, {})).toThrow(/--write-passthrough: must be on or off/);
  });

  it('parses tiers with sizes', () => {
    const config = daemonConfig({ ...base, dram: '2GiB', pmem: '/dev/shm/s.pool:8GiB', nvme: '/nvme/strata' }, {});
    expect(config.tiers).toEqual({ dramBytes: 2 * 1024 ** 3, pmem: { path: '/dev/shm/s.pool', bytes: 8 * 1024 ** 3 }, nvme: { path: '/nvme/strata' } });
  });

  it('takes the endpoint from AWS_ENDPOINT_URL', () => {
    expect(daemonConfig({ ...base, store: 's3://bkt' }, { AWS_ENDPOINT_URL: 'http://127.0.0.1:9000' }).endpoint).toBe('http://127.0.0.1:9000');
  });

  it.each([
    [{ store: 'ftp://x/y' }, /ftp/],
    [{ dram: 'lots' }, /--dram: "lots" is not a size/],
    [{ pmem: '/dev/shm/pool' }, /--pmem/],
    [{ api: 'nowhere' }, /--api: "nowhere" is not HOST:PORT/],
    [{ api: '0.0.0.0:7070' }, /STRATA_TOKEN/],
    [{ close: 'later' }, /--close: must be async or sync/],
    [{ metadataTtl: 'soon' }, /--metadata-ttl/],
    [{ endpoint: 'not a url' }, /--endpoint/],
    [{ dram: '1GiB', memory: '512MiB' }, /--memory/],
    [{ blockSize: '64MiB' }, /--block-size/],
    [{ fileMode: '0999' }, /--file-mode: "0999" is not an octal mode/],
    [{ dirMode: 'rwx' }, /--dir-mode/],
    [{ uid: '-1' }, /--uid: "-1" is not a whole number/],
    [{ gid: 'staff' }, /--gid/],
    [{ objectMetadata: 'all' }, /--object-metadata: must be listed or known/],
    [{ allowOther: true, allowRoot: true }, /--allow-root/],
  ])('refuses %o with a message naming the option', (override, message) => {
    expect(() => daemonConfig({ ...base, ...override } as never, {})).toThrow(message);
  });

  it('allows a non-loopback API address when STRATA_TOKEN is set', () => {
    expect(daemonConfig({ ...base, api: '0.0.0.0:7070' }, { STRATA_TOKEN: 's3cret-s3cret-s3cret' }).api.host).toBe('0.0.0.0');
  });
});

describe('daemonConfig --cluster and --node-name', () => {
  it('reads the etcd endpoints and prefix, and names the member after the host by default', async () => {
    const { hostname } = await import('node:os');
    const config = daemonConfig({ ...base, cluster: 'etcd://127.0.0.1:2379,10.0.0.2:2379/strata' }, {});
    expect(config.cluster).toEqual({ hosts: ['http://127.0.0.1:2379', 'http://10.0.0.2:2379'], prefix: 'strata' });
    expect(config.nodeName).toBe(hostname());
    expect(daemonConfig({ ...base, nodeName: 'gpu-07' }, {}).nodeName).toBe('gpu-07');
  });
  it('names the bad option', () => {
    expect(() => daemonConfig({ ...base, cluster: 'etcd://127.0.0.1/strata' }, {})).toThrow(/--cluster: .* where HOST:PORT belongs/);
    expect(() => daemonConfig({ ...base, nodeName: 'a b' }, {})).toThrow(/--node-name/);
  });
});

describe('daemonConfig --params-wire', () => {
  it('is off by default and takes HOST:PORT or an absolute unix socket path', () => {
    expect(daemonConfig(base, {}).paramsWire).toBeUndefined();
    expect(daemonConfig({ ...base, paramsWire: '127.0.0.1:7071' }, {}).paramsWire).toEqual({ host: '127.0.0.1', port: 7071 });
    expect(daemonConfig({ ...base, paramsWire: '[::1]:0' }, {}).paramsWire).toEqual({ host: '::1', port: 0 });
    expect(daemonConfig({ ...base, paramsWire: '/run/strata/params.sock' }, {}).paramsWire).toEqual({ path: '/run/strata/params.sock' });
  });
  it('needs STRATA_TOKEN off the loopback, as --api does', () => {
    expect(() => daemonConfig({ ...base, paramsWire: '0.0.0.0:7071' }, {})).toThrow(/--params-wire: binding to 0.0.0.0 needs STRATA_TOKEN/);
    expect(daemonConfig({ ...base, paramsWire: '0.0.0.0:7071' }, { STRATA_TOKEN: 's3cret-s3cret-s3cret' }).paramsWire).toEqual({ host: '0.0.0.0', port: 7071 });
  });
  it('names itself when the value is wrong, the API already has the address, or --cluster is given', () => {
    for (const bad of ['7071', 'localhost:99999', 'params.sock', `/${'x'.repeat(120)}`]) expect(() => daemonConfig({ ...base, paramsWire: bad }, {})).toThrow(/^--params-wire: /);
    expect(() => daemonConfig({ ...base, api: '127.0.0.1:7070', paramsWire: '127.0.0.1:7070' }, {})).toThrow(/--params-wire: 127.0.0.1:7070 is the API's address/);
    expect(() => daemonConfig({ ...base, cluster: 'etcd://127.0.0.1:2379/strata', paramsWire: '127.0.0.1:7071' }, {})).toThrow(/--params-wire: not with --cluster/);
  });
});
