import net from 'node:net';
import { invalid } from '../../core';

/*
 * Every value that reaches an OpenVPN config, an openssl argv or a file path passes one of
 * these first. They refuse (DomainError kind `invalid`) rather than escape: the formats
 * involved have no escaping we would want to rely on.
 */

/** Usernames as they appear in certificates (CN), file names and management commands. */
export const USERNAME_RE = /^[a-zA-Z0-9_.-]{3,32}$/;
/** DNS names we write into `remote` lines. */
export const HOSTNAME_RE = /^[a-zA-Z0-9.-]{1,253}$/;
/**
 * Absolute paths we write into configs (OpenVPN's and openssl's): no whitespace, quotes,
 * `$`, `#`, `;` or backslashes, which either format could interpret.
 */
export const SAFE_PATH_RE = /^\/[A-Za-z0-9._+@:/-]{0,4000}$/;
/** Tun device names we own; Linux allows 15 characters. */
export const DEVICE_RE = /^pgtun[0-9]{1,5}$/;
/** Certificate common names for the CA and the server (not user-controlled, still checked). */
export const COMMON_NAME_RE = /^[a-zA-Z0-9_.-]{1,64}$/;

export function assertUsername(username: unknown): string {
  if (typeof username !== 'string' || !USERNAME_RE.test(username)) {
    throw invalid(`username must match ${USERNAME_RE.source} (got ${JSON.stringify(username)})`);
  }
  return username;
}

export function assertCommonName(name: unknown, what: string): string {
  if (typeof name !== 'string' || !COMMON_NAME_RE.test(name)) throw invalid(`${what} must match ${COMMON_NAME_RE.source} (got ${JSON.stringify(name)})`);
  return name;
}

export function assertSafePath(p: unknown, what: string): string {
  if (typeof p !== 'string' || !SAFE_PATH_RE.test(p) || p.split('/').includes('..')) {
    throw invalid(`${what} must be an absolute path of letters, digits and ._+@:/- without '..' (got ${JSON.stringify(p)})`);
  }
  return p;
}

export function assertPort(port: unknown, what = 'port'): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(`${what} must be an integer 1..65535 (got ${JSON.stringify(port)})`);
  }
  return port;
}

export function assertProto(proto: unknown): 'udp' | 'tcp' {
  if (proto !== 'udp' && proto !== 'tcp') throw invalid(`proto must be 'udp' or 'tcp' (got ${JSON.stringify(proto)})`);
  return proto;
}

export function assertIp(ip: unknown, what: string): string {
  if (typeof ip !== 'string' || net.isIP(ip) === 0) throw invalid(`${what} must be an IP address (got ${JSON.stringify(ip)})`);
  return ip;
}

/** A DNS name (labels of letters, digits and dashes, not starting with `-` or `.`) or an IP. */
export function assertHost(host: unknown, what = 'host'): string {
  if (typeof host === 'string' && net.isIP(host) !== 0) return host;
  if (typeof host !== 'string' || !HOSTNAME_RE.test(host) || host.startsWith('-') || host.startsWith('.') || host.includes('..')) {
    throw invalid(`${what} must be a hostname (${HOSTNAME_RE.source}) or an IP address (got ${JSON.stringify(host)})`);
  }
  return host;
}

export function assertIntRange(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${what} must be an integer ${min}..${max} (got ${JSON.stringify(value)})`);
  }
  return value;
}

export interface Ipv4Subnet {
  network: string;
  netmask: string;
  prefix: number;
}

const ipv4ToInt = (ip: string): number => ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
const intToIpv4 = (n: number): string => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');

/**
 * `10.8.0.0/24` → network and dotted netmask. The host part must be zero; prefixes 16..29
 * (OpenVPN's `server` needs room for a pool, and we refuse to hand out more than a /16).
 */
export function parseIpv4Subnet(cidr: unknown, what = 'subnet'): Ipv4Subnet {
  const m = typeof cidr === 'string' ? /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(cidr) : null;
  if (!m || net.isIPv4(m[1]!) === false) throw invalid(`${what} must be an IPv4 CIDR like 10.8.0.0/24 (got ${JSON.stringify(cidr)})`);
  const prefix = Number(m[2]);
  if (prefix < 16 || prefix > 29) throw invalid(`${what} prefix must be 16..29 (got /${prefix})`);
  const addr = ipv4ToInt(m[1]!);
  const size = 2 ** (32 - prefix);
  if (addr % size !== 0) throw invalid(`${what} ${String(cidr)} has host bits set; the network is ${intToIpv4(addr - (addr % size))}/${prefix}`);
  return { network: m[1]!, netmask: intToIpv4(2 ** 32 - size), prefix };
}

/** The `index`-th /`prefix` network inside `pool` (for per-instance subnets). */
export function nthSubnet(pool: string, prefix: number, index: number): string {
  const p = parseIpv4Subnet(pool, 'subnet pool');
  if (prefix < p.prefix || prefix > 29) throw invalid(`instance prefix /${prefix} does not fit in pool ${pool}`);
  const count = 2 ** (prefix - p.prefix);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw invalid(`subnet pool ${pool} has only ${count} /${prefix} networks`);
  return `${intToIpv4(ipv4ToInt(p.network) + index * 2 ** (32 - prefix))}/${prefix}`;
}
