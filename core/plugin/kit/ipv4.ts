import net from 'node:net';
import { invalid } from '../../errors';

/** An IPv4 network: `10.8.0.0/24` → network `10.8.0.0`, netmask `255.255.255.0`, prefix 24. */
export interface Ipv4Subnet {
  network: string;
  netmask: string;
  prefix: number;
}

/** `10.8.0.1` → 168296449 (unsigned). Assumes a valid dotted quad. */
export const ipv4ToInt = (ip: string): number => ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
/** 168296449 → `10.8.0.1`. */
export const intToIpv4 = (n: number): string => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');

/**
 * `10.8.0.0/24` → network and dotted netmask. The host part must be zero. Prefixes are limited
 * to `minPrefix..maxPrefix` (default 16..29): a client pool needs room for clients, and no
 * protocol is handed more than a /16.
 *
 * @example
 * parseIpv4Subnet('10.8.0.0/24', 'subnetPool'); // { network: '10.8.0.0', netmask: '255.255.255.0', prefix: 24 }
 */
export function parseIpv4Subnet(cidr: unknown, what = 'subnet', limits: { minPrefix?: number; maxPrefix?: number } = {}): Ipv4Subnet {
  const minPrefix = limits.minPrefix ?? 16;
  const maxPrefix = limits.maxPrefix ?? 29;
  const m = typeof cidr === 'string' ? /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(cidr) : null;
  if (!m || net.isIPv4(m[1]!) === false) throw invalid(`${what} must be an IPv4 CIDR like 10.8.0.0/24 (got ${JSON.stringify(cidr)})`);
  const prefix = Number(m[2]);
  if (prefix < minPrefix || prefix > maxPrefix) throw invalid(`${what} prefix must be ${minPrefix}..${maxPrefix} (got /${prefix})`);
  const addr = ipv4ToInt(m[1]!);
  const size = 2 ** (32 - prefix);
  if (addr % size !== 0) throw invalid(`${what} ${String(cidr)} has host bits set; the network is ${intToIpv4(addr - (addr % size))}/${prefix}`);
  return { network: m[1]!, netmask: intToIpv4(2 ** 32 - size), prefix };
}

/** First and last address (as integers) of a CIDR. */
export function ipv4Range(cidr: string): readonly [number, number] {
  const s = parseIpv4Subnet(cidr, 'subnet', { minPrefix: 0, maxPrefix: 32 });
  const start = ipv4ToInt(s.network);
  return [start, start + 2 ** (32 - s.prefix) - 1] as const;
}

/**
 * The `index`-th /`prefix` network inside `pool` (per-instance or per-node client subnets).
 *
 * @example
 * nthSubnet('10.8.0.0/16', 24, 3); // '10.8.3.0/24'
 */
export function nthSubnet(pool: string, prefix: number, index: number): string {
  const p = parseIpv4Subnet(pool, 'subnet pool');
  if (prefix < p.prefix || prefix > 29) throw invalid(`instance prefix /${prefix} does not fit in pool ${pool}`);
  const count = 2 ** (prefix - p.prefix);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw invalid(`subnet pool ${pool} has only ${count} /${prefix} networks`);
  return `${intToIpv4(ipv4ToInt(p.network) + index * 2 ** (32 - prefix))}/${prefix}`;
}

/** True when the two CIDRs share at least one address. */
export function subnetsOverlap(a: string, b: string): boolean {
  const [a0, a1] = ipv4Range(a);
  const [b0, b1] = ipv4Range(b);
  return a0 <= b1 && b0 <= a1;
}

/**
 * The first /`prefix` network of `pool`, from `startIndex` on, that overlaps none of `taken`
 * (networks other instances or protocols use). Throws `invalid` when the pool is exhausted.
 */
export function freeSubnet(pool: string, prefix: number, taken: readonly string[], startIndex = 0): string {
  const count = 2 ** (prefix - parseIpv4Subnet(pool, 'subnet pool').prefix);
  for (let i = startIndex; i < count; i++) {
    const candidate = nthSubnet(pool, prefix, i);
    if (!taken.some((t) => subnetsOverlap(t, candidate))) return candidate;
  }
  throw invalid(`subnet pool ${pool} has no free /${prefix} network left`);
}
