import net from 'node:net';
import { invalid } from '../../errors';

/*
 * Checks for every value a plugin writes into a daemon's config, an argv or a file path. They
 * refuse (DomainError kind `invalid`) rather than escape: the formats involved (OpenVPN and
 * openssl configs, chap-secrets, ocpasswd) have no escaping worth relying on, and a value
 * refused at the edge can never be misread further down.
 */

/**
 * What a username may be, everywhere: the API refuses others, and plugins may use a name as a
 * certificate CN, a file name or a management-command argument without quoting.
 */
export const USERNAME_PATTERN = /^[a-zA-Z0-9_.-]{3,32}$/;
/** DNS names written into client configs (`remote` lines, endpoints). */
export const HOSTNAME_PATTERN = /^[a-zA-Z0-9.-]{1,253}$/;
/**
 * Absolute paths written into configs: no whitespace, quotes, `$`, `#`, `;` or backslashes,
 * which some config format would interpret.
 */
export const SAFE_PATH_PATTERN = /^\/[A-Za-z0-9._+@:/-]{0,4000}$/;
/** Certificate common names that are not usernames (CA, servers): not user input, still checked. */
export const COMMON_NAME_PATTERN = /^[a-zA-Z0-9_.-]{1,64}$/;

/**
 * Returns `username` when it matches {@link USERNAME_PATTERN}, else throws `invalid`.
 *
 * @example
 * const cn = assertUsername(user.username); // safe as a CN and a file name
 */
export function assertUsername(username: unknown): string {
  if (typeof username !== 'string' || !USERNAME_PATTERN.test(username)) {
    throw invalid(`username must match ${USERNAME_PATTERN.source} (got ${JSON.stringify(username)})`);
  }
  return username;
}

/** Returns `name` when it matches {@link COMMON_NAME_PATTERN}, else throws `invalid` naming `what`. */
export function assertCommonName(name: unknown, what: string): string {
  if (typeof name !== 'string' || !COMMON_NAME_PATTERN.test(name)) throw invalid(`${what} must match ${COMMON_NAME_PATTERN.source} (got ${JSON.stringify(name)})`);
  return name;
}

/** Returns `p` when it is an absolute path matching {@link SAFE_PATH_PATTERN} without `..` segments. */
export function assertSafePath(p: unknown, what: string): string {
  if (typeof p !== 'string' || !SAFE_PATH_PATTERN.test(p) || p.split('/').includes('..')) {
    throw invalid(`${what} must be an absolute path of letters, digits and ._+@:/- without '..' (got ${JSON.stringify(p)})`);
  }
  return p;
}

/** Returns `port` when it is an integer 1..65535. */
export function assertPort(port: unknown, what = 'port'): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(`${what} must be an integer 1..65535 (got ${JSON.stringify(port)})`);
  }
  return port;
}

/** Returns `transport` when it is `udp` or `tcp`. */
export function assertTransport(transport: unknown, what = 'protocol'): 'udp' | 'tcp' {
  if (transport !== 'udp' && transport !== 'tcp') throw invalid(`${what} must be 'udp' or 'tcp' (got ${JSON.stringify(transport)})`);
  return transport;
}

/** Returns `ip` when it is an IPv4 or IPv6 address. */
export function assertIp(ip: unknown, what: string): string {
  if (typeof ip !== 'string' || net.isIP(ip) === 0) throw invalid(`${what} must be an IP address (got ${JSON.stringify(ip)})`);
  return ip;
}

/** A DNS name (labels of letters, digits and dashes, not starting with `-` or `.`) or an IP address. */
export function assertHost(host: unknown, what = 'host'): string {
  if (typeof host === 'string' && net.isIP(host) !== 0) return host;
  if (typeof host !== 'string' || !HOSTNAME_PATTERN.test(host) || host.startsWith('-') || host.startsWith('.') || host.includes('..')) {
    throw invalid(`${what} must be a hostname (${HOSTNAME_PATTERN.source}) or an IP address (got ${JSON.stringify(host)})`);
  }
  return host;
}

/** Returns `value` when it is an integer in `[min, max]`. */
export function assertIntRange(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${what} must be an integer ${min}..${max} (got ${JSON.stringify(value)})`);
  }
  return value;
}
