/**
 * TypeScript implementation of the accounting tracker, used when the addon is not built (or
 * POLYGATE_FORCE_FALLBACK=1). It follows native/src/tracker.cc and parsers.cc rule for rule, and
 * the same test suite (including a randomized differential test) runs against both.
 *
 * Parsing rules (both implementations):
 * - Lines end at '\n'; one trailing '\r' is dropped; a last line without '\n' counts.
 * - Counters are decimal digits only, non-empty, at most 2^53-1; anything else makes the row
 *   malformed. A poll with a malformed row is incomplete: nothing vanishes in its scope.
 * - openvpn-status3: `HEADER\tCLIENT_LIST\t…` names the columns (Common Name, Bytes Received and
 *   Bytes Sent required; Real Address, Virtual Address, Virtual IPv6 Address, Connected Since
 *   (time_t), Username, Client ID optional); a later HEADER CLIENT_LIST replaces it. A
 *   `CLIENT_LIST` row before a valid header, or with fewer fields than the header needs, is
 *   malformed; a row with neither a virtual address nor a virtual IPv6 address (when the header
 *   has either column) is a connection still authenticating: skipped, not a session; then bad
 *   numbers make it malformed. User = Username unless empty or `UNDEF`, else Common Name. Key = scope:ClientID (an empty Client ID is malformed), or
 *   scope:CommonName:RealAddress without that column. Complete needs a valid header and `END`.
 * - wg-dump: blank lines skipped; 5 fields = interface line; 9 fields = peer (interface, public
 *   key, psk, endpoint, allowed ips, latest handshake, rx, tx, keepalive); anything else, an empty
 *   interface/public key or bad numbers is malformed. Handshake 0 = not a session. Endpoint
 *   `(none)` → ''. connectedAt = 0. Key = scope:interface:publickey.
 * - ocserv-json: a JSON array; elements that are not objects, and objects without a digits-only
 *   ID (number, or non-empty string), a string Username, or RX/TX (number or digit string) are
 *   malformed; raw_connected_at is optional (0), Remote IP optional (non-strings → ''). For
 *   duplicate fields the last wins. Strings are scanned with "backslash escapes the next
 *   character" and only decoded when used (invalid escapes then make the object malformed;
 *   lone \u surrogates become U+FFFD). Numbers are runs of [0-9+-.eE]. Nesting deeper than 64 or
 *   any syntax error stops parsing: the poll is incomplete, rows before the error count.
 */
import type { Engine, PackedSamples, PreparedPoll, RawEnded, RawTick, RawVanished } from './engine';
import type { TrackedSession } from './types';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const LIVE = 1;
const ENDED = 2;
const F_NEW = 1;
const F_RESET = 2;
const F_RECONNECT = 4;
const F_REVIVED = 8;
const F_REPEAT = 16;

interface Entry {
  key: string;
  user: number;
  scope: number;
  rx: number;
  tx: number;
  connectedAt: number;
  state: number;
  /** Tick in which it was last seen. */
  seen: number;
}

interface Scope {
  name: string;
  polledTick: number;
  incomplete: boolean;
}

/** Decimal counter in text[a, b); -1 when malformed. */
function counter(text: string, a: number, b: number): number {
  if (a >= b) return -1;
  let v = 0;
  for (let i = a; i < b; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
    if (v > MAX_SAFE) return -1;
  }
  return v;
}

function counterOf(s: string): number {
  return counter(s, 0, s.length);
}

function hexAt(s: string, i: number): number {
  let v = 0;
  for (let k = 0; k < 4; k++) {
    const c = s.charCodeAt(i + k);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else return -1;
    v = (v << 4) | d;
  }
  return v;
}

/** JSON string body text[a, b) → string; null on an invalid escape. */
function decodeJson(s: string, a: number, b: number): string | null {
  let out = '';
  let i = a;
  while (i < b) {
    const bs = s.indexOf('\\', i);
    if (bs < 0 || bs >= b) {
      out += s.slice(i, b);
      break;
    }
    out += s.slice(i, bs);
    if (bs + 1 >= b) return null;
    const c = s.charCodeAt(bs + 1);
    i = bs + 2;
    switch (c) {
      case 34: out += '"'; break;
      case 92: out += '\\'; break;
      case 47: out += '/'; break;
      case 98: out += '\b'; break;
      case 102: out += '\f'; break;
      case 110: out += '\n'; break;
      case 114: out += '\r'; break;
      case 116: out += '\t'; break;
      case 117: {
        if (b - i < 4) return null;
        let cp = hexAt(s, i);
        if (cp < 0) return null;
        i += 4;
        if (cp >= 0xd800 && cp <= 0xdbff && b - i >= 6 && s.charCodeAt(i) === 92 && s.charCodeAt(i + 1) === 117) {
          const lo = hexAt(s, i + 2);
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
          }
        }
        out += cp >= 0xd800 && cp <= 0xdfff ? '\ufffd' : String.fromCodePoint(cp);
        break;
      }
      default:
        return null;
    }
  }
  return out;
}

const K_ABSENT = 0;
const K_STR = 1;
const K_NUM = 2;
const K_LIT = 3;
const K_COMPOSITE = 4;

class JsonScan {
  p = 0;
  /** Next backslash at or after p (text.length when none): keeps string scanning linear. */
  private bs = -1;
  // last value read
  kind = K_ABSENT;
  esc = false;
  a = 0;
  b = 0;

  constructor(private readonly s: string) {}

  ws(): boolean {
    const s = this.s;
    const n = s.length;
    let p = this.p;
    while (p < n) {
      const c = s.charCodeAt(p);
      if (c !== 32 && c !== 10 && c !== 13 && c !== 9) break;
      p++;
    }
    this.p = p;
    return p < n;
  }

  at(c: number): boolean {
    return this.p < this.s.length && this.s.charCodeAt(this.p) === c;
  }

  /** At '"': sets a/b to the body and esc. */
  str(): boolean {
    const s = this.s;
    const n = s.length;
    let p = ++this.p;
    const start = p;
    this.esc = false;
    for (;;) {
      const q = s.indexOf('"', p);
      if (this.bs < p) {
        const x = s.indexOf('\\', p);
        this.bs = x < 0 ? n : x;
      }
      if (this.bs < n && (q < 0 || this.bs < q)) {
        this.esc = true;
        if (n - this.bs < 2) return false;
        p = this.bs + 2;
        continue;
      }
      if (q < 0) return false;
      this.a = start;
      this.b = q;
      this.p = q + 1;
      return true;
    }
  }

  value(depth: number): boolean {
    if (!this.ws()) return false;
    const s = this.s;
    const c = s.charCodeAt(this.p);
    if (c === 34) {
      this.kind = K_STR;
      return this.str();
    }
    if (c === 45 || (c >= 48 && c <= 57)) {
      const start = this.p;
      let p = this.p;
      const n = s.length;
      while (p < n) {
        const d = s.charCodeAt(p);
        if ((d >= 48 && d <= 57) || d === 45 || d === 43 || d === 46 || d === 101 || d === 69) p++;
        else break;
      }
      this.p = p;
      this.kind = K_NUM;
      this.esc = false;
      this.a = start;
      this.b = p;
      return true;
    }
    if (c === 123 || c === 91) {
      const ok = this.composite(depth); // (inner values overwrite kind/a/b)
      this.kind = K_COMPOSITE;
      return ok;
    }
    this.kind = K_LIT;
    for (const lit of ['true', 'false', 'null']) {
      if (s.startsWith(lit, this.p)) {
        this.p += lit.length;
        return true;
      }
    }
    return false;
  }

  composite(depth: number): boolean {
    if (depth >= 64) return false;
    const s = this.s;
    const open = s.charCodeAt(this.p++);
    const close = open === 123 ? 125 : 93;
    if (!this.ws()) return false;
    if (s.charCodeAt(this.p) === close) {
      this.p++;
      return true;
    }
    for (;;) {
      if (open === 123) {
        if (!this.ws() || !this.at(34)) return false;
        if (!this.str()) return false;
        if (!this.ws() || !this.at(58)) return false;
        this.p++;
      }
      if (!this.value(depth + 1)) return false;
      if (!this.ws()) return false;
      const c = s.charCodeAt(this.p);
      if (c === 44) {
        this.p++;
        continue;
      }
      if (c === close) {
        this.p++;
        return true;
      }
      return false;
    }
  }
}

const FIELD_ID = 0;
const FIELD_USER = 1;
const FIELD_REMOTE = 2;
const FIELD_RX = 3;
const FIELD_TX = 4;
const FIELD_SINCE = 5;
const OCSERV_FIELDS: ReadonlyMap<string, number> = new Map([
  ['ID', FIELD_ID],
  ['Username', FIELD_USER],
  ['Remote IP', FIELD_REMOTE],
  ['RX', FIELD_RX],
  ['TX', FIELD_TX],
  ['raw_connected_at', FIELD_SINCE],
]);

interface JsonVal {
  kind: number;
  esc: boolean;
  a: number;
  b: number;
}

const OVPN_ROLES: ReadonlyMap<string, number> = new Map([
  ['Common Name', 1],
  ['Real Address', 2],
  ['Bytes Received', 3],
  ['Bytes Sent', 4],
  ['Connected Since (time_t)', 5],
  ['Username', 6],
  ['Client ID', 7],
  ['Virtual Address', 8],
  ['Virtual IPv6 Address', 9],
]);
const R_CN = 1;
const R_REAL = 2;
const R_RX = 3;
const R_TX = 4;
const R_SINCE = 5;
const R_USER = 6;
const R_CID = 7;
const R_VADDR = 8;
const R_VADDR6 = 9;
const R_COUNT = 10;

export class FallbackEngine implements Engine {
  private entries = new Map<string, Entry>();
  private users: string[] = [];
  private userIds = new Map<string, number>();
  private userTick: number[] = [];
  private usersReported = 0;
  private scopes: Scope[] = [];
  private scopeIds = new Map<string, number>();
  private tickNo = 0;

  // outputs
  private cap = 0;
  private rxd: Float64Array = new Float64Array(0);
  private txd: Float64Array = new Float64Array(0);
  private rxc: Float64Array = new Float64Array(0);
  private txc: Float64Array = new Float64Array(0);
  private cat: Float64Array = new Float64Array(0);
  private ruser: Uint32Array = new Uint32Array(0);
  private rflags: Uint8Array = new Uint8Array(0);
  private rowKeys: string[] = [];
  private rowRemotes: string[] = [];
  private rowCount = 0;
  private ucap = 0;
  private urx: Float64Array = new Float64Array(0);
  private utx: Float64Array = new Float64Array(0);
  private ulive: Uint32Array = new Uint32Array(0);
  private active: number[] = [];
  private vanished: RawVanished[] = [];
  private pollStats: number[] = [];

  // per poll
  private curScope = -1;
  private malformed = 0;
  private ignored = 0;
  private resolve: ((publicKey: string) => string) | undefined;

  tick(polls: readonly PreparedPoll[]): RawTick {
    this.tickNo++;
    for (const u of this.active) {
      this.urx[u] = 0;
      this.utx[u] = 0;
      this.ulive[u] = 0;
    }
    this.active = [];
    this.rowCount = 0;
    this.rowKeys = [];
    this.rowRemotes = [];
    this.vanished = [];
    this.pollStats = [];
    for (const poll of polls) {
      const sid = this.internScope(poll.scope);
      const sc = this.scopes[sid];
      if (sc.polledTick !== this.tickNo) {
        sc.polledTick = this.tickNo;
        sc.incomplete = false;
      }
      this.curScope = sid;
      this.malformed = 0;
      this.ignored = 0;
      const rowStart = this.rowCount;
      let complete: boolean;
      if (poll.format === 3) {
        this.resolve = undefined;
        complete = this.feedSamples(poll.samples);
      } else {
        this.resolve = poll.resolve;
        const text = typeof poll.text === 'string' ? poll.text : Buffer.from(poll.text.buffer, poll.text.byteOffset, poll.text.byteLength).toString('utf8');
        const prefix = poll.scope + ':';
        if (poll.format === 0) complete = this.parseOpenVpn(text, prefix);
        else if (poll.format === 1) complete = this.parseWg(text, prefix);
        else complete = this.parseOcserv(text, prefix);
        this.resolve = undefined;
      }
      if (!complete) sc.incomplete = true;
      this.pollStats.push(rowStart, this.rowCount - rowStart, this.malformed, this.ignored, complete ? 1 : 0);
    }
    // Vanish: tracked in a scope polled completely this tick, not seen in it.
    const t = this.tickNo;
    for (const [key, e] of this.entries) {
      const sc = this.scopes[e.scope];
      if (sc.polledTick !== t || sc.incomplete || e.seen === t) continue;
      if (e.state === LIVE) {
        this.vanished.push({
          key,
          scope: sc.name,
          user: this.users[e.user],
          rx: e.rx,
          tx: e.tx,
          connectedAt: e.connectedAt,
        });
      }
      this.entries.delete(key);
    }
    this.ensureUsers(this.users.length);
    const newUsers = this.users.slice(this.usersReported);
    this.usersReported = this.users.length;
    return {
      tick: t,
      rowCount: this.rowCount,
      rxDelta: this.rxd,
      txDelta: this.txd,
      rx: this.rxc,
      tx: this.txc,
      connectedAt: this.cat,
      user: this.ruser,
      flags: this.rflags,
      userRxDelta: this.urx,
      userTxDelta: this.utx,
      userLive: this.ulive,
      activeUsers: Uint32Array.from(this.active),
      newUsers,
      vanished: this.vanished,
      polls: Float64Array.from(this.pollStats),
    };
  }

  keyAt(row: number): string {
    return this.rowKeys[row];
  }

  remoteAt(row: number): string {
    return this.rowRemotes[row];
  }

  ended(
    key: string,
    rx: number,
    tx: number,
    connectedAt: number | undefined,
    user: string | undefined,
    scope: string | undefined,
  ): RawEnded | null {
    const e = this.entries.get(key);
    if (!e) {
      if (user === undefined) return null;
      const uid = this.intern(user);
      const at = connectedAt ?? 0;
      let scopeName: string | undefined;
      if (scope !== undefined) {
        const sid = this.internScope(scope);
        this.entries.set(key, { key, user: uid, scope: sid, rx, tx, connectedAt: at, state: ENDED, seen: 0 });
        scopeName = this.scopes[sid].name;
      }
      return { known: false, user: this.users[uid], scope: scopeName, rxDelta: rx, txDelta: tx, rx, tx, connectedAt: at };
    }
    const at = connectedAt ?? e.connectedAt;
    let uid = e.user;
    if (user !== undefined && user.length > 0 && this.users[uid].length === 0) uid = this.intern(user);
    let drx: number;
    let dtx: number;
    if (e.state === ENDED && at === e.connectedAt && rx <= e.rx && tx <= e.tx) {
      drx = 0;
      dtx = 0;
      rx = e.rx;
      tx = e.tx;
    } else if (at !== e.connectedAt || rx < e.rx || tx < e.tx) {
      drx = rx;
      dtx = tx;
    } else {
      drx = rx - e.rx;
      dtx = tx - e.tx;
    }
    e.rx = rx;
    e.tx = tx;
    e.connectedAt = at;
    e.user = uid;
    e.state = ENDED;
    return {
      known: true,
      user: this.users[uid],
      scope: this.scopes[e.scope].name,
      rxDelta: drx,
      txDelta: dtx,
      rx,
      tx,
      connectedAt: at,
    };
  }

  seed(key: string, scope: string, user: string, rx: number, tx: number, connectedAt: number, ended: boolean): void {
    const sid = this.internScope(scope);
    const uid = this.intern(user);
    let e = this.entries.get(key);
    if (!e) {
      e = { key, user: uid, scope: sid, rx, tx, connectedAt, state: LIVE, seen: 0 };
      this.entries.set(key, e);
    }
    e.scope = sid;
    e.user = uid;
    e.rx = rx;
    e.tx = tx;
    e.connectedAt = connectedAt;
    e.state = ended ? ENDED : LIVE;
  }

  forget(key: string): boolean {
    return this.entries.delete(key);
  }

  snapshot(): TrackedSession[] {
    const out: TrackedSession[] = [];
    for (const e of this.entries.values()) {
      out.push({
        key: e.key,
        scope: this.scopes[e.scope].name,
        user: this.users[e.user],
        rx: e.rx,
        tx: e.tx,
        connectedAt: e.connectedAt,
        ended: e.state === ENDED,
      });
    }
    return out;
  }

  size(): number {
    return this.entries.size;
  }

  reset(): void {
    this.entries.clear();
    for (const u of this.active) {
      this.urx[u] = 0;
      this.utx[u] = 0;
      this.ulive[u] = 0;
    }
    this.active = [];
    this.users = [];
    this.userIds.clear();
    this.userTick = [];
    this.usersReported = 0;
    this.scopes = [];
    this.scopeIds.clear();
    this.rowCount = 0;
    this.rowKeys = [];
    this.rowRemotes = [];
    this.vanished = [];
    this.pollStats = [];
  }

  // ---------------------------------------------------------------------------------------
  // core

  private internScope(name: string): number {
    let id = this.scopeIds.get(name);
    if (id === undefined) {
      id = this.scopes.length;
      this.scopes.push({ name, polledTick: 0, incomplete: false });
      this.scopeIds.set(name, id);
    }
    return id;
  }

  private intern(name: string): number {
    let id = this.userIds.get(name);
    if (id === undefined) {
      id = this.users.length;
      this.users.push(name);
      this.userTick.push(0);
      this.userIds.set(name, id);
    }
    return id;
  }

  private resolveName(publicKey: string): string {
    return this.resolve ? this.resolve(publicKey) : '';
  }

  private ensureRows(n: number): void {
    if (n <= this.cap) return;
    const cap = Math.max(n, this.cap * 2, 1024);
    const grow64 = (a: Float64Array): Float64Array => {
      const b = new Float64Array(cap);
      b.set(a.subarray(0, this.rowCount));
      return b;
    };
    this.rxd = grow64(this.rxd);
    this.txd = grow64(this.txd);
    this.rxc = grow64(this.rxc);
    this.txc = grow64(this.txc);
    this.cat = grow64(this.cat);
    const u = new Uint32Array(cap);
    u.set(this.ruser.subarray(0, this.rowCount));
    this.ruser = u;
    const f = new Uint8Array(cap);
    f.set(this.rflags.subarray(0, this.rowCount));
    this.rflags = f;
    this.cap = cap;
  }

  private ensureUsers(n: number): void {
    if (n <= this.ucap) return;
    const cap = Math.max(n, this.ucap * 2, 1024);
    const a = new Float64Array(cap);
    a.set(this.urx);
    this.urx = a;
    const b = new Float64Array(cap);
    b.set(this.utx);
    this.utx = b;
    const c = new Uint32Array(cap);
    c.set(this.ulive);
    this.ulive = c;
    this.ucap = cap;
  }

  /**
   * One session row. `user` is the username, or (when `byPublicKey`) the WireGuard public key to
   * resolve — only when the key is new or its username is still unknown.
   */
  private row(key: string, user: string, byPublicKey: boolean, rx: number, tx: number, at: number, remote: string): void {
    const t = this.tickNo;
    let e = this.entries.get(key);
    let flags = 0;
    let drx: number;
    let dtx: number;
    let uid: number;
    let first: boolean;
    if (e === undefined) {
      uid = this.intern(byPublicKey ? this.resolveName(user) : user);
      e = { key, user: uid, scope: this.curScope, rx, tx, connectedAt: at, state: LIVE, seen: t };
      this.entries.set(key, e);
      first = true;
      drx = rx;
      dtx = tx;
      flags = F_NEW;
    } else {
      if (e.state === ENDED) {
        if (at === e.connectedAt && rx <= e.rx && tx <= e.tx) {
          e.seen = t;
          this.ignored++;
          return;
        }
        e.state = LIVE;
        flags |= F_REVIVED;
      }
      if (byPublicKey) {
        uid = this.users[e.user].length !== 0 ? e.user : this.intern(this.resolveName(user));
      } else {
        uid = this.users[e.user] === user ? e.user : this.intern(user);
      }
      if (at !== e.connectedAt) {
        flags |= F_RECONNECT;
        drx = rx;
        dtx = tx;
      } else if (rx < e.rx || tx < e.tx) {
        flags |= F_RESET;
        drx = rx;
        dtx = tx;
      } else {
        drx = rx - e.rx;
        dtx = tx - e.tx;
      }
      e.rx = rx;
      e.tx = tx;
      e.connectedAt = at;
      e.user = uid;
      e.scope = this.curScope;
      first = e.seen !== t;
      if (first) e.seen = t;
      else flags |= F_REPEAT;
    }
    const r = this.rowCount;
    if (r >= this.cap) this.ensureRows(r + 1);
    this.rxd[r] = drx;
    this.txd[r] = dtx;
    this.rxc[r] = rx;
    this.txc[r] = tx;
    this.cat[r] = at;
    this.ruser[r] = uid;
    this.rflags[r] = flags;
    this.rowKeys.push(key);
    this.rowRemotes.push(remote);
    this.rowCount = r + 1;
    if (uid >= this.ucap) this.ensureUsers(this.users.length);
    if (this.userTick[uid] !== t) {
      this.userTick[uid] = t;
      this.active.push(uid);
    }
    this.urx[uid] += drx;
    this.utx[uid] += dtx;
    if (first) this.ulive[uid] += 1;
  }

  // ---------------------------------------------------------------------------------------
  // inputs

  private feedSamples(p: PackedSamples): boolean {
    const { joined, lengths, numbers, remotes, count } = p;
    let pos = 0;
    for (let i = 0; i < count; i++) {
      const key = joined.slice(pos, (pos += lengths[i * 2]));
      const user = joined.slice(pos, (pos += lengths[i * 2 + 1]));
      const j = i * 3;
      this.row(key, user, false, numbers[j], numbers[j + 1], numbers[j + 2], remotes[i]);
    }
    return true;
  }

  private parseOpenVpn(text: string, prefix: string): boolean {
    const n = text.length;
    let valid = false;
    let roleAt: number[] = [];
    let maxIdx = 0;
    const idx = new Array<number>(R_COUNT).fill(-1);
    let endSeen = false;
    const fa = new Array<number>(R_COUNT).fill(0);
    const fb = new Array<number>(R_COUNT).fill(0);
    let pos = 0;
    while (pos < n) {
      let nl = text.indexOf('\n', pos);
      if (nl < 0) nl = n;
      let e = nl;
      if (e > pos && text.charCodeAt(e - 1) === 13) e--;
      const len = e - pos;
      const s = pos;
      pos = nl + 1;
      if (len >= 11 && text.startsWith('CLIENT_LIST', s) && (len === 11 || text.charCodeAt(s + 11) === 9)) {
        if (!valid || len === 11) {
          this.malformed++;
          continue;
        }
        for (let r = 1; r < R_COUNT; r++) fa[r] = fb[r] = 0;
        let q = s + 12;
        let col = 1;
        let bad = false;
        for (;;) {
          let fe = text.indexOf('\t', q);
          if (fe < 0 || fe > e) fe = e;
          const r = roleAt[col];
          if (r !== 0) {
            fa[r] = q;
            fb[r] = fe;
          }
          if (col === maxIdx) break;
          if (fe >= e) {
            bad = true;
            break;
          }
          q = fe + 1;
          col++;
        }
        if (bad) {
          this.malformed++;
          continue;
        }
        if ((idx[R_VADDR] >= 0 || idx[R_VADDR6] >= 0) && fb[R_VADDR] === fa[R_VADDR] && fb[R_VADDR6] === fa[R_VADDR6]) {
          continue; // no virtual address yet: still authenticating (or being refused), not a session
        }
        const rx = counter(text, fa[R_RX], fb[R_RX]);
        const tx = counter(text, fa[R_TX], fb[R_TX]);
        const since = idx[R_SINCE] >= 0 ? counter(text, fa[R_SINCE], fb[R_SINCE]) : 0;
        if (rx < 0 || tx < 0 || since < 0) {
          this.malformed++;
          continue;
        }
        let user = text.slice(fa[R_CN], fb[R_CN]);
        if (idx[R_USER] >= 0 && fb[R_USER] > fa[R_USER]) {
          const u = text.slice(fa[R_USER], fb[R_USER]);
          if (u !== 'UNDEF') user = u;
        }
        const remote = idx[R_REAL] >= 0 ? text.slice(fa[R_REAL], fb[R_REAL]) : '';
        if (idx[R_CID] >= 0) {
          if (fb[R_CID] === fa[R_CID]) {
            this.malformed++;
            continue;
          }
          this.row(prefix + text.slice(fa[R_CID], fb[R_CID]), user, false, rx, tx, since, remote);
        } else {
          this.row(prefix + text.slice(fa[R_CN], fb[R_CN]) + ':' + remote, user, false, rx, tx, since, remote);
        }
        continue;
      }
      if (len >= 18 && text.startsWith('HEADER\tCLIENT_LIST', s) && (len === 18 || text.charCodeAt(s + 18) === 9)) {
        idx.fill(-1);
        const names = len === 18 ? [''] : text.slice(s + 19, e).split('\t');
        for (let c = 0; c < names.length; c++) {
          const role = OVPN_ROLES.get(names[c]);
          if (role !== undefined && idx[role] < 0) idx[role] = c + 1;
        }
        valid = idx[R_CN] >= 0 && idx[R_RX] >= 0 && idx[R_TX] >= 0;
        maxIdx = Math.max(0, ...idx.slice(1));
        roleAt = new Array<number>(maxIdx + 1).fill(0);
        for (let r = 1; r < R_COUNT; r++) if (idx[r] >= 0) roleAt[idx[r]] = r;
        continue;
      }
      if (len === 3 && text.startsWith('END', s)) endSeen = true;
    }
    return endSeen && valid && this.malformed === 0;
  }

  private parseWg(text: string, prefix: string): boolean {
    const n = text.length;
    const fa = [0, 0, 0, 0, 0, 0, 0, 0, 0];
    const fb = [0, 0, 0, 0, 0, 0, 0, 0, 0];
    let pos = 0;
    while (pos < n) {
      let nl = text.indexOf('\n', pos);
      if (nl < 0) nl = n;
      let e = nl;
      if (e > pos && text.charCodeAt(e - 1) === 13) e--;
      let q = pos;
      pos = nl + 1;
      if (q === e) continue;
      let nf = 0;
      for (;;) {
        let fe = text.indexOf('\t', q);
        if (fe < 0 || fe > e) fe = e;
        if (nf < 9) {
          fa[nf] = q;
          fb[nf] = fe;
        }
        nf++;
        if (fe >= e || nf > 9) break;
        q = fe + 1;
      }
      if (nf === 5) continue;
      if (nf !== 9) {
        this.malformed++;
        continue;
      }
      const hs = counter(text, fa[5], fb[5]);
      const rx = counter(text, fa[6], fb[6]);
      const tx = counter(text, fa[7], fb[7]);
      if (fb[0] === fa[0] || fb[1] === fa[1] || hs < 0 || rx < 0 || tx < 0) {
        this.malformed++;
        continue;
      }
      if (hs === 0) continue;
      const iface = text.slice(fa[0], fb[0]);
      const pub = text.slice(fa[1], fb[1]);
      const endpoint = text.slice(fa[3], fb[3]);
      this.row(prefix + iface + ':' + pub, pub, true, rx, tx, 0, endpoint === '(none)' ? '' : endpoint);
    }
    return this.malformed === 0;
  }

  private parseOcserv(text: string, prefix: string): boolean {
    const j = new JsonScan(text);
    if (!j.ws() || !j.at(91)) return false;
    j.p++;
    if (!j.ws()) return false;
    if (j.at(93)) return this.malformed === 0;
    const fields: JsonVal[] = [];
    const clear = (): void => {
      for (let f = 0; f < 6; f++) fields[f] = { kind: K_ABSENT, esc: false, a: 0, b: 0 };
    };
    const textOf = (v: JsonVal): string | null => {
      if (v.kind !== K_STR) return null;
      return v.esc ? decodeJson(text, v.a, v.b) : text.slice(v.a, v.b);
    };
    const counterFrom = (v: JsonVal): number => {
      if (v.kind === K_NUM) return counter(text, v.a, v.b);
      if (v.kind !== K_STR) return -1;
      if (!v.esc) return counter(text, v.a, v.b);
      const d = decodeJson(text, v.a, v.b);
      return d === null ? -1 : counterOf(d);
    };
    for (;;) {
      if (!j.ws()) return false;
      if (j.at(123)) {
        j.p++;
        clear();
        if (!j.ws()) return false;
        if (j.at(125)) {
          j.p++;
        } else {
          for (;;) {
            if (!j.ws() || !j.at(34)) return false;
            if (!j.str()) return false;
            let field: number | undefined;
            if (!j.esc) {
              field = OCSERV_FIELDS.get(text.slice(j.a, j.b));
            } else {
              const k = decodeJson(text, j.a, j.b);
              field = k === null ? undefined : OCSERV_FIELDS.get(k);
            }
            if (!j.ws() || !j.at(58)) return false;
            j.p++;
            if (!j.value(2)) return false;
            if (field !== undefined) fields[field] = { kind: j.kind, esc: j.esc, a: j.a, b: j.b };
            if (!j.ws()) return false;
            if (j.at(44)) {
              j.p++;
              continue;
            }
            if (j.at(125)) {
              j.p++;
              break;
            }
            return false;
          }
        }
        const id = fields[FIELD_ID];
        let idText: string | null;
        if (id.kind === K_NUM) {
          idText = text.slice(id.a, id.b);
          if (!/^[0-9]+$/.test(idText)) idText = null;
        } else {
          idText = textOf(id);
          if (idText === '') idText = null;
        }
        const user = idText === null ? null : textOf(fields[FIELD_USER]);
        const rx = user === null ? -1 : counterFrom(fields[FIELD_RX]);
        const tx = rx < 0 ? -1 : counterFrom(fields[FIELD_TX]);
        let since = 0;
        if (tx >= 0 && fields[FIELD_SINCE].kind !== K_ABSENT) since = counterFrom(fields[FIELD_SINCE]);
        let remote: string | null = '';
        if (tx >= 0 && since >= 0 && fields[FIELD_REMOTE].kind === K_STR) remote = textOf(fields[FIELD_REMOTE]);
        if (idText !== null && user !== null && rx >= 0 && tx >= 0 && since >= 0 && remote !== null) {
          this.row(prefix + idText, user, false, rx, tx, since, remote);
        } else {
          this.malformed++;
        }
      } else {
        if (!j.value(1)) return false;
        this.malformed++;
      }
      if (!j.ws()) return false;
      if (j.at(44)) {
        j.p++;
        continue;
      }
      if (j.at(93)) return this.malformed === 0;
      return false;
    }
  }
}
