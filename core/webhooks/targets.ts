import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * Where a reseller's webhook may point. A reseller is not the operator: without this, a
 * reseller could make the panel POST to its own loopback API, the database port or the
 * operator's internal network (SSRF). Only public unicast addresses pass; the main admin's
 * webhooks may point anywhere (a bot on the same machine is common).
 */
export function isPublicAddress(address: string): boolean {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return false;
  }
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  return parsed.range() === 'unicast';
}

/** A hostname refused before any lookup: an address literal outside public unicast, or a localhost name. */
export function refusedLiteral(hostname: string): string | null {
  const host = hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return host;
  if (isIP(host) && !isPublicAddress(host)) return host;
  return null;
}

export class PrivateTargetError extends Error {}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * `lookup` for http.request that refuses a name resolving to a non-public address. It checks
 * the addresses the socket then connects to, so a name that resolves differently the second
 * time (DNS rebinding) cannot slip through.
 */
export function publicOnlyLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const bad = addresses.find((a) => !isPublicAddress(a.address));
    if (bad) return callback(new PrivateTargetError(`${hostname} resolves to ${bad.address}, not a public address`), []);
    if (options.all) return callback(null, addresses);
    callback(null, addresses[0]!.address, addresses[0]!.family);
  });
}
