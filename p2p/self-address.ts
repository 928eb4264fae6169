import { hostname, networkInterfaces } from 'node:os';
import { peerId, peerIdOfAddress } from './peer-source.js';

export interface SelfAddressInput {
  /** The ids the peer source names now. */
  readonly known: readonly string[];
  /** The admin API's bind host and actual port. */
  readonly apiHost: string;
  readonly port: number;
  /** `--advertise URL`, when given: taken as is. */
  readonly advertise?: string | undefined;
  /** This machine's addresses (default: every interface address, plus the loopback names). */
  readonly localAddresses?: readonly string[];
}

function machineAddresses(): string[] {
  const addresses = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((entry) => entry.address));
  return [...addresses, 'localhost', hostname()];
}

const WILDCARD = new Set(['0.0.0.0', '::', '']);

/**
 * The id this daemon has among its peers. Other daemons must compute the same string for it,
 * so it is taken from the peer list whenever possible: the listed URL whose port is our API
 * port and whose host is one of this machine's addresses (the bind host first, so several
 * daemons on one machine each find their own entry). `--advertise` overrides the search.
 * Without a match, the answer is the bind address; the daemon then owns blocks no one
 * else knows it owns, which costs store reads but never correctness.
 */
export function selfIdFor(input: SelfAddressInput): { id: string; listed: boolean } {
  if (input.advertise) {
    const id = peerId(input.advertise);
    return { id, listed: input.known.includes(id) };
  }
  const local = new Set(input.localAddresses ?? machineAddresses());
  const onPort = input.known.filter((id) => Number(new URL(id).port || (id.startsWith('https:') ? 443 : 80)) === input.port);
  const hostOf = (id: string) => new URL(id).hostname.replace(/^\[|\]$/g, '');
  const exact = onPort.find((id) => hostOf(id) === input.apiHost);
  if (exact) return { id: exact, listed: true };
  if (WILDCARD.has(input.apiHost) || input.apiHost === 'localhost') {
    const mine = onPort.find((id) => local.has(hostOf(id)));
    if (mine) return { id: mine, listed: true };
  }
  const host = WILDCARD.has(input.apiHost) ? hostname() : input.apiHost;
  return { id: peerIdOfAddress(host, input.port), listed: false };
}
