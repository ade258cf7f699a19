/**
 * Pure parts of the L2TP/IPsec plugin: desired state → file contents (strongswan.conf,
 * swanctl.conf, xl2tpd.conf, pppd options, chap-secrets, pppd hook scripts, the client
 * profile) and charon's / pppd's answers → sessions. No I/O. Every value that ends up in a
 * file is checked or encoded here, so nothing a user controls can add a line or a section.
 */
import { randomUUID, X509Certificate } from 'node:crypto';
import { invalid, USERNAME_PATTERN } from '../../core';
import type { ViciMessage, ViciValue } from './vici';

const PATH_RE = /^\/[A-Za-z0-9._+@:/-]{1,4000}$/;
const IPV4_RE = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const CIDR_RE = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\/(?:3[0-2]|[12]?\d)$/;
/** An IKE identity we configure ourselves (FQDN or address), never one a client sent. */
const IDENTITY_RE = /^[a-zA-Z0-9.:-]{1,253}$/;
const PROPOSAL_RE = /^[a-z0-9_-]{1,64}$/;
const PLUGIN_RE = /^[a-z0-9-]{1,40}$/;
export const RUN_ID_RE = /^[a-z0-9]{4,32}$/;

function check(ok: boolean, what: string, value: unknown): void {
  if (!ok) throw invalid(`${what} is invalid: ${JSON.stringify(value)}`);
}
const path = (p: string, what: string) => (check(typeof p === 'string' && PATH_RE.test(p), what, p), p);
const ip = (p: string, what: string) => (check(typeof p === 'string' && IPV4_RE.test(p), what, p), p);
const cidr = (p: string, what: string) => (check(typeof p === 'string' && CIDR_RE.test(p), what, p), p);
const int = (n: number, what: string, min: number, max: number) => (check(Number.isInteger(n) && n >= min && n <= max, what, n), n);
const username = (u: string) => (check(typeof u === 'string' && USERNAME_PATTERN.test(u), 'username', u), u);

/**
 * strongSwan reads a secret given as `0s<base64>` as raw bytes, so a password or PSK with
 * quotes, braces, `#` or backslashes needs no escaping rules at all.
 */
export function swanSecret(secret: string, what: string): string {
  check(typeof secret === 'string' && secret.length > 0 && secret.length <= 1024, what, '<secret>');
  return `0s${Buffer.from(secret, 'utf8').toString('base64')}`;
}

export interface StrongswanConfInput {
  viciSocket: string;
  ikePort: number;
  natPort: number;
  /** userspace ESP (kernel-libipsec): tunnel mode only, for kernels without XFRM ESP. */
  userspaceEsp: boolean;
  /** Extra charon plugins (names), e.g. `openssl` when installed. */
  extraPlugins: readonly string[];
  logPath: string;
  logLevel: number;
}

/**
 * The charon plugins polygate needs: IKE crypto, PSK and certificates, EAP-MSCHAPv2 (Debian
 * builds no md4/des plugins: gcrypt gives MD4/DES), vici. A plugin that is not installed
 * (openssl, gcm without libstrongswan-standard-plugins) is skipped by charon with a warning.
 */
export const CHARON_PLUGINS = [
  'random', 'nonce', 'openssl', 'gcrypt', 'gmp', 'curve25519', 'aes', 'gcm', 'sha1', 'sha2', 'md5', 'hmac', 'kdf', 'pem', 'pkcs1', 'pkcs8', 'x509', 'pubkey',
  'revocation', 'constraints', 'kernel-netlink', 'socket-default', 'vici', 'attr', 'eap-identity', 'eap-mschapv2',
] as const;

/**
 * strongswan.conf for charon and for the swanctl runs that load its configuration. Plugins
 * are listed (`load_modular = no`) so a missing package shows up as a start failure, not as
 * a connection that can never authenticate.
 */
export function renderStrongswanConf(o: StrongswanConfInput): string {
  const extra = o.extraPlugins.map((p) => (check(PLUGIN_RE.test(p), 'charon plugin', p), p));
  // kernel-libipsec must come before kernel-netlink, or netlink's IPsec part wins and fails on a kernel without ESP.
  const load = [...(o.userspaceEsp ? ['kernel-libipsec'] : []), ...CHARON_PLUGINS, ...extra].join(' ');
  return [
    '# Written by polygate.',
    'charon {',
    '  load_modular = no',
    `  load = ${load}`,
    `  port = ${int(o.ikePort, 'ikePort', 1, 65535)}`,
    `  port_nat_t = ${int(o.natPort, 'natPort', 1, 65535)}`,
    `  install_routes = ${o.userspaceEsp ? 'yes' : 'no'}`,
    `  plugins { vici { socket = unix://${path(o.viciSocket, 'viciSocket')} } }`,
    `  filelog { polygate { path = ${path(o.logPath, 'logPath')}`,
    '                       time_format = %F %T',
    '                       flush_line = yes',
    `                       default = ${int(o.logLevel, 'logLevel', -1, 4)} } }`,
    '  syslog { daemon { default = -1 } }',
    '}',
    'swanctl {',
    '  load = random nonce pem pkcs1 pkcs8 x509 pubkey gmp gcrypt sha1 sha2',
    '}',
    '',
  ].join('\n');
}

export interface SwanctlUser {
  username: string;
  password: string;
}

export interface SwanctlConfInput {
  /** Absent: the IKEv1 PSK connection for L2TP is not loaded (no PSK set yet). */
  psk?: string;
  users: readonly SwanctlUser[];
  /** The gateway's IKEv2 identity, also in its certificate's SANs. */
  serverIdentity: string;
  /** File name under swanctl/x509. */
  certFile: string;
  /** IKEv2 virtual IP pool. */
  ikev2Pool: string;
  /** What IKEv2 clients reach through the tunnel; `0.0.0.0/0` = everything. */
  trafficSelectors: readonly string[];
  dns: readonly string[];
  /** Bind IKE to this address only. */
  listenAddress?: string;
  ikeProposals: readonly string[];
  espProposals: readonly string[];
  /** Also load the IKEv1 L2TP connection. */
  l2tp: boolean;
}

/**
 * swanctl.conf: `l2tp-psk` (IKEv1, PSK, transport mode protecting UDP 1701) and `ikev2-eap`
 * (certificate + per-user EAP-MSCHAPv2, virtual IPs). The secrets section holds exactly the
 * users allowed now: a user left out cannot authenticate.
 */
export function renderSwanctlConf(o: SwanctlConfInput): string {
  check(IDENTITY_RE.test(o.serverIdentity), 'serverIdentity', o.serverIdentity);
  check(/^[a-z0-9._-]{1,64}$/.test(o.certFile), 'certFile', o.certFile);
  const props = (list: readonly string[], what: string) => list.map((p) => (check(PROPOSAL_RE.test(p), what, p), p)).join(',');
  const addrs = o.listenAddress !== undefined ? `    local_addrs = ${ip(o.listenAddress, 'listenAddress')}` : null;
  const ts = o.trafficSelectors.map((t) => cidr(t, 'trafficSelectors')).join(',');
  const lines = ['# Written by polygate. Secrets are base64 (0s…): no value is parsed as syntax.', 'connections {'];
  if (o.l2tp && o.psk !== undefined) {
    lines.push(
      '  l2tp-psk {',
      '    version = 1',
      ...(addrs ? [addrs] : []),
      `    proposals = ${props(o.ikeProposals, 'ikeProposals')}`,
      '    local { auth = psk }',
      '    remote { auth = psk }',
      '    children {',
      '      l2tp {',
      '        mode = transport',
      '        local_ts = dynamic[udp/1701]',
      '        remote_ts = dynamic[udp]',
      `        esp_proposals = ${props(o.espProposals, 'espProposals')}`,
      '      }',
      '    }',
      '  }',
    );
  }
  lines.push(
    '  ikev2-eap {',
    '    version = 2',
    ...(addrs ? [addrs] : []),
    `    proposals = ${props(o.ikeProposals, 'ikeProposals')}`,
    '    pools = ikev2-pool',
    '    send_certreq = no',
    `    local { auth = pubkey`,
    `            certs = ${o.certFile}`,
    `            id = ${o.serverIdentity} }`,
    '    remote { auth = eap-mschapv2',
    '             eap_id = %any }',
    '    children {',
    '      ikev2 {',
    '        mode = tunnel',
    `        local_ts = ${ts}`,
    `        esp_proposals = ${props(o.espProposals, 'espProposals')}`,
    '      }',
    '    }',
    '  }',
    '}',
    'pools {',
    '  ikev2-pool {',
    `    addrs = ${cidr(o.ikev2Pool, 'ikev2Pool')}`,
    ...(o.dns.length ? [`    dns = ${o.dns.map((d) => ip(d, 'dns')).join(',')}`] : []),
    '  }',
    '}',
    'secrets {',
  );
  if (o.psk !== undefined) lines.push(`  ike-l2tp { secret = ${swanSecret(o.psk, 'ipsec_psk')} }`);
  o.users.forEach((u, i) => {
    lines.push(`  eap-u${i} { id = ${username(u.username)}`, `             secret = ${swanSecret(u.password, `password of ${u.username}`)} }`);
  });
  lines.push('}', '');
  return lines.join('\n');
}

/**
 * One word of a pppd secrets file, quoted. pppd reads `\` as an escape inside quotes, so `\`
 * and `"` are escaped; control characters (a newline would start a new entry) are refused.
 */
export function chapWord(s: string, what: string): string {
  // eslint-disable-next-line no-control-regex
  if (typeof s !== 'string' || !s.length || /[\x00-\x1f\x7f]/.test(s) || s.length > 255) throw invalid(`${what} cannot be written to chap-secrets (empty, too long or a control character)`);
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** chap-secrets for pppd's MS-CHAPv2: exactly these users, for the LNS's pppd name only. */
export function renderChapSecrets(users: readonly SwanctlUser[], serverName: string): string {
  check(/^[a-z0-9_.-]{1,32}$/.test(serverName), 'pppName', serverName);
  const lines = ['# Written by polygate from the users allowed to connect now; edits are overwritten.', '# client\tserver\tsecret\tIP addresses'];
  for (const u of users) lines.push(`${chapWord(username(u.username), 'username')}\t${serverName}\t${chapWord(u.password, `password of ${u.username}`)}\t*`);
  return `${lines.join('\n')}\n`;
}

export interface Xl2tpdConfInput {
  port: number;
  listenAddress?: string;
  /** First and last address handed to L2TP clients, and the LNS's own. */
  rangeStart: string;
  rangeEnd: string;
  localIp: string;
  pppOptionsPath: string;
  pppName: string;
}

/** xl2tpd.conf: one LNS that requires CHAP (pppd does MS-CHAPv2 against chap-secrets). */
export function renderXl2tpdConf(o: Xl2tpdConfInput): string {
  check(/^[a-z0-9_.-]{1,32}$/.test(o.pppName), 'pppName', o.pppName);
  return [
    '; Written by polygate.',
    '[global]',
    `port = ${int(o.port, 'l2tpPort', 1, 65535)}`,
    ...(o.listenAddress !== undefined ? [`listen-addr = ${ip(o.listenAddress, 'listenAddress')}`] : []),
    '',
    '[lns default]',
    `ip range = ${ip(o.rangeStart, 'rangeStart')}-${ip(o.rangeEnd, 'rangeEnd')}`,
    `local ip = ${ip(o.localIp, 'localIp')}`,
    'require chap = yes',
    'refuse pap = yes',
    'require authentication = yes',
    `name = ${o.pppName}`,
    `pppoptfile = ${path(o.pppOptionsPath, 'pppOptionsPath')}`,
    'length bit = yes',
    '',
  ].join('\n');
}

/** pppd options for the LNS: MS-CHAPv2 only, and polygate's hooks for accounting. */
export function renderPppOptions(o: { ipUp: string; ipDown: string; pppName: string; dns: readonly string[]; mtu: number }): string {
  return [
    '# Written by polygate.',
    'require-mschap-v2',
    'refuse-pap',
    'refuse-chap',
    'refuse-mschap',
    `name ${o.pppName}`,
    ...o.dns.map((d) => `ms-dns ${ip(d, 'dns')}`),
    'proxyarp',
    'nodefaultroute',
    'lock',
    `mtu ${int(o.mtu, 'mtu', 576, 1500)}`,
    `mru ${int(o.mtu, 'mtu', 576, 1500)}`,
    'lcp-echo-interval 30',
    'lcp-echo-failure 4',
    `ip-up-script ${path(o.ipUp, 'ipUp')}`,
    `ip-down-script ${path(o.ipDown, 'ipDown')}`,
    '',
  ].join('\n');
}

/**
 * pppd's `ip-up` / `ip-down` hooks. pppd runs them as root with PPPD_PID, IFNAME, PEERNAME
 * (the authenticated user), IPREMOTE and, for ip-down, BYTES_SENT / BYTES_RCVD in the
 * environment. ip-up records the session (so a poll finds its pid and interface); ip-down
 * writes its final counters as one record, atomically, and removes the session file. Values
 * are checked before they are written; a malformed environment writes nothing.
 */
export function renderPppHook(kind: 'up' | 'down', o: { sessionsDir: string; endedDir: string }): string {
  const sessions = path(o.sessionsDir, 'sessionsDir');
  const ended = path(o.endedDir, 'endedDir');
  const common = [
    '#!/bin/sh',
    `# Written by polygate: pppd ip-${kind} hook.`,
    'case "$PPPD_PID" in ""|*[!0-9]*) exit 0 ;; esac',
    'case "$IFNAME" in ""|*[!a-zA-Z0-9]*) exit 0 ;; esac',
    'case "$PEERNAME" in ""|*[!a-zA-Z0-9_.-]*) exit 0 ;; esac',
    'case "$IPREMOTE" in *[!0-9.]*) IPREMOTE="" ;; esac',
  ];
  if (kind === 'up') {
    return [
      ...common,
      `tmp="${sessions}/.tmp-$PPPD_PID"`,
      `printf 'v1\\n%s\\n%s\\n%s\\n%s\\n%s\\n' "$PPPD_PID" "$IFNAME" "$PEERNAME" "$IPREMOTE" "$(date +%s)" > "$tmp" && mv -f "$tmp" "${sessions}/$PPPD_PID.up"`,
      'exit 0',
      '',
    ].join('\n');
  }
  return [
    ...common,
    'case "$BYTES_SENT" in ""|*[!0-9]*) exit 0 ;; esac',
    'case "$BYTES_RCVD" in ""|*[!0-9]*) exit 0 ;; esac',
    `start=$(sed -n 6p "${sessions}/$PPPD_PID.up" 2>/dev/null)`,
    'case "$start" in ""|*[!0-9]*) start=0 ;; esac',
    `tmp="${ended}/.tmp-$PPPD_PID"`,
    `printf 'v1\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n' "$PPPD_PID" "$IFNAME" "$PEERNAME" "$IPREMOTE" "$start" "$BYTES_RCVD" "$BYTES_SENT" > "$tmp" && mv -f "$tmp" "${ended}/ppp-$PPPD_PID-$start.rec"`,
    `rm -f "${sessions}/$PPPD_PID.up"`,
    'exit 0',
    '',
  ].join('\n');
}

/**
 * The program charon's keeper runs: it sets STRONGSWAN_CONF, optionally enters a private mount
 * namespace with its own /run (charon hard-codes /var/run/charon.pid), and execs charon with
 * this script's path as argv[0]. Every step execs in place, so the pid the keeper records is
 * charon's, and charon's /proc cmdline is the launcher's own path: what adoption compares, and
 * unique per state directory, so another instance's (or the system's) charon is never taken.
 */
export function renderCharonLauncher(o: { charonPath: string; strongswanConf: string; privateRun: boolean }): string {
  const charon = path(o.charonPath, 'charonPath');
  const conf = path(o.strongswanConf, 'strongswanConf');
  const exec = o.privateRun
    ? `exec unshare --mount --propagation private -- /bin/bash -c 'mount -t tmpfs -o mode=0755 tmpfs /run && exec -a "$0" "$1"' "$0" '${charon}'`
    : `exec -a "$0" '${charon}'`;
  return ['#!/bin/bash', '# Written by polygate: starts charon for its keeper (see the plugin).', `export STRONGSWAN_CONF='${conf}'`, exec, ''].join('\n');
}

/** The run id in session keys and record names for a detached daemon's epoch (`<pid>.<start time>`). */
export function runIdOfEpoch(epoch: string): string {
  const m = /^(\d{1,10})\.(\d{1,20})$/.exec(epoch);
  check(m !== null, 'epoch', epoch);
  return `e${m![1]}s${m![2]}`;
}

const counter = (s: string | undefined): number | null => (s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : null);

export interface PppSession {
  pid: number;
  ifname: string;
  username: string;
  remoteAddress: string;
  startedAt: number;
}

/** A session file ip-up wrote, or null. */
export function parsePppSession(text: string): PppSession | null {
  const f = text.split('\n');
  if (f[0] !== 'v1' || f.length < 6) return null;
  const pid = counter(f[1]);
  const startedAt = counter(f[5]);
  if (pid === null || startedAt === null || !/^[a-zA-Z0-9]{1,15}$/.test(f[2]!) || !USERNAME_PATTERN.test(f[3]!)) return null;
  return { pid, ifname: f[2]!, username: f[3]!, remoteAddress: IPV4_RE.test(f[4]!) ? f[4]! : '', startedAt };
}

export interface PppEnded extends PppSession {
  /** BYTES_RCVD: what the server received from the client. */
  rxBytes: number;
  /** BYTES_SENT. */
  txBytes: number;
}

export const PPP_ENDED_RE = /^ppp-\d{1,10}-\d{1,15}\.rec$/;

/** A record ip-down wrote, or null. */
export function parsePppEnded(text: string): PppEnded | null {
  const f = text.split('\n');
  if (f[0] !== 'v1' || f.length < 8) return null;
  const s = parsePppSession(['v1', f[1], f[2], f[3], f[4], f[5]].join('\n'));
  const rx = counter(f[6]);
  const tx = counter(f[7]);
  if (!s || rx === null || tx === null) return null;
  return { ...s, rxBytes: rx, txBytes: tx };
}

// ---- charon's SAs (vici list-sas / child-updown) ----

export interface IkeChild {
  /** CHILD_SA unique id (stable across polls, new on rekey). */
  id: string;
  rxBytes: number;
  txBytes: number;
}

export interface IkeSa {
  /** IKE_SA unique id, unique per charon run. */
  uniqueId: string;
  connection: string;
  state: string;
  /** The EAP identity when charon lists one, else the IKE identity: the name the user authenticated as. */
  username: string;
  remoteAddress: string;
  /** Seconds since establishment, when charon says. */
  establishedSecAgo?: number;
  children: IkeChild[];
}

const str = (v: ViciValue | undefined): string | undefined => (typeof v === 'string' ? v : undefined);
const sec = (v: ViciValue | undefined): ViciMessage | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? v : undefined);

/**
 * The IKE_SAs in one vici message (a `list-sa` event, a `child-updown` event): every section
 * at the top level is one IKE_SA named by its connection. Counters charon does not give are
 * 0; SAs without a valid username are left out (they can belong to no user).
 */
export function parseIkeSas(msg: ViciMessage): IkeSa[] {
  const out: IkeSa[] = [];
  for (const [connection, v] of Object.entries(msg)) {
    const s = sec(v);
    if (!s) continue;
    const uniqueId = str(s['uniqueid']);
    const name = str(s['remote-eap-id']) ?? str(s['remote-xauth-id']) ?? str(s['remote-id']);
    if (!uniqueId || !/^\d{1,15}$/.test(uniqueId) || !name || !USERNAME_PATTERN.test(name)) continue;
    const children: IkeChild[] = [];
    for (const c of Object.values(sec(s['child-sas']) ?? {})) {
      const cs = sec(c);
      const id = cs && str(cs['uniqueid']);
      if (!cs || !id) continue;
      children.push({ id, rxBytes: counter(str(cs['bytes-in'])) ?? 0, txBytes: counter(str(cs['bytes-out'])) ?? 0 });
    }
    const established = counter(str(s['established']));
    out.push({
      uniqueId,
      connection,
      state: str(s['state']) ?? '',
      username: name,
      remoteAddress: str(s['remote-host']) ?? '',
      ...(established !== null ? { establishedSecAgo: established } : {}),
      children,
    });
  }
  return out;
}

/** An IKEv2 SA that ended, as recorded on the host before it is reported. */
export interface IkeEndedRecord {
  v: 1;
  runId: string;
  uniqueId: string;
  username: string;
  remoteAddress: string;
  connectedAt: number;
  rxBytes: number;
  txBytes: number;
}

export const IKE_ENDED_RE = /^ike-[a-z0-9]{4,32}-\d{1,15}\.rec$/;

export function parseIkeEnded(text: string): IkeEndedRecord | null {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    return null;
  }
  const o = r as Partial<IkeEndedRecord>;
  if (!o || o.v !== 1 || !RUN_ID_RE.test(String(o.runId)) || !/^\d{1,15}$/.test(String(o.uniqueId)) || !USERNAME_PATTERN.test(String(o.username))) return null;
  if (![o.rxBytes, o.txBytes, o.connectedAt].every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) return null;
  return o as IkeEndedRecord;
}

// ---- the client profile ----

/**
 * A strongSwan VPN client profile (`.sswan`, the JSON the strongSwan app for Android imports,
 * and what our tests configure `swanctl` from): IKEv2 with EAP-MSCHAPv2, the gateway's
 * address and identity, and the panel CA's certificate so the gateway can be verified. The
 * password is not in it; the subscription page shows it beside.
 */
export function renderClientProfile(o: { name: string; host: string; port: number; serverIdentity: string; username: string; caCertificatePem: string; uuid?: string }): string {
  check(/^[a-zA-Z0-9.:-]{1,253}$/.test(o.host), 'host', o.host);
  check(IDENTITY_RE.test(o.serverIdentity), 'serverIdentity', o.serverIdentity);
  const der = new X509Certificate(o.caCertificatePem).raw.toString('base64');
  const profile = {
    uuid: o.uuid ?? randomUUID(),
    name: o.name,
    type: 'ikev2-eap',
    remote: { addr: o.host, port: int(o.port, 'port', 1, 65535), id: o.serverIdentity, cert: der },
    local: { eap_id: username(o.username) },
  };
  return `${JSON.stringify(profile, null, 2)}\n`;
}
