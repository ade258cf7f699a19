/**
 * Pure parts of the ocserv plugin: desired state → file contents, and the daemon's files →
 * values. No I/O; every input that ends up in a file is checked here, so nothing a user
 * controls can add a line to ocserv's configuration.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { invalid } from '../../core';
import { parseSha512Crypt, sha512Crypt, sha512CryptMatches } from './crypt';

const USERNAME_RE = /^[a-zA-Z0-9_.-]{3,32}$/;
const PATH_RE = /^\/[A-Za-z0-9._+@:/-]{1,4000}$/;
const IPV4_RE = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const NAME_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const DEVICE_RE = /^[a-zA-Z][a-zA-Z0-9]{0,9}$/;
/** A run: `<pid>.<start time>` (the supervisor's epoch), or a random id of the versions before it. */
const RUN_ID_RE = /^(?:\d{1,10}\.\d{1,20}|[a-z0-9]{4,32})$/;

function check(ok: boolean, what: string, value: unknown): void {
  if (!ok) throw invalid(`${what} is invalid: ${JSON.stringify(value)}`);
}
const path = (p: string, what: string) => (check(typeof p === 'string' && PATH_RE.test(p), what, p), p);
const int = (n: number, what: string, min: number, max: number) => (check(Number.isInteger(n) && n >= min && n <= max, what, n), n);

export interface OcservConfigInput {
  tcpPort: number;
  /** No DTLS when absent. */
  udpPort?: number;
  /** Listen on every address when absent. */
  listenHost?: string;
  passwdPath: string;
  perUserDir: string;
  disconnectScript: string;
  socketPath: string;
  occtlSocketPath: string;
  pidPath: string;
  certPath: string;
  keyPath: string;
  runAsUser: string;
  runAsGroup: string;
  isolateWorkers: boolean;
  /** 0 = unlimited. */
  maxClients: number;
  /** 0 = unlimited; a per-user file may lower it. */
  maxSameClients: number;
  device: string;
  network: string;
  netmask: string;
  dns: readonly string[];
  /** CIDRs pushed to clients; empty = default route. */
  routes: readonly string[];
  keepaliveSec: number;
  dpdSec: number;
  cookieTimeoutSec: number;
  /** 0 disables banning of addresses after failed logins. */
  maxBanScore: number;
  logLevel: number;
}

/**
 * ocserv.conf. Logins are checked against the password file; `disconnect-script` leaves a
 * durable record of the final counters; `config-per-user` carries per-user limits.
 */
export function renderServerConfig(c: OcservConfigInput): string {
  const lines = [
    '# Written by polygate; rewritten on every change.',
    `auth = "plain[passwd=${path(c.passwdPath, 'passwdPath')}]"`,
    `tcp-port = ${int(c.tcpPort, 'tcpPort', 1, 65535)}`,
  ];
  if (c.udpPort !== undefined) lines.push(`udp-port = ${int(c.udpPort, 'udpPort', 1, 65535)}`);
  if (c.listenHost !== undefined) {
    check(IPV4_RE.test(c.listenHost), 'listenHost', c.listenHost);
    lines.push(`listen-host = ${c.listenHost}`);
  }
  check(NAME_RE.test(c.runAsUser), 'runAsUser', c.runAsUser);
  check(NAME_RE.test(c.runAsGroup), 'runAsGroup', c.runAsGroup);
  check(DEVICE_RE.test(c.device), 'device', c.device);
  check(IPV4_RE.test(c.network), 'network', c.network);
  check(IPV4_RE.test(c.netmask), 'netmask', c.netmask);
  lines.push(
    `run-as-user = ${c.runAsUser}`,
    `run-as-group = ${c.runAsGroup}`,
    `socket-file = ${path(c.socketPath, 'socketPath')}`,
    `occtl-socket-file = ${path(c.occtlSocketPath, 'occtlSocketPath')}`,
    'use-occtl = true',
    `pid-file = ${path(c.pidPath, 'pidPath')}`,
    `server-cert = ${path(c.certPath, 'certPath')}`,
    `server-key = ${path(c.keyPath, 'keyPath')}`,
    `isolate-workers = ${c.isolateWorkers ? 'true' : 'false'}`,
    `max-clients = ${int(c.maxClients, 'maxClients', 0, 1_000_000)}`,
    `max-same-clients = ${int(c.maxSameClients, 'maxSameClients', 0, 65535)}`,
    `config-per-user = ${path(c.perUserDir, 'perUserDir').replace(/\/?$/, '/')}`,
    `disconnect-script = ${path(c.disconnectScript, 'disconnectScript')}`,
    `keepalive = ${int(c.keepaliveSec, 'keepaliveSec', 1, 86400)}`,
    `dpd = ${int(c.dpdSec, 'dpdSec', 1, 86400)}`,
    `mobile-dpd = ${int(c.dpdSec, 'dpdSec', 1, 86400)}`,
    'try-mtu-discovery = false',
    'auth-timeout = 240',
    `cookie-timeout = ${int(c.cookieTimeoutSec, 'cookieTimeoutSec', 10, 86400)}`,
    `max-ban-score = ${int(c.maxBanScore, 'maxBanScore', 0, 100000)}`,
    `device = ${c.device}`,
    'predictable-ips = true',
    `ipv4-network = ${c.network}`,
    `ipv4-netmask = ${c.netmask}`,
    'ping-leases = false',
    'cisco-client-compat = true',
    'dtls-legacy = true',
    `log-level = ${int(c.logLevel, 'logLevel', 0, 9)}`,
  );
  for (const d of c.dns) {
    check(IPV4_RE.test(d), 'dns', d);
    lines.push(`dns = ${d}`);
  }
  for (const r of c.routes) {
    const m = /^([0-9.]+)\/(\d{1,2})$/.exec(r);
    check(!!m && IPV4_RE.test(m[1]!) && Number(m[2]) <= 32, 'route', r);
    lines.push(`route = ${r}`);
  }
  return `${lines.join('\n')}\n`;
}

export interface PasswordUser {
  username: string;
  password: string;
}

/** `username → hash` of an ocpasswd file (`user:group:hash`); lines that are not that are ignored. */
export function parsePasswordFile(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([^:\s]+):([^:]*):(\S+)$/.exec(line.trim());
    if (m) out.set(m[1]!, m[3]!);
  }
  return out;
}

/**
 * The ocpasswd file (`username:*:$6$…`) holding exactly `users`, sorted. A user whose
 * password still matches its previous hash keeps that hash, so applying the same state twice
 * writes the same bytes (and ocserv is not reloaded for nothing); new or changed passwords get
 * a fresh salt from `newSalt`.
 */
export function renderPasswordFile(
  users: readonly PasswordUser[],
  previous: ReadonlyMap<string, string>,
  newSalt: () => string,
  /** Whether `hash` is `password`'s; callers that remember what they hashed skip the 5000 rounds. */
  matches: (password: string, hash: string) => boolean = sha512CryptMatches,
): string {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const u of [...users].sort((a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0))) {
    check(USERNAME_RE.test(u.username), 'username', u.username);
    if (seen.has(u.username)) throw invalid(`user ${u.username} is listed twice`);
    seen.add(u.username);
    check(typeof u.password === 'string' && u.password.length > 0 && u.password.length <= 256, `password of ${u.username}`, '…');
    const old = previous.get(u.username);
    const hash = old !== undefined && parseSha512Crypt(old) && matches(u.password, old) ? old : sha512Crypt(u.password, newSalt());
    lines.push(`${u.username}:*:${hash}`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** The `config-per-user` file of one user. `maxSameClients` holds the user's `max_clients` on ocserv itself. */
export function renderPerUserConfig(options: { maxSameClients?: number }): string {
  const lines = ['# Written by polygate.'];
  if (options.maxSameClients !== undefined) lines.push(`max-same-clients = ${int(options.maxSameClients, 'maxSameClients', 1, 65535)}`);
  return `${lines.join('\n')}\n`;
}

/**
 * The program the keeper runs for ocserv: it starts ocserv (`"$@"`) as its child and stays
 * until it exits, passing on SIGTERM/SIGINT/SIGHUP. Why a wrapper at all: ocserv rewrites its
 * own command line (setproctitle: `/proc/<pid>/cmdline` reads `ocserv`), and the keeper
 * recognises a run to adopt by its argv, which the wrapper's stays. It also names the run the
 * way the supervisor does (`<pid>.<start time>` of itself, the keeper's child) in
 * `POLYGATE_OCSERV_RUN`; ocserv hands its environment to the disconnect script, so every record
 * carries the run its session belonged to, even one written by an ocserv left behind.
 */
export function renderRunWrapper(): string {
  return [
    '#!/bin/sh',
    '# Written by polygate: runs ocserv (the arguments) as a child and waits for it.',
    // A function has its own positional parameters, so `set --` leaves ocserv's argv alone.
    'run_id() { s=$(cat "/proc/$$/stat") || return 1; set -- ${s##*) }; echo "$$.${20}"; }',
    'POLYGATE_OCSERV_RUN=$(run_id) || exit 70',
    'export POLYGATE_OCSERV_RUN',
    'child=',
    'trap \'stop=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null\' TERM INT HUP',
    '"$@" &',
    'child=$!',
    '[ -n "$stop" ] && kill -TERM "$child" 2>/dev/null',
    // A trapped signal interrupts wait (status > 128) while ocserv still shuts down: wait again.
    // A second wait on a pid that is no longer our child returns 127, so this never spins.
    'while :; do',
    '  wait "$child"; rc=$?',
    '  if [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi',
    '  exit "$rc"',
    'done',
    '',
  ].join('\n');
}

/**
 * The `disconnect-script`: ocserv runs it (as root, from its main process) when a session
 * ends, with the final counters in its environment. It writes one record per session into
 * `endedDir`, atomically (temporary file, then rename), named `<run>-<ID>.rec`, where the run
 * is `POLYGATE_OCSERV_RUN` from the wrapper (see `renderRunWrapper`): the same epoch the
 * plugin puts in the keys of the sessions it polls. Only ocserv's own variables are written,
 * one per line, and only after checking they are what ocserv puts there; the username was
 * validated when the password file was written.
 */
export function renderDisconnectScript(options: { endedDir: string }): string {
  const dir = path(options.endedDir, 'endedDir');
  return [
    '#!/bin/sh',
    '# Written by polygate: records the final counters of an ended ocserv session.',
    'run=$POLYGATE_OCSERV_RUN',
    // Without the run its key would match no polled session and its bytes would count twice.
    'case "$run" in ""|*[!0-9.]*|.*|*.|*.*.*) exit 0 ;; *.*) ;; *) exit 0 ;; esac',
    'case "$ID" in ""|*[!0-9]*) exit 0 ;; esac',
    'case "$STATS_BYTES_IN" in ""|*[!0-9]*) exit 0 ;; esac',
    'case "$STATS_BYTES_OUT" in ""|*[!0-9]*) exit 0 ;; esac',
    `tmp="${dir}/.tmp-$run-$ID"`,
    `printf 'v1\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n' "$run" "$ID" "$USERNAME" "$STATS_BYTES_IN" "$STATS_BYTES_OUT" "$STATS_DURATION" "$IP_REAL" "$REASON" > "$tmp" && mv -f "$tmp" "${dir}/$run-$ID.rec"`,
    'exit 0',
    '',
  ].join('\n');
}

export interface EndedRecord {
  runId: string;
  id: string;
  username: string;
  /** STATS_BYTES_IN: bytes the server received from the client. */
  rxBytes: number;
  /** STATS_BYTES_OUT: bytes the server sent to the client. */
  txBytes: number;
  durationSec: number;
  remoteAddress: string;
  reason: string;
}

const counter = (s: string | undefined): number | null => (s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : null);

/** One record the disconnect script wrote, or null when it is not a complete one. */
export function parseEndedRecord(text: string): EndedRecord | null {
  const f = text.split('\n');
  if (f[0] !== 'v1' || f.length < 10) return null;
  const [, runId, id, username, rx, tx, duration, remote, reason] = f as string[];
  const rxBytes = counter(rx);
  const txBytes = counter(tx);
  if (!RUN_ID_RE.test(runId!) || !/^\d{1,15}$/.test(id!) || !USERNAME_RE.test(username!) || rxBytes === null || txBytes === null) return null;
  return { runId: runId!, id: id!, username: username!, rxBytes, txBytes, durationSec: counter(duration) ?? 0, remoteAddress: remote ?? '', reason: reason ?? '' };
}

/** Record file names the plugin reads (`<run>-<ID>.rec`). */
export const ENDED_RECORD_RE = /^(?:\d{1,10}\.\d{1,20}|[a-z0-9]{4,32})-\d{1,15}\.rec$/;

/** `pin-sha256:<base64>` of the certificate's public key: what `openconnect --servercert` and AnyConnect pin. */
export function certificatePin(certificatePem: string): string {
  const der = new X509Certificate(certificatePem).publicKey.export({ type: 'spki', format: 'der' });
  return `pin-sha256:${createHash('sha256').update(der).digest('base64')}`;
}

/**
 * What a customer downloads: an `openconnect --config` file (one long option per line, `#`
 * comments) with the username and the certificate pin, headed by the server URL and pin in
 * words for AnyConnect apps.
 */
export function renderClientProfile(options: { username: string; servers: ReadonlyArray<{ host: string; port: number }>; pin: string; title: string }): string {
  check(USERNAME_RE.test(options.username), 'username', options.username);
  check(/^pin-sha256:[A-Za-z0-9+/=]{44}$/.test(options.pin), 'pin', options.pin);
  const title = options.title.replace(/[^\x20-\x7e]/g, '?');
  const lines = [`# Cisco AnyConnect: ${title}`];
  for (const s of options.servers) {
    check(/^[a-zA-Z0-9.:-]{1,253}$/.test(s.host), 'server host', s.host);
    const host = s.host.includes(':') ? `[${s.host}]` : s.host;
    lines.push(`# Server: https://${host}:${int(s.port, 'server port', 1, 65535)}`);
  }
  lines.push(
    `# Username: ${options.username}`,
    `# Server certificate: ${options.pin}`,
    '# Apps: Cisco Secure Client (AnyConnect), OpenConnect GUI, or:',
    '#   openconnect --config <this file> <server>',
    'protocol=anyconnect',
    `user=${options.username}`,
    `servercert=${options.pin}`,
    '',
  );
  return lines.join('\n');
}
