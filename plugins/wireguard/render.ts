/**
 * Pure: WireGuard config texts. Every value is checked before it is written: the format has no
 * escaping, so a newline or `=` in a value would add a line of its own.
 */
import net from 'node:net';
import { invalid } from '../../core';

/** A WireGuard key (private, public or preshared): 32 bytes, standard base64, 44 characters. */
export const WG_KEY_PATTERN = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** Returns `key` when it is a WireGuard key, else throws `invalid` naming `what`. */
export function assertWgKey(key: unknown, what: string): string {
  if (typeof key !== 'string' || !WG_KEY_PATTERN.test(key)) throw invalid(`${what} must be a WireGuard key (44 characters of base64)`);
  return key;
}

/** `10.66.0.5` or `10.66.0.5/32` → `10.66.0.5` (a client's tunnel address is one host). */
export function hostAddress(address: unknown, what = 'address'): string {
  const m = typeof address === 'string' ? /^([0-9.]+)(?:\/32)?$/.exec(address) : null;
  if (!m || !net.isIPv4(m[1]!)) throw invalid(`${what} must be an IPv4 address, optionally /32 (got ${JSON.stringify(address)})`);
  return m[1]!;
}

export interface PeerEntry {
  publicKey: string;
  presharedKey: string;
  /** The client's tunnel address (host). */
  address: string;
}

/**
 * `[Peer]` sections for `wg addconf` / `wg syncconf` (no `[Interface]` part: the interface's
 * key and port are set with `wg set`, so a peer batch never touches them).
 */
export function renderPeers(peers: readonly PeerEntry[]): string {
  const parts: string[] = [];
  for (const p of peers) {
    parts.push(`[Peer]\nPublicKey = ${assertWgKey(p.publicKey, 'peer public key')}\nPresharedKey = ${assertWgKey(p.presharedKey, 'preshared key')}\nAllowedIPs = ${hostAddress(p.address)}/32\n`);
  }
  return parts.join('\n');
}

/** A whole interface config for `wg setconf` / `wg syncconf` (the benchmark's "rewrite everything"). */
export function renderInterface(input: { privateKey: string; listenPort: number; peers: readonly PeerEntry[] }): string {
  const head = `[Interface]\nPrivateKey = ${assertWgKey(input.privateKey, 'server private key')}\nListenPort = ${input.listenPort}\n`;
  return input.peers.length ? `${head}\n${renderPeers(input.peers)}` : head;
}

export interface ClientConfigInput {
  /** For the comment line only; checked by the caller (a username). */
  title: string;
  privateKey: string;
  address: string;
  dns: readonly string[];
  serverPublicKey: string;
  presharedKey: string;
  endpointHost: string;
  endpointPort: number;
  persistentKeepalive: number;
  mtu?: number;
}

/**
 * A complete client config, as the WireGuard apps import it (file or QR code): the user's key
 * and address, and one peer (this server) that carries all traffic.
 *
 * @example
 * renderClientConfig({ title: 'alice @ main', privateKey, address: '10.66.0.2', dns: ['1.1.1.1'],
 *   serverPublicKey, presharedKey, endpointHost: 'vpn.example.com', endpointPort: 51820, persistentKeepalive: 25 });
 */
export function renderClientConfig(c: ClientConfigInput): string {
  if (!/^[A-Za-z0-9_.@ -]{1,80}$/.test(c.title)) throw invalid('config title has characters a comment line cannot hold');
  for (const d of c.dns) if (net.isIP(d) === 0) throw invalid(`dns must be IP addresses (got ${JSON.stringify(d)})`);
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(c.endpointHost) && net.isIP(c.endpointHost) === 0) throw invalid(`endpoint host ${JSON.stringify(c.endpointHost)} is not a hostname or an IP address`);
  if (!Number.isInteger(c.endpointPort) || c.endpointPort < 1 || c.endpointPort > 65535) throw invalid('endpoint port must be 1..65535');
  if (!Number.isInteger(c.persistentKeepalive) || c.persistentKeepalive < 0 || c.persistentKeepalive > 65535) throw invalid('persistentKeepalive must be 0..65535');
  // An IPv6 endpoint is written in brackets, as wg expects.
  const host = net.isIPv6(c.endpointHost) ? `[${c.endpointHost}]` : c.endpointHost;
  const lines = [
    `# ${c.title}`,
    '[Interface]',
    `PrivateKey = ${assertWgKey(c.privateKey, 'client private key')}`,
    `Address = ${hostAddress(c.address)}/32`,
  ];
  if (c.dns.length) lines.push(`DNS = ${c.dns.join(', ')}`);
  if (c.mtu !== undefined) lines.push(`MTU = ${c.mtu}`);
  lines.push(
    '',
    '[Peer]',
    `PublicKey = ${assertWgKey(c.serverPublicKey, 'server public key')}`,
    `PresharedKey = ${assertWgKey(c.presharedKey, 'preshared key')}`,
    `Endpoint = ${host}:${c.endpointPort}`,
    'AllowedIPs = 0.0.0.0/0, ::/0',
  );
  if (c.persistentKeepalive > 0) lines.push(`PersistentKeepalive = ${c.persistentKeepalive}`);
  return `${lines.join('\n')}\n`;
}
