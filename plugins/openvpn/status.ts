import { USERNAME_PATTERN, type SessionEnded } from '../../core';

/*
 * Pure: OpenVPN's `status 3` text and the ended-session records of the disconnect hook, and the
 * one session identity both share.
 *
 * OpenVPN's Client ID would be the natural identity, but the disconnect hook never sees it (it
 * is not in a script's environment) and a restarted daemon counts it from 0 again. What both the
 * status rows and the hook do see, and what stays fixed for a session's whole life, is the
 * daemon run (pid and start time, `supervisor.epoch`), the session's virtual address (held by
 * one live session at a time) and its start second. The Real Address is left out on purpose: a
 * UDP client that floats to a new address keeps its session.
 */

/** The part of a session key after the scope: `<epoch>:<virtual address>:<connected since>`. */
export const openVpnSessionId = (epoch: string, virtualAddress: string, connectedSince: number | string): string => `${epoch}:${virtualAddress}:${connectedSince}`;

/** `<scope>:<epoch>:<virtual address>:<connected since>`, e.g. `main:1194udp:4242.1771:10.8.0.2:1796222444`. */
const SESSION_KEY_RE = /^(.+):(\d{1,10}\.\d{1,20}):(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,15})$/;

export function parseOpenVpnSessionKey(key: string): { scope: string; epoch: string; virtualAddress: string; connectedSince: number } | null {
  const m = SESSION_KEY_RE.exec(key);
  return m ? { scope: m[1]!, epoch: m[2]!, virtualAddress: m[3]!, connectedSince: Number(m[4]) } : null;
}

/** One `CLIENT_LIST` row of `status 3`. */
export interface StatusRow {
  clientId: number | undefined;
  commonName: string;
  /** Username when the client sent one (not `UNDEF`), else the common name. */
  username: string;
  realAddress: string;
  /** Empty while the client is still authenticating. */
  virtualAddress: string;
  connectedSince: number;
  bytesReceived: number;
  bytesSent: number;
}

const COLUMNS = {
  commonName: 'Common Name',
  realAddress: 'Real Address',
  virtualAddress: 'Virtual Address',
  bytesReceived: 'Bytes Received',
  bytesSent: 'Bytes Sent',
  connectedSince: 'Connected Since (time_t)',
  username: 'Username',
  clientId: 'Client ID',
} as const;

type ColumnIndex = Partial<Record<keyof typeof COLUMNS, number>>;

function columnsOf(headerFields: string[]): ColumnIndex {
  const index: ColumnIndex = {};
  for (const [k, name] of Object.entries(COLUMNS) as Array<[keyof typeof COLUMNS, string]>) {
    const i = headerFields.indexOf(name);
    if (i >= 0) index[k] = i;
  }
  return index;
}

const digits = (s: string | undefined): number | undefined => (s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : undefined);

/** Every well-formed `CLIENT_LIST` row (fields split on tabs; a row before its header is skipped). */
export function parseClientList(text: string): StatusRow[] {
  const rows: StatusRow[] = [];
  let cols: ColumnIndex | null = null;
  for (const raw of text.split('\n')) {
    const fields = raw.replace(/\r$/, '').split('\t');
    if (fields[0] === 'HEADER' && fields[1] === 'CLIENT_LIST') {
      cols = columnsOf(fields.slice(1));
      continue;
    }
    if (fields[0] !== 'CLIENT_LIST' || !cols) continue;
    const at = (k: keyof typeof COLUMNS) => (cols![k] === undefined ? undefined : fields[cols![k]!]);
    const rx = digits(at('bytesReceived'));
    const tx = digits(at('bytesSent'));
    const cn = at('commonName');
    if (rx === undefined || tx === undefined || cn === undefined) continue;
    const user = at('username');
    rows.push({
      clientId: digits(at('clientId')),
      commonName: cn,
      username: user && user !== 'UNDEF' ? user : cn,
      realAddress: at('realAddress') ?? '',
      virtualAddress: at('virtualAddress') ?? '',
      connectedSince: digits(at('connectedSince')) ?? 0,
      bytesReceived: rx,
      bytesSent: tx,
    });
  }
  return rows;
}

/**
 * `status 3` with each established session's Client ID replaced by its session id
 * ({@link openVpnSessionId}), so the accounting parser keys it `<scope>:<session id>`: the key
 * the disconnect hook's record carries. Rows still authenticating (no virtual address) are left
 * as they are; the parser skips them.
 */
export function withSessionIds(text: string, epoch: string): string {
  let cols: ColumnIndex | null = null;
  return text
    .split('\n')
    .map((raw) => {
      const cr = raw.endsWith('\r') ? '\r' : '';
      const fields = (cr ? raw.slice(0, -1) : raw).split('\t');
      if (fields[0] === 'HEADER' && fields[1] === 'CLIENT_LIST') {
        cols = columnsOf(fields.slice(1));
        return raw;
      }
      if (fields[0] !== 'CLIENT_LIST' || !cols) return raw;
      const { clientId, virtualAddress, connectedSince } = cols as ColumnIndex;
      if (clientId === undefined || virtualAddress === undefined || connectedSince === undefined) return raw;
      const vaddr = fields[virtualAddress];
      const since = digits(fields[connectedSince]);
      if (!vaddr || since === undefined || fields.length <= clientId) return raw;
      fields[clientId] = openVpnSessionId(epoch, vaddr, since);
      return fields.join('\t') + cr;
    })
    .join('\n');
}

/**
 * The client-disconnect hook: `client-disconnect "<script> <record dir> <instance key>"` with
 * `script-security 2`. OpenVPN runs it (its own child, so `$PPID` is the daemon and gives the
 * epoch) for every established client that ends, on SIGTERM too but not on SIGKILL. It writes one
 * record per session, temp file then rename, so the panel sees whole records or none. OpenVPN's
 * values are checked by shape and only expanded inside quotes: nothing a client sent is ever
 * parsed by the shell, and no value can add a line. The username is not recorded (the
 * certificate CN is the user); the CN comes last all the same, and the parser takes the first
 * value of each field.
 */
export const DISCONNECT_HOOK_SCRIPT = `#!/bin/sh
# polygate: OpenVPN client-disconnect hook. Managed by polygate; rewritten on every start.
dir=$1
instance=$2
stat=$(cat "/proc/$PPID/stat") || exit 0
set -- \${stat##*) }
epoch="$PPID.\${20}"
fail() { echo "polygate disconnect hook: $1; no record written" >&2; exit 0; }
for v in "$time_unix" "$bytes_received" "$bytes_sent" "\${20}"; do
  case $v in ''|*[!0-9]*) fail "a counter or time is missing" ;; esac
done
case $ifconfig_pool_remote_ip in ''|*[!0-9.]*) fail "no virtual address" ;; esac
case $instance in ''|*[!0-9a-z]*) fail "bad instance" ;; esac
case $common_name in ''|*[!A-Za-z0-9._-]*) fail "the common name is not a username" ;; esac
name="$epoch-$ifconfig_pool_remote_ip-$time_unix.rec"
tmp="$dir/.$name.$$.tmp"
printf 'v=1\\ninstance=%s\\nepoch=%s\\nvaddr=%s\\nsince=%s\\nrx=%s\\ntx=%s\\nremote=%s:%s\\ncn=%s\\n' \\
  "$instance" "$epoch" "$ifconfig_pool_remote_ip" "$time_unix" "$bytes_received" "$bytes_sent" \\
  "\${trusted_ip:-$trusted_ip6}" "$trusted_port" "$common_name" >"$tmp" && mv -f "$tmp" "$dir/$name"
exit 0
`;

/** File names the hook gives complete records (its temporary files start with a dot). */
export const ENDED_RECORD_NAME_RE = /^\d{1,10}\.\d{1,20}-\d{1,3}(?:\.\d{1,3}){3}-\d{1,15}\.rec$/;

const INSTANCE_KEY_RE = /^(\d{1,5})(udp|tcp)$/;

/**
 * The ended session a hook record holds, keyed as the live session was in polls; null when the
 * record is not one the hook writes (it is then dropped).
 */
export function parseEndedRecord(text: string, serverId: string, scopeOf: (port: number, proto: 'udp' | 'tcp') => string): SessionEnded | null {
  const v: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    // First value wins: a later line cannot override one the hook wrote.
    if (eq > 0 && !(line.slice(0, eq) in v)) v[line.slice(0, eq)] = line.slice(eq + 1);
  }
  if (v.v !== '1') return null;
  const inst = INSTANCE_KEY_RE.exec(v.instance ?? '');
  const since = digits(v.since);
  const rx = digits(v.rx);
  const tx = digits(v.tx);
  if (!inst || since === undefined || rx === undefined || tx === undefined) return null;
  if (!/^\d{1,10}\.\d{1,20}$/.test(v.epoch ?? '') || !/^\d{1,3}(?:\.\d{1,3}){3}$/.test(v.vaddr ?? '')) return null;
  const cn = v.cn ?? '';
  if (!USERNAME_PATTERN.test(cn)) return null;
  const remote = /^[0-9a-fA-F.:]{1,60}$/.test(v.remote ?? '') ? v.remote! : '';
  return {
    session: {
      sessionKey: `${scopeOf(Number(inst[1]), inst[2] as 'udp' | 'tcp')}:${openVpnSessionId(v.epoch!, v.vaddr!, since)}`,
      username: cn,
      protocol: 'openvpn',
      serverId,
      remoteAddress: remote,
      connectedAt: since,
      rxBytes: rx,
      txBytes: tx,
    },
    reason: 'disconnected',
  };
}
