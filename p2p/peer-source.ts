import { PeerError } from './peer-error.js';

/** Where the member list comes from: a fixed list of API base URLs, or every address behind a DNS name. */
export type PeerSource =
  | { readonly kind: 'static'; readonly urls: readonly string[] }
  | { readonly kind: 'dns'; readonly name: string; readonly port: number };

/**
 * A peer's identity everywhere (ownership hashing, logs, metrics): the origin of its API
 * URL, `http://10.0.0.1:7070`, with no path or trailing slash. Every daemon must derive the
 * same string for the same peer, so this is the one place URLs are normalised.
 */
export function peerId(url: string): string {
  return new URL(url).origin;
}

/** The id of the peer at `address` (an IPv4 or IPv6 address from DNS) and `port`. */
export function peerIdOfAddress(address: string, port: number): string {
  return peerId(`http://${address.includes(':') ? `[${address}]` : address}:${port}`);
}

/**
 * Parses `--peers`: `http://a:7070,http://b:7070` or `dns:NAME:PORT`. Throws PeerError
 * API_BAD_REQUEST with a message naming the option; the config turns it into CONFIG_INVALID.
 */
export function parsePeerSource(text: string): PeerSource {
  const trimmed = text.trim();
  if (trimmed.startsWith('dns:')) {
    const match = /^dns:([A-Za-z0-9.-]+):(\d{1,5})$/.exec(trimmed);
    const port = match ? Number(match[2]) : NaN;
    if (!match || port < 1 || port > 65535) throw new PeerError('API_BAD_REQUEST', `--peers: "${text}" is not dns:NAME:PORT (e.g. dns:strata-peers.default.svc.cluster.local:7070)`);
    return { kind: 'dns', name: match[1]!, port };
  }
  const urls = trimmed.split(',').map((part) => part.trim()).filter((part) => part.length > 0);
  if (urls.length === 0) throw new PeerError('API_BAD_REQUEST', '--peers: give comma-separated http(s) URLs or dns:NAME:PORT');
  const ids = urls.map((url) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new PeerError('API_BAD_REQUEST', `--peers: "${url}" is not a URL (e.g. http://10.0.0.1:7070)`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new PeerError('API_BAD_REQUEST', `--peers: "${url}" is not an http(s) URL`);
    if (parsed.pathname !== '/' || parsed.search !== '') throw new PeerError('API_BAD_REQUEST', `--peers: "${url}" has a path; give the API base URL only`);
    return parsed.origin;
  });
  return { kind: 'static', urls: [...new Set(ids)] };
}
