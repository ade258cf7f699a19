import { createTracker } from '../../../native';
import type { ProtocolId, StatusFormat } from '../types';

/** One live connection read from a daemon's status text. */
export interface StatusTextSession {
  /** The daemon's connection id (OpenVPN's Client ID, WireGuard's `<interface>:<public key>`, ocserv's ID). */
  id: string;
  username: string;
  remoteAddress: string;
  rxBytes: number;
  txBytes: number;
  /** Unix seconds; 0 when the daemon does not say. */
  connectedAt: number;
}

/**
 * Reads one status text with the same parser accounting uses (the native addon, or its
 * identical fallback), for plugins that must look sessions up themselves, e.g. to find the
 * connection ids of a user to cut. There is one parser per format, so what a plugin cuts and
 * what accounting counts can never disagree about which rows are sessions.
 *
 * `complete` is false when the text was truncated or had malformed rows.
 *
 * @example
 * const { sessions } = parseStatusText({ format: 'openvpn-status3', protocol: 'openvpn', text });
 * for (const s of sessions.filter((s) => s.username === 'alice')) await mgmt.killClient(Number(s.id));
 */
export function parseStatusText(input: { format: StatusFormat; protocol: ProtocolId; text: string | Uint8Array; peerNames?: ReadonlyMap<string, string> }): {
  sessions: StatusTextSession[];
  complete: boolean;
} {
  // A fresh tracker per call: every row is "new", so rx/tx are the daemon's counters as printed.
  const tracker = createTracker();
  const scope = 's';
  const r = tracker.tick([{ kind: 'status-text', format: input.format, text: input.text, scope, protocol: input.protocol, serverId: 'kit', peerNames: input.peerNames }]);
  const sessions: StatusTextSession[] = [];
  for (const row of r.toRows()) {
    sessions.push({ id: row.key.slice(scope.length + 1), username: row.user, remoteAddress: row.remoteAddress, rxBytes: row.rx, txBytes: row.tx, connectedAt: row.connectedAt });
  }
  return { sessions, complete: r.polls[0]?.complete === true && r.polls[0]?.malformed === 0 };
}
