/**
 * Accounting tracker: turns whole polls of live VPN sessions (raw daemon status text or numeric
 * samples) into per-connection deltas and per-user sums in one call, keeping each connection's
 * previous counters between calls. A C++ addon does the work; a TypeScript fallback with the same
 * results takes over when the addon is not built (or `POLYGATE_FORCE_FALLBACK=1`).
 *
 * Rules (identical in both implementations):
 * - A key is one connection. New key: delta = its whole counters. Same key, same `connectedAt`,
 *   counters not lower: delta = difference. A counter went down, or `connectedAt` changed: a new
 *   connection under the same key, delta = whole counters. Never negative, never lost.
 * - A tracked key that is absent from a complete poll of its scope is reported in `vanished`
 *   (last counters, user) and forgotten. Scopes not polled in a tick, and incomplete polls
 *   (truncated or malformed text), make nothing vanish.
 * - `ended()` folds a disconnect's final counters (delta from the last poll) and keeps the key
 *   as "ended" until its scope's next complete poll without it, so a stale row of the same
 *   session (same `connectedAt`, counters not above the final ones) is ignored instead of counted
 *   twice; more bytes than the final ones revive it (delta from the final counters).
 * - WireGuard peers whose public key has no name in `peerNames` are reported under user `''`
 *   (their bytes are kept; the name is looked up again on later ticks until one is found). A
 *   peer that has a name keeps it: `peerNames` is only consulted for new or unnamed peers.
 * - Sample batches use their keys as given; text formats prefix theirs with `scope:`.
 *
 * Cost: hand daemon output over as the Buffer it arrived in (a string is first re-encoded to
 * UTF-8). With 100k sessions and 14 MB of text a steady-state tick takes ~9 ms natively; sample
 * batches cost more per session than text (~0.1 µs each, mostly V8 flattening their strings).
 * Result columns are views of memory the next call overwrites: read or copy them first.
 *
 * @example
 * const tracker = createTracker();
 * const r = tracker.tick([
 *   { kind: 'status-text', format: 'openvpn-status3', text: statusBuffer, scope: 'ovpn@main',
 *     protocol: 'openvpn', serverId: 'main' },
 *   { kind: 'samples', scope: 'l2tp@main', protocol: 'l2tp', serverId: 'main', samples },
 * ]);
 * for (const id of r.activeUsers) usage.add(r.userNames[id], r.userRxDelta[id], r.userTxDelta[id]);
 * for (const v of r.vanished) log.info({ key: v.key }, 'session gone');
 */
import { loadAddon, NativeEngine, type NativeAddon } from './binding';
import type { Engine, RawTick } from './engine';
import { FallbackEngine } from './fallback';
import type {
  AccountingTracker,
  ConnectionRow,
  CreateTrackerOptions,
  EndedDelta,
  EndedOptions,
  PollSummary,
  TickResult,
  TrackedSession,
  TrackerPoll,
  VanishedSession,
} from './types';
import { checkCounter, checkEndedOptions, checkString, describe, LIMITS, preparePolls, type PollLabels, type SampleScratch } from './validate';

export * from './types';
export { LIMITS } from './validate';

const loaded = loadAddon();
const addon: NativeAddon | undefined = loaded.addon;

/** True when the C++ addon loaded (and is not disabled by POLYGATE_FORCE_FALLBACK). */
export const isNative: boolean = addon !== undefined;

/** Why the addon is not used, when `isNative` is false. */
export const nativeLoadError: string | undefined = loaded.reason;

/** For logs: 'avx2' or 'baseline' (the parsers are compiled for both and chosen at load). */
export const nativeParserIsa: string | undefined = addon?.parserIsa;

/** Creates a tracker: the native one when available, unless `forceFallback`. */
export function createTracker(options: CreateTrackerOptions = {}): AccountingTracker {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`createTracker(options): options must be an object (got ${describe(options)})`);
  }
  if (options.forceFallback !== undefined && typeof options.forceFallback !== 'boolean') {
    throw new TypeError(`createTracker(options): forceFallback must be a boolean (got ${describe(options.forceFallback)})`);
  }
  if (addon && !options.forceFallback) return new Tracker(new NativeEngine(addon), 'native');
  return new Tracker(new FallbackEngine(), 'fallback');
}

/**
 * Counts '\n' bytes: a bare C `memchr` loop when the addon is loaded (the benchmark's baseline),
 * `Buffer#indexOf` otherwise.
 */
export function memchrLines(buffer: Uint8Array): number {
  if (!(buffer instanceof Uint8Array)) throw new TypeError(`memchrLines(buffer): expected a Uint8Array (got ${describe(buffer)})`);
  if (addon) return addon.memchrLines(buffer);
  const b = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  let n = 0;
  for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) n++;
  return n;
}

class Tracker implements AccountingTracker {
  /** Bumped by every call that changes the tracker; results check it before lazy reads. */
  private version = 0;
  private userNames: string[] = [];
  private busy = false;
  private readonly sampleScratch: SampleScratch[] = [];

  constructor(
    private readonly engine: Engine,
    readonly implementation: 'native' | 'fallback',
  ) {}

  get size(): number {
    return this.engine.size();
  }

  tick(polls: readonly TrackerPoll[]): TickResult {
    const { prepared, labels } = preparePolls(polls, this.sampleScratch);
    this.enter();
    let raw: RawTick;
    try {
      raw = this.engine.tick(prepared);
    } finally {
      this.busy = false;
    }
    for (const name of raw.newUsers) this.userNames.push(name);
    return new Result(this, this.engine, this.version, raw, labels, this.userNames);
  }

  ended(key: string, finalRx: number, finalTx: number, options?: EndedOptions): EndedDelta | null {
    checkString(key, 'ended(key)', LIMITS.key, false);
    checkCounter(finalRx, 'ended(finalRx)');
    checkCounter(finalTx, 'ended(finalTx)');
    const o = checkEndedOptions(options);
    this.enter();
    try {
      const r = this.engine.ended(key, finalRx, finalTx, o.connectedAt, o.user, o.scope);
      return r === null ? null : { key, ...r };
    } finally {
      this.busy = false;
    }
  }

  seed(session: Omit<TrackedSession, 'ended'> & { ended?: boolean }): void {
    if (typeof session !== 'object' || session === null) {
      throw new TypeError(`seed(session): session must be an object (got ${describe(session)})`);
    }
    const key = checkString(session.key, 'seed(session).key', LIMITS.key, false);
    const scope = checkString(session.scope, 'seed(session).scope', LIMITS.scope, false);
    const user = checkString(session.user, 'seed(session).user', LIMITS.user, true);
    const rx = checkCounter(session.rx, 'seed(session).rx');
    const tx = checkCounter(session.tx, 'seed(session).tx');
    const at = checkCounter(session.connectedAt, 'seed(session).connectedAt');
    if (session.ended !== undefined && typeof session.ended !== 'boolean') {
      throw new TypeError(`seed(session).ended must be a boolean (got ${describe(session.ended)})`);
    }
    this.enter();
    try {
      this.engine.seed(key, scope, user, rx, tx, at, session.ended === true);
    } finally {
      this.busy = false;
    }
  }

  forget(key: string): boolean {
    checkString(key, 'forget(key)', LIMITS.key, false);
    this.enter();
    try {
      return this.engine.forget(key);
    } finally {
      this.busy = false;
    }
  }

  snapshot(): TrackedSession[] {
    const all = this.engine.snapshot();
    return all.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  reset(): void {
    this.enter();
    try {
      this.engine.reset();
      this.userNames = [];
    } finally {
      this.busy = false;
    }
  }

  /** @internal */
  isCurrent(version: number): boolean {
    return version === this.version;
  }

  private enter(): void {
    if (this.busy) throw new Error('accounting tracker: re-entrant call (from a peerNames lookup?)');
    this.busy = true;
    this.version++;
  }
}

class Result implements TickResult {
  readonly tick: number;
  readonly rowCount: number;
  readonly rxDelta: Float64Array;
  readonly txDelta: Float64Array;
  readonly rx: Float64Array;
  readonly tx: Float64Array;
  readonly connectedAt: Float64Array;
  readonly user: Uint32Array;
  readonly flags: Uint8Array;
  readonly polls: readonly PollSummary[];
  readonly userNames: readonly string[];
  readonly userRxDelta: Float64Array;
  readonly userTxDelta: Float64Array;
  readonly userLive: Uint32Array;
  readonly activeUsers: Uint32Array;
  readonly vanished: readonly VanishedSession[];

  constructor(
    private readonly owner: Tracker,
    private readonly engine: Engine,
    private readonly version: number,
    raw: RawTick,
    labels: readonly PollLabels[],
    userNames: readonly string[],
  ) {
    const n = raw.rowCount;
    this.tick = raw.tick;
    this.rowCount = n;
    this.rxDelta = raw.rxDelta.subarray(0, n);
    this.txDelta = raw.txDelta.subarray(0, n);
    this.rx = raw.rx.subarray(0, n);
    this.tx = raw.tx.subarray(0, n);
    this.connectedAt = raw.connectedAt.subarray(0, n);
    this.user = raw.user.subarray(0, n);
    this.flags = raw.flags.subarray(0, n);
    const u = userNames.length;
    this.userNames = userNames;
    this.userRxDelta = raw.userRxDelta.subarray(0, u);
    this.userTxDelta = raw.userTxDelta.subarray(0, u);
    this.userLive = raw.userLive.subarray(0, u);
    this.activeUsers = raw.activeUsers;
    const polls: PollSummary[] = [];
    const byScope = new Map<string, PollLabels>();
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i];
      byScope.set(l.scope, l);
      const o = i * 5;
      polls.push({
        scope: l.scope,
        protocol: l.protocol,
        serverId: l.serverId,
        rowStart: raw.polls[o],
        rowCount: raw.polls[o + 1],
        malformed: raw.polls[o + 2],
        ignored: raw.polls[o + 3],
        complete: raw.polls[o + 4] === 1,
      });
    }
    this.polls = polls;
    const vanished: VanishedSession[] = raw.vanished.map((v) => {
      const l = byScope.get(v.scope) as PollLabels; // only polled scopes vanish
      return {
        key: v.key,
        scope: v.scope,
        protocol: l.protocol,
        serverId: l.serverId,
        user: v.user,
        rx: v.rx,
        tx: v.tx,
        connectedAt: v.connectedAt,
      };
    });
    vanished.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.vanished = vanished;
  }

  keyAt(row: number): string {
    this.check(row, 'keyAt');
    return this.engine.keyAt(row);
  }

  remoteAddressAt(row: number): string {
    this.check(row, 'remoteAddressAt');
    return this.engine.remoteAt(row);
  }

  userAt(row: number): string {
    this.check(row, 'userAt');
    return this.userNames[this.user[row]];
  }

  toRows(): ConnectionRow[] {
    const out: ConnectionRow[] = [];
    let poll = 0;
    for (let i = 0; i < this.rowCount; i++) {
      while (poll < this.polls.length - 1 && i >= this.polls[poll].rowStart + this.polls[poll].rowCount) poll++;
      out.push({
        key: this.keyAt(i),
        user: this.userAt(i),
        remoteAddress: this.remoteAddressAt(i),
        rxDelta: this.rxDelta[i],
        txDelta: this.txDelta[i],
        rx: this.rx[i],
        tx: this.tx[i],
        connectedAt: this.connectedAt[i],
        flags: this.flags[i],
        pollIndex: poll,
      });
    }
    return out;
  }

  perUser(): Map<string, { rxDelta: number; txDelta: number; live: number }> {
    const out = new Map<string, { rxDelta: number; txDelta: number; live: number }>();
    for (const id of this.activeUsers) {
      out.set(this.userNames[id], { rxDelta: this.userRxDelta[id], txDelta: this.userTxDelta[id], live: this.userLive[id] });
    }
    return out;
  }

  private check(row: number, what: string): void {
    if (!this.owner.isCurrent(this.version)) {
      throw new Error(`TickResult.${what}(): the tracker changed since this tick; read rows before the next call`);
    }
    if (!Number.isInteger(row) || row < 0 || row >= this.rowCount) {
      throw new RangeError(`TickResult.${what}(row): row must be an integer in [0, ${this.rowCount}) (got ${describe(row)})`);
    }
  }
}
