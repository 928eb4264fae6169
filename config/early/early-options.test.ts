import { describe, expect, it } from 'vitest';
import { daemonConfig, type MountOptionsInput } from '../config.js';
import { earlyDisagreement, earlyOptions } from './early-options.js';

const base = { store: 'file:///data/lake', mountPoint: '/mnt/x' };
const TOKEN = 's3cret-s3cret-s3cret';
const ENDPOINT = { AWS_ENDPOINT_URL: 'http://127.0.0.1:9000' };

/** Inputs the early reading accepts: it must read each exactly as the schema does. */
const readable: Array<[string, Partial<MountOptionsInput>, NodeJS.ProcessEnv]> = [
  ['defaults', {}, {}],
  ['tiers and state dir', { pmem: '/dev/shm/s.pool:8GiB', nvme: 'rel/nvme', stateDir: 'rel/state' }, {}],
  ['nvme with a size', { nvme: '/nvme/strata:500GiB' }, {}],
  ['api, token and threads', { api: '0.0.0.0:7071', lookupThreads: '4' }, { STRATA_TOKEN: TOKEN }],
  ['IPv6 api', { api: '[::1]:0', lookupThreads: '0' }, {}],
  ['endpoint from the environment', { region: 'eu-west-1' }, ENDPOINT],
  ['endpoint flag over the environment', { endpoint: 'http://10.0.0.1:7480' }, ENDPOINT],
  ['logs', { logLevel: 'warn', logFormat: 'json', logFile: 'strata.log' }, {}],
  ['params wire (opened after validation)', { paramsWire: '127.0.0.1:7071' }, {}],
];

/** Inputs it leaves to the schema: each is a mistake the schema reports, or --cluster. */
const leftToSchema: Array<[string, Partial<MountOptionsInput>, NodeJS.ProcessEnv]> = [
  ['api not HOST:PORT', { api: '7070' }, {}],
  ['api port out of range', { api: '127.0.0.1:99999' }, {}],
  ['open api without a token', { api: '0.0.0.0:7070' }, {}],
  ['short token', {}, { STRATA_TOKEN: 'short' }],
  ['pmem without a size', { pmem: '/dev/shm/s.pool' }, {}],
  ['pmem with a bad size', { pmem: '/dev/shm/s.pool:lots' }, {}],
  ['nvme with a bad size', { nvme: '/nvme:0' }, {}],
  ['too many lookup threads', { lookupThreads: '65' }, {}],
  ['lookup threads not a number', { lookupThreads: 'two' }, {}],
  ['empty state dir', { stateDir: '' }, {}],
  ['bad log level', { logLevel: 'loud' as never }, {}],
  ['bad log format', { logFormat: 'xml' as never }, {}],
];

describe('earlyOptions (the options read before the schema loads)', () => {
  it.each(readable)('reads %s as the schema does', (_what, options, env) => {
    const input = { ...base, ...options };
    const early = earlyOptions(input, env);
    expect(early).toBeDefined();
    expect(earlyDisagreement(early!, daemonConfig(input, env))).toBeUndefined();
    expect(early!.paramsWire).toBeUndefined();
  });

  it.each(leftToSchema)('leaves %s to the schema, which refuses it', (_what, options, env) => {
    const input = { ...base, ...options };
    expect(earlyOptions(input, env)).toBeUndefined();
    expect(() => daemonConfig(input, env)).toThrow();
  });

  it('starts nothing early for a cluster member', () => {
    const input = { ...base, cluster: 'etcd://127.0.0.1:2379/strata' };
    expect(daemonConfig(input, {}).cluster).toBeDefined();
    expect(earlyOptions(input, {})).toBeUndefined();
  });

  it('names the first option two readings disagree on', () => {
    const input = { ...base, pmem: '/dev/shm/a.pool:1GiB' };
    const early = earlyOptions(input, {})!;
    expect(earlyDisagreement(early, daemonConfig({ ...input, pmem: '/dev/shm/b.pool:1GiB' }, {}))).toBe('pmem');
    expect(earlyDisagreement(early, daemonConfig(input, { STRATA_TOKEN: TOKEN }))).toBe('STRATA_TOKEN');
  });
});
