/**
 * The fallback's tracker (native/src/tracker.h, tracker.cc): sessions, users and scopes interned,
 * cumulative counters turned into deltas, vanished sessions found; the status parsers in this
 * folder feed it rows. Rules: native/fallback.ts.
 */
import type { Engine, PackedSamples, PreparedPoll, RawEnded, RawTick, RawVanished } from '../engine';
import type { TrackedSession } from '../types';
import { parseOcserv } from './ocserv-json';
import { parseOpenVpn } from './openvpn-status3';
import type { RowSink } from './row-sink';
import { parseWg } from './wg-dump';

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

export class FallbackEngine implements Engine, RowSink {
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
  private malformedInPoll = 0;
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
      this.malformedInPoll = 0;
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
        if (poll.format === 0) complete = parseOpenVpn(this, text, prefix);
        else if (poll.format === 1) complete = parseWg(this, text, prefix);
        else complete = parseOcserv(this, text, prefix);
        this.resolve = undefined;
      }
      if (!complete) sc.incomplete = true;
      this.pollStats.push(rowStart, this.rowCount - rowStart, this.malformedInPoll, this.ignored, complete ? 1 : 0);
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
  row(key: string, user: string, byPublicKey: boolean, rx: number, tx: number, at: number, remote: string): void {
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

  malformed(): void {
    this.malformedInPoll++;
  }

  pollMalformed(): number {
    return this.malformedInPoll;
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
}
