import type { LiveSession } from '../../core';

/*
 * Pure parser of OpenVPN's `status 3` output (management `status 3`, or a status file with
 * `status-version 3`): tab-separated, one record per line, `HEADER CLIENT_LIST …` naming
 * the columns of the `CLIENT_LIST` rows. Columns are found by header name, so an OpenVPN
 * that adds or moves columns still parses; without a header the 2.6 order is assumed.
 */

/** One `CLIENT_LIST` row. Counters are cumulative for that connection. */
export interface Status3Client {
  commonName: string;
  /** As OpenVPN prints it: `10.99.7.2:52289` (address:port). */
  realAddress: string;
  /** Empty while the connection is still being authenticated. */
  virtualAddress: string;
  virtualIpv6Address: string;
  bytesReceived: number;
  bytesSent: number;
  /** Unix seconds. */
  connectedSince: number;
  /** `UNDEF` when the client sent none. */
  username: string;
  clientId: string;
  peerId: string;
  cipher: string;
}

export interface Status3 {
  /** The `TIME` record (unix seconds), when present. */
  time: number | undefined;
  clients: Status3Client[];
}

/** Column order of OpenVPN 2.4–2.6 when no HEADER line is present. */
const DEFAULT_COLUMNS = [
  'Common Name',
  'Real Address',
  'Virtual Address',
  'Virtual IPv6 Address',
  'Bytes Received',
  'Bytes Sent',
  'Connected Since',
  'Connected Since (time_t)',
  'Username',
  'Client ID',
  'Peer ID',
  'Data Channel Cipher',
];

export function parseStatus3(text: string): Status3 {
  let columns = DEFAULT_COLUMNS;
  let time: number | undefined;
  const clients: Status3Client[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!line) continue;
    const f = line.split('\t');
    if (f[0] === 'HEADER' && f[1] === 'CLIENT_LIST') {
      columns = f.slice(2);
    } else if (f[0] === 'TIME') {
      const t = Number(f[2]);
      if (Number.isFinite(t)) time = t;
    } else if (f[0] === 'CLIENT_LIST') {
      const get = (name: string) => {
        const i = columns.indexOf(name);
        return i < 0 ? '' : (f[i + 1] ?? '');
      };
      const num = (name: string) => {
        const v = Number(get(name));
        return Number.isFinite(v) && v >= 0 ? v : 0;
      };
      clients.push({
        commonName: get('Common Name'),
        realAddress: get('Real Address'),
        virtualAddress: get('Virtual Address'),
        virtualIpv6Address: get('Virtual IPv6 Address'),
        bytesReceived: num('Bytes Received'),
        bytesSent: num('Bytes Sent'),
        connectedSince: num('Connected Since (time_t)'),
        username: get('Username'),
        clientId: get('Client ID'),
        peerId: get('Peer ID'),
        cipher: get('Data Channel Cipher'),
      });
    }
  }
  return { time, clients };
}

/**
 * The session key of one OpenVPN connection: OpenVPN's client id is unique within one
 * process run, so the scope (`<serverId>:<port><proto>`) makes it unique across instances,
 * and `connectedAt` tells a reused id after a restart apart.
 */
export const openVpnSessionKey = (scope: string, clientId: string | number): string => `${scope}:${clientId}`;

/** `main:1194udp`. */
export const openVpnScope = (serverId: string, port: number, proto: 'udp' | 'tcp'): string => `${serverId}:${port}${proto}`;

/** `10.99.7.2:52289` → `10.99.7.2`; `[2001:db8::1]:443` → `2001:db8::1`; anything else unchanged. */
export function addressWithoutPort(real: string): string {
  const v4 = /^(?:[a-z0-9-]+:)?(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(real);
  if (v4) return v4[1]!;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:\d+$/.exec(real);
  if (v6) return v6[1]!;
  return real;
}

/**
 * Live sessions of one instance. Rows without a virtual address are connections still
 * being authenticated (or being refused): they are not sessions and are left out. The
 * username is the certificate CN, which the auth decider made equal to the login name.
 */
export function sessionsFromStatus3(text: string, scope: string, serverId: string): LiveSession[] {
  return parseStatus3(text)
    .clients.filter((c) => c.commonName !== '' && (c.virtualAddress !== '' || c.virtualIpv6Address !== ''))
    .map((c) => ({
      sessionKey: openVpnSessionKey(scope, c.clientId),
      username: c.commonName,
      protocol: 'openvpn' as const,
      serverId,
      remoteAddress: addressWithoutPort(c.realAddress),
      connectedAt: c.connectedSince,
      rxBytes: c.bytesReceived,
      txBytes: c.bytesSent,
    }));
}
