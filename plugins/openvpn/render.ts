import { invalid } from '../../core';
import {
  DEVICE_RE,
  assertCommonName,
  assertHost,
  assertIntRange,
  assertIp,
  assertPort,
  assertProto,
  assertSafePath,
  parseIpv4Subnet,
} from './validate';

/*
 * Pure renderers: values in, OpenVPN config text out. Every value is checked against what
 * the format can hold and refused otherwise (DomainError kind `invalid`); nothing is
 * escaped, because OpenVPN's quoting rules are not something we want to depend on.
 */

/** One OpenVPN server process (one port + protocol). */
export interface ServerConfigInput {
  port: number;
  proto: 'udp' | 'tcp';
  /** Tun device we own, `pgtun<N>`. */
  device: string;
  /** Client address pool, IPv4 CIDR (`10.8.0.0/24`); the server takes the first address. */
  subnet: string;
  /** Bind address; default: all addresses. */
  local?: string;
  /** Unix socket OpenVPN listens on for the management client. */
  managementSocket: string;
  caPath: string;
  certPath: string;
  keyPath: string;
  crlPath: string;
  tlsCryptPath: string;
  /**
   * Clients must send a username and password (checked on the management interface) in
   * addition to their certificate. Default true. When false, the certificate alone
   * identifies the user (the management interface still decides every connection).
   */
  passwordAuth?: boolean;
  /**
   * Hold the daemon at start until the management client says `hold release`, so no client
   * can connect before the auth decider is attached. Default true.
   */
  managementHold?: boolean;
  /** Simultaneous clients this process accepts; default: OpenVPN's (1024). */
  maxClients?: number;
  /** `keepalive <interval> <timeout>`; default 10 60. */
  keepalive?: { interval: number; timeout: number };
  /** Push `redirect-gateway def1 bypass-dhcp` (all client traffic through the VPN). Default false. */
  redirectGateway?: boolean;
  /** DNS servers pushed to clients. */
  dns?: readonly string[];
  /** Optional status file (status-version 3), rewritten every `statusIntervalSec`. */
  statusFile?: string;
  statusIntervalSec?: number;
  /** Data channel offload needs the ovpn-dco kernel module; default false (`disable-dco`). */
  dco?: boolean;
  /** Log verbosity; default 3. */
  verb?: number;
  /**
   * Run `script` (argv: record dir, instance key) as `client-disconnect` for every established
   * client that ends, with `script-security 2`; without it no script runs (`script-security 1`).
   */
  disconnectHook?: { script: string; recordDir: string; instance: string };
}

const HEADER = '# Managed by polygate: rewritten as a whole on every change. Edits here are lost.';

/**
 * The server config of one instance. Design decisions baked in:
 * - a client certificate is always required (`verify-client-cert require`) and the
 *   management interface decides every connection (`management-client-auth`); the
 *   username the client sends must equal its certificate CN (checked by the decider, so
 *   no `username-as-common-name`);
 * - `duplicate-cn`: one user may hold several sessions (max_clients is enforced by core);
 * - `script-security 1`: no scripts run, unless the disconnect hook is given (`script-security
 *   2`, one constant script that records final counters on the host);
 * - `status-version 3` (tab-separated) for `status 3` on the management interface.
 */
export function renderServerConfig(input: ServerConfigInput): string {
  const port = assertPort(input.port);
  const proto = assertProto(input.proto);
  if (typeof input.device !== 'string' || !DEVICE_RE.test(input.device)) throw invalid(`device must match ${DEVICE_RE.source} (got ${JSON.stringify(input.device)})`);
  const subnet = parseIpv4Subnet(input.subnet);
  const passwordAuth = input.passwordAuth ?? true;
  const keepalive = input.keepalive ?? { interval: 10, timeout: 60 };
  assertIntRange(keepalive.interval, 1, 3600, 'keepalive interval');
  assertIntRange(keepalive.timeout, keepalive.interval * 2, 7200, 'keepalive timeout (at least twice the interval)');
  const verb = assertIntRange(input.verb ?? 3, 0, 11, 'verb');

  const lines = [
    HEADER,
    `port ${port}`,
    `proto ${proto === 'udp' ? 'udp' : 'tcp-server'}`,
  ];
  if (input.local !== undefined) lines.push(`local ${assertIp(input.local, 'local')}`);
  lines.push(
    `dev ${input.device}`,
    'dev-type tun',
    'topology subnet',
    `server ${subnet.network} ${subnet.netmask}`,
    `ca ${assertSafePath(input.caPath, 'caPath')}`,
    `cert ${assertSafePath(input.certPath, 'certPath')}`,
    `key ${assertSafePath(input.keyPath, 'keyPath')}`,
    'dh none',
    `crl-verify ${assertSafePath(input.crlPath, 'crlPath')}`,
    `tls-crypt ${assertSafePath(input.tlsCryptPath, 'tlsCryptPath')}`,
    'verify-client-cert require',
    'remote-cert-tls client',
    'duplicate-cn',
    `management ${assertSafePath(input.managementSocket, 'managementSocket')} unix`,
    'management-client-auth',
  );
  if (input.managementHold ?? true) lines.push('management-hold');
  // Without it OpenVPN refuses clients that send no password; with it the decider sees an
  // empty password and still decides.
  if (!passwordAuth) lines.push('auth-user-pass-optional');
  if (input.maxClients !== undefined) lines.push(`max-clients ${assertIntRange(input.maxClients, 1, 65535, 'maxClients')}`);
  lines.push(`keepalive ${keepalive.interval} ${keepalive.timeout}`);
  // multihome: on a server with several addresses, answer UDP clients from the address they
  // dialed (otherwise clients reject replies from "an unexpected peer address").
  if (proto === 'udp') lines.push('explicit-exit-notify 1', 'multihome');
  const hook = input.disconnectHook;
  if (hook) {
    if (typeof hook.instance !== 'string' || !/^\d{1,5}(udp|tcp)$/.test(hook.instance)) throw invalid(`disconnectHook.instance must be <port><udp|tcp> (got ${JSON.stringify(hook.instance)})`);
    // OpenVPN splits the quoted command into argv itself; no shell reads it.
    lines.push('script-security 2', `client-disconnect "${assertSafePath(hook.script, 'disconnectHook.script')} ${assertSafePath(hook.recordDir, 'disconnectHook.recordDir')} ${hook.instance}"`);
  } else {
    lines.push('script-security 1');
  }
  lines.push('status-version 3');
  if (input.statusFile !== undefined) {
    const interval = assertIntRange(input.statusIntervalSec ?? 10, 1, 3600, 'statusIntervalSec');
    lines.push(`status ${assertSafePath(input.statusFile, 'statusFile')} ${interval}`);
  }
  if (input.redirectGateway) lines.push('push "redirect-gateway def1 bypass-dhcp"');
  for (const dns of input.dns ?? []) lines.push(`push "dhcp-option DNS ${assertIp(dns, 'dns')}"`);
  lines.push('persist-key', 'persist-tun');
  if (!input.dco) lines.push('disable-dco');
  lines.push(`verb ${verb}`, 'mute 20', '');
  return lines.join('\n');
}

export interface ClientRemote {
  host: string;
  port: number;
  proto: 'udp' | 'tcp';
}

export interface ClientProfileInput {
  /** Tried in order. */
  remotes: readonly ClientRemote[];
  caPem: string;
  certPem: string;
  keyPem: string;
  tlsCryptKey: string;
  /** CN of the server certificate (`verify-x509-name`). */
  serverCommonName: string;
  /** Prompt for username/password (`auth-user-pass`). Default true. */
  passwordAuth?: boolean;
  /** A comment naming the profile (e.g. `alice @ main_udp`); letters, digits, space and `@._:-`. */
  title?: string;
  verb?: number;
}

/** A self-contained `.ovpn` profile: certificates and the tls-crypt key inline. */
export function renderClientProfile(input: ClientProfileInput): string {
  if (!Array.isArray(input.remotes) || input.remotes.length === 0) throw invalid('a client profile needs at least one remote');
  if (input.remotes.length > 32) throw invalid('a client profile takes at most 32 remotes');
  const remotes = input.remotes.map((r, i) => ({
    host: assertHost(r.host, `remotes[${i}].host`),
    port: assertPort(r.port, `remotes[${i}].port`),
    proto: assertProto(r.proto),
  }));
  const serverCn = assertCommonName(input.serverCommonName, 'serverCommonName');
  const verb = assertIntRange(input.verb ?? 3, 0, 11, 'verb');
  const lines = [];
  if (input.title !== undefined) {
    if (typeof input.title !== 'string' || !/^[A-Za-z0-9 @._:-]{1,100}$/.test(input.title)) throw invalid(`title must be 1..100 of letters, digits, space and @._:- (got ${JSON.stringify(input.title)})`);
    lines.push(`# ${input.title}`);
  }
  lines.push('client', 'dev tun', 'nobind');
  for (const r of remotes) lines.push(`remote ${r.host} ${r.port} ${r.proto}`);
  lines.push('resolv-retry infinite', 'persist-key', 'persist-tun', 'remote-cert-tls server', `verify-x509-name ${serverCn} name`);
  if (input.passwordAuth ?? true) lines.push('auth-user-pass');
  // Only meaningful (and only accepted) when every remote is UDP.
  if (remotes.every((r) => r.proto === 'udp')) lines.push('explicit-exit-notify 1');
  lines.push(`verb ${verb}`);
  lines.push(inline('ca', input.caPem, ['CERTIFICATE']));
  lines.push(inline('cert', input.certPem, ['CERTIFICATE']));
  lines.push(inline('key', input.keyPem, ['PRIVATE KEY', 'EC PRIVATE KEY', 'RSA PRIVATE KEY']));
  lines.push(inline('tls-crypt', input.tlsCryptKey, ['OpenVPN Static key V1']));
  return lines.join('\n') + '\n';
}

/**
 * `<tag>\n…\n</tag>` with content that is exactly one or more PEM blocks of the allowed
 * types (comment lines `#…` allowed before them, as `openvpn --genkey` writes).
 */
function inline(tag: string, content: string, types: readonly string[]): string {
  if (typeof content !== 'string') throw invalid(`<${tag}> content must be a string`);
  const text = content.replace(/\r\n/g, '\n').trim();
  const lines = text.split('\n');
  let i = 0;
  let blocks = 0;
  while (i < lines.length && lines[i]!.startsWith('#') && /^#[ -~]*$/.test(lines[i]!) && !lines[i]!.includes('<')) i++;
  while (i < lines.length) {
    const begin = /^-----BEGIN ([A-Za-z0-9 ]+)-----$/.exec(lines[i]!);
    if (!begin || !types.includes(begin[1]!)) throw invalid(`<${tag}> must hold PEM blocks of type ${types.join(' / ')}`);
    i++;
    while (i < lines.length && /^[A-Za-z0-9+/=]+$/.test(lines[i]!)) i++;
    if (lines[i] !== `-----END ${begin[1]}-----`) throw invalid(`<${tag}> has a malformed PEM block`);
    i++;
    blocks++;
  }
  if (blocks === 0) throw invalid(`<${tag}> is empty`);
  return `<${tag}>\n${text}\n</${tag}>`;
}
