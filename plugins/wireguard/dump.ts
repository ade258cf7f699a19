/**
 * Pure: `wg show <if> dump` → what accounting is handed, and which sessions just ended.
 *
 * WireGuard has no sessions, only peers whose counters grow for as long as the peer exists on
 * the interface. The accounting parser (`wg-dump`) reads `wg show all dump` lines and keys a
 * session by `<scope>:<first field>:<public key>`. This ledger turns peers into sessions:
 *
 * - a peer is online while its latest handshake is younger than the online window (180 s:
 *   WireGuard re-handshakes about every 120 s while traffic flows and refuses data on keys
 *   older than 180 s); a peer that never completed a handshake is not a session;
 * - each online period is its own session: the first field is a period number instead of the
 *   interface name, and counters are handed over relative to the peer's counters when the
 *   period began. So a peer coming back after an idle spell is a new connection whose counters
 *   start near zero, and nothing depends on how long core remembers the old one;
 * - a peer whose counters went down (re-created behind our back) starts a new period at zero;
 * - when a peer goes idle, leaves the dump, or is about to be removed, its period is reported
 *   ended with the counters read last, so its final bytes are counted exactly once.
 *
 * Periods are numbered per ledger. The scope names the interface run (the daemon's epoch), so
 * keys never repeat across restarts; a panel that adopts a running interface restores the
 * ledger from the snapshot the previous one kept beside it, so the keys it hands over stay the
 * same (the dump alone cannot say where an open period began).
 */

/** One peer line of `wg show <if> dump`. */
export interface DumpPeer {
  publicKey: string;
  presharedKey: string;
  /** `ip:port`, or '' when the peer has not been seen (`(none)`). */
  endpoint: string;
  allowedIps: string;
  /** Unix seconds; 0 = never. */
  latestHandshake: number;
  rx: number;
  tx: number;
}

export interface ParsedDump {
  /** The interface line: public key and listen port (null when the text has none). */
  device: { publicKey: string; listenPort: number } | null;
  peers: DumpPeer[];
  /** Lines that are neither an interface line (4 fields) nor a peer line (8 fields) or carry bad numbers. */
  malformed: number;
}

const DIGITS = /^\d{1,16}$/;

/** Decimal digits in text[a, b) as a number; -1 when empty, not digits, or beyond 2^53. */
function counterIn(text: string, a: number, b: number): number {
  if (a >= b) return -1;
  let v = 0;
  for (let i = a; i < b; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v <= Number.MAX_SAFE_INTEGER ? v : -1;
}

/**
 * Parses `wg show <if> dump` (tab-separated: the interface line has 4 fields: private key,
 * public key, listen port, fwmark; each peer line 8: public key, preshared key, endpoint,
 * allowed ips, latest handshake, rx, tx, persistent keepalive).
 */
export function parseDump(text: string): ParsedDump {
  const out: ParsedDump = { device: null, peers: [], malformed: 0 };
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!line) continue;
    const f = line.split('\t');
    if (f.length === 4 && out.device === null && out.peers.length === 0) {
      out.device = { publicKey: f[1]!, listenPort: Number(f[2]) || 0 };
      continue;
    }
    if (f.length !== 8 || !f[0] || !DIGITS.test(f[4]!) || !DIGITS.test(f[5]!) || !DIGITS.test(f[6]!)) {
      out.malformed++;
      continue;
    }
    out.peers.push({
      publicKey: f[0],
      presharedKey: f[1]!,
      endpoint: f[2] === '(none)' ? '' : f[2]!,
      allowedIps: f[3]!,
      latestHandshake: Number(f[4]),
      rx: Number(f[5]),
      tx: Number(f[6]),
    });
  }
  return out;
}

/** A session of one peer's online period, as the plugin reports it ended. */
export interface EndedPeriod {
  /** `<scope>:<period>:<public key>`, the key accounting tracks it under. */
  sessionKey: string;
  publicKey: string;
  remoteAddress: string;
  rx: number;
  tx: number;
  reason: string;
}

/** Whether a peer's track differs from what a first sighting in a dump would rebuild. */
const mattersAfterRestart = (t: PeerTrack) => t.used || t.open || t.baseRx > 0 || t.baseTx > 0;

interface PeerTrack {
  /** Current or last period number. */
  period: number;
  /** The period is open: handed to accounting as live and not reported ended. */
  open: boolean;
  /** The current period number was already handed to accounting (open or ended). */
  used: boolean;
  /** Raw counters where the current (or next) period starts. */
  baseRx: number;
  baseTx: number;
  /** Raw counters and endpoint read last. */
  rx: number;
  tx: number;
  endpoint: string;
}

export interface LedgerObservation {
  /** `wg show all dump` lines (first field = period) of the online peers, for the `wg-dump` parser. */
  text: string;
  /** Periods that ended since the last observation (idle, vanished, counters went down). */
  ended: EndedPeriod[];
  malformed: number;
  online: number;
}

/** What a ledger needs to hand over the same keys after a panel restart (see `snapshot`). */
export interface LedgerSnapshot {
  scope: string;
  nextPeriod: number;
  /** Public key → [period, open, used, baseRx, baseTx, rx, tx, endpoint]. */
  peers: Record<string, [number, boolean, boolean, number, number, number, number, string]>;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Default online window: WireGuard's REJECT_AFTER_TIME. */
export const ONLINE_WINDOW_SEC = 180;

/**
 * `wg show <if> dump` reduced on the host to the interface line and the peers whose last
 * handshake is younger than `$4` seconds, so a node's poll costs its online peers, not every
 * user (1000 offline peers were ~120 KB per tick over SSH). No data moves later than
 * REJECT_AFTER_TIME after a handshake, so with `$4` well above the online window a peer leaving
 * it is still listed, idle, with its final counters. Arguments: wg path, interface, keep seconds.
 * Exits 3 when wg printed nothing (it failed), so a failure never reads as "no peers".
 */
export const RECENT_DUMP_SCRIPT = `now=$(date +%s) || exit 1
"$1" show "$2" dump | awk -F '\t' -v now="$now" -v keep="$3" 'NR == 1 || ($5 > 0 && now - $5 < keep) { print } END { if (NR == 0) exit 3 }'`;

/** How far beyond the online window a partial dump still lists a peer: several missed polls. */
export const RECENT_DUMP_MARGIN_SEC = 600;

/**
 * The session bookkeeping of one interface run. `observe` every dump you read (polls and the
 * reads before removals); `takeEnded` before removing a peer.
 *
 * @example
 * const ledger = new PeerLedger('wg:pgwg0:1733086000123');
 * const { text, ended } = ledger.observe(dumpText, nowSec);
 * for (const e of ended) ctx.sessionEnded(...);
 * return { kind: 'status-text', format: 'wg-dump', texts: [{ scope: ledger.scope, text }], peerNames };
 */
export class PeerLedger {
  private readonly peers = new Map<string, PeerTrack>();
  private nextPeriod = 1;
  /**
   * A period opened, closed or was reported since the last `snapshot()`: the snapshot must be
   * written before the keys this ledger handed over can be relied on after a panel restart.
   */
  dirty = false;

  constructor(
    /** The accounting scope of this interface run, e.g. `wg:pgwg0:<start ms>`. */
    readonly scope: string,
    private readonly onlineWindowSec = ONLINE_WINDOW_SEC,
  ) {}

  sessionKey(period: number, publicKey: string): string {
    return `${this.scope}:${period}:${publicKey}`;
  }

  /**
   * Feeds one `wg show <if> dump`. Peers missing from a full dump are ended and forgotten. A
   * `partial` dump lists only peers with a recent handshake (see `RECENT_DUMP_SCRIPT`): a peer
   * missing from it is idle, not gone, and keeps its counters; an open period it had ends with
   * the counters read last (it left the window without being seen idle: polls were missed).
   */
  observe(dumpText: string, nowSec: number, options: { partial?: boolean } = {}): LedgerObservation {
    // Hand-rolled field scanning: this runs every tick over every peer (10,000 lines in a few ms).
    const ended: EndedPeriod[] = [];
    let out = '';
    let online = 0;
    let malformed = 0;
    const seen = new Set<string>();
    const text = dumpText;
    const n = text.length;
    const f = [0, 0, 0, 0, 0, 0, 0, 0, 0];
    let pos = 0;
    let first = true;
    while (pos < n) {
      let nl = text.indexOf('\n', pos);
      if (nl < 0) nl = n;
      let end = nl;
      if (end > pos && text.charCodeAt(end - 1) === 13) end--;
      const start = pos;
      pos = nl + 1;
      if (end === start) continue;
      // f[i] = start of field i, f[count] = end + 1
      let count = 0;
      f[0] = start;
      for (let q = start; count < 8; ) {
        const tab = text.indexOf('\t', q);
        if (tab < 0 || tab >= end) break;
        f[++count] = tab + 1;
        q = tab + 1;
      }
      count++;
      if (first && count === 4) {
        first = false;
        continue; // the interface line
      }
      first = false;
      f[count] = end + 1;
      if (count !== 8 || f[1]! - f[0]! < 2) {
        malformed++;
        continue;
      }
      const hs = counterIn(text, f[4]!, f[5]! - 1);
      const rx = counterIn(text, f[5]!, f[6]! - 1);
      const tx = counterIn(text, f[6]!, f[7]! - 1);
      if (hs < 0 || rx < 0 || tx < 0) {
        malformed++;
        continue;
      }
      const publicKey = text.slice(f[0], f[1]! - 1);
      const endpointText = text.slice(f[2], f[3]! - 1);
      const endpoint = endpointText === '(none)' ? '' : endpointText;
      seen.add(publicKey);
      let t = this.peers.get(publicKey);
      if (!t) {
        // A peer is added with zero counters: everything it shows is this ledger's to count.
        t = { period: this.nextPeriod++, open: false, used: false, baseRx: 0, baseTx: 0, rx: 0, tx: 0, endpoint: '' };
        this.peers.set(publicKey, t);
      }
      if (rx < t.rx || tx < t.tx) {
        // Counters went down: the peer was re-created. What the old one showed was counted.
        if (t.open) ended.push(this.endedOf(publicKey, t, 'counters-reset'));
        if (t.used || t.open) this.dirty = true;
        t.period = this.nextPeriod++;
        t.open = false;
        t.used = false;
        t.baseRx = 0;
        t.baseTx = 0;
      }
      t.rx = rx;
      t.tx = tx;
      if (endpoint) t.endpoint = endpoint;
      if (hs > 0 && nowSec - hs < this.onlineWindowSec) {
        if (!t.open) {
          if (t.used) t.period = this.nextPeriod++;
          t.open = true;
          t.used = true;
          this.dirty = true;
        }
        online++;
        out += `${t.period}\t${publicKey}\t(none)\t${endpoint || '(none)'}\t${text.slice(f[3], f[4]! - 1)}\t${hs}\t${rx - t.baseRx}\t${tx - t.baseTx}\toff\n`;
      } else if (t.open) {
        ended.push(this.endedOf(publicKey, t, 'idle'));
        this.closeAt(t);
      }
    }
    for (const [publicKey, t] of this.peers) {
      if (seen.has(publicKey)) continue;
      if (options.partial) {
        if (t.open) {
          ended.push(this.endedOf(publicKey, t, 'idle'));
          this.closeAt(t);
        }
        continue;
      }
      if (t.open) ended.push(this.endedOf(publicKey, t, 'peer-gone'));
      if (mattersAfterRestart(t)) this.dirty = true;
      this.peers.delete(publicKey);
    }
    return { text: out, ended, malformed, online };
  }

  /**
   * The final session of a peer about to be removed, from the dump just read (call `observe`
   * with it first), or null when it holds no bytes accounting has not been told about. The peer
   * is forgotten: if it is added again it starts from zero in a new period.
   */
  takeEnded(publicKey: string, reason: string): EndedPeriod | null {
    const t = this.peers.get(publicKey);
    if (!t) return null;
    this.peers.delete(publicKey);
    if (mattersAfterRestart(t)) this.dirty = true;
    // Bytes after the last period closed (a handshake that was never polled) are a session too.
    if (t.open) return this.endedOf(publicKey, t, reason);
    if (t.rx > t.baseRx || t.tx > t.baseTx) {
      if (t.used) t.period = this.nextPeriod++;
      return this.endedOf(publicKey, t, reason);
    }
    return null;
  }

  /**
   * The ledger's state for `PeerLedger.restore`, and clears `dirty`. Only peers whose period
   * was handed over or whose counters start above zero are kept: any other peer seen again in a
   * dump is rebuilt exactly as it was (a period nobody saw, counted from zero).
   */
  snapshot(): LedgerSnapshot {
    const peers: LedgerSnapshot['peers'] = {};
    for (const [key, t] of this.peers) {
      if (mattersAfterRestart(t)) peers[key] = [t.period, t.open, t.used, t.baseRx, t.baseTx, t.rx, t.tx, t.endpoint];
    }
    this.dirty = false;
    return { scope: this.scope, nextPeriod: this.nextPeriod, peers };
  }

  /**
   * The ledger a snapshot describes, when it is of `scope` (the same interface run); null when
   * it is of another run or unreadable (counters of a new run start from zero: a fresh ledger).
   */
  static restore(snapshot: unknown, scope: string, onlineWindowSec = ONLINE_WINDOW_SEC): PeerLedger | null {
    const s = snapshot as Partial<LedgerSnapshot> | null;
    if (!s || typeof s !== 'object' || s.scope !== scope || !isCount(s.nextPeriod) || !s.peers || typeof s.peers !== 'object') return null;
    const ledger = new PeerLedger(scope, onlineWindowSec);
    ledger.nextPeriod = Math.max(1, s.nextPeriod);
    for (const [key, v] of Object.entries(s.peers)) {
      if (!Array.isArray(v) || v.length !== 8) return null;
      const [period, open, used, baseRx, baseTx, rx, tx, endpoint] = v;
      if (!isCount(period) || period >= ledger.nextPeriod || typeof open !== 'boolean' || typeof used !== 'boolean') return null;
      if (![baseRx, baseTx, rx, tx].every(isCount) || typeof endpoint !== 'string') return null;
      ledger.peers.set(key, { period, open, used, baseRx, baseTx, rx, tx, endpoint });
    }
    return ledger;
  }

  /** Ends every open period (the interface is being stopped). */
  endAll(reason: string): EndedPeriod[] {
    const out: EndedPeriod[] = [];
    for (const key of [...this.peers.keys()]) {
      const e = this.takeEnded(key, reason);
      if (e) out.push(e);
    }
    return out;
  }

  private endedOf(publicKey: string, t: PeerTrack, reason: string): EndedPeriod {
    // A reported key must never be handed out again, also by a ledger restored after a crash.
    this.dirty = true;
    return { sessionKey: this.sessionKey(t.period, publicKey), publicKey, remoteAddress: t.endpoint, rx: t.rx - t.baseRx, tx: t.tx - t.baseTx, reason };
  }

  /** The next period starts at the counters the ended one was reported with. */
  private closeAt(t: PeerTrack): void {
    this.dirty = true;
    t.open = false;
    t.baseRx = t.rx;
    t.baseTx = t.tx;
  }
}
