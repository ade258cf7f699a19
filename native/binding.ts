/**
 * Loads the compiled addon (build/Release/polygate_accounting.node via node-gyp-build) and adapts
 * it to the Engine contract. Never throws: a missing or broken addon is reported as a reason.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Engine, PreparedPoll, RawEnded, RawTick, RawVanished } from './engine';
import type { TrackedSession } from './types';

/** The addon's tracker: the Engine contract, but with raw buffers and numeric remote addresses. */
type NativeTrackerInstance = Omit<Engine, 'tick' | 'remoteAt'> & {
  tick(polls: unknown[]): {
    tick: number;
    rowCount: number;
    rxDelta: ArrayBuffer;
    txDelta: ArrayBuffer;
    rx: ArrayBuffer;
    tx: ArrayBuffer;
    connectedAt: ArrayBuffer;
    user: ArrayBuffer;
    flags: ArrayBuffer;
    userRxDelta: ArrayBuffer;
    userTxDelta: ArrayBuffer;
    userLive: ArrayBuffer;
    activeUsers: Uint32Array;
    newUsers: string[];
    vanished: RawVanished[];
    polls: Float64Array;
  };
  remoteAt(row: number): string | number;
};

export interface NativeAddon {
  NativeTracker: new () => NativeTrackerInstance;
  memchrLines(buffer: Uint8Array): number;
  abiVersion: number;
  /** Which compiled copy of the parsers this CPU runs: 'avx2' or 'baseline'. */
  parserIsa: string;
}

/** The directory holding binding.gyp: the repo root whether we run from sources or dist/. */
export function findPackageRoot(start: string): string | undefined {
  let dir = start;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

export function loadAddon(): { addon: NativeAddon | undefined; reason: string | undefined } {
  const force = process.env.POLYGATE_FORCE_FALLBACK;
  if (force !== undefined && force !== '' && force !== '0' && force.toLowerCase() !== 'false') {
    return { addon: undefined, reason: `POLYGATE_FORCE_FALLBACK=${force}` };
  }
  const root = findPackageRoot(__dirname);
  if (!root) return { addon: undefined, reason: `no binding.gyp found above ${__dirname}` };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    const mod = nodeGypBuild(root) as Partial<NativeAddon>;
    if (typeof mod.NativeTracker !== 'function' || typeof mod.memchrLines !== 'function') {
      return { addon: undefined, reason: `addon in ${root} does not export NativeTracker/memchrLines` };
    }
    if (mod.abiVersion !== 1) {
      return { addon: undefined, reason: `addon in ${root} has abiVersion ${String(mod.abiVersion)}, expected 1 (rebuild it)` };
    }
    return { addon: mod as NativeAddon, reason: undefined };
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    return { addon: undefined, reason: `cannot load the native addon (run \`npx node-gyp rebuild\`): ${msg}` };
  }
}

/** Typed-array views are cached per ArrayBuffer: the addon only swaps buffers when it grows them. */
class ViewCache<T> {
  private buffer: ArrayBuffer | undefined;
  private view: T | undefined;
  constructor(private readonly make: (b: ArrayBuffer) => T) {}
  get(b: ArrayBuffer): T {
    if (b !== this.buffer || this.view === undefined) {
      this.buffer = b;
      this.view = this.make(b);
    }
    return this.view;
  }
}

export class NativeEngine implements Engine {
  private readonly t: NativeTrackerInstance;
  /** Polls of the last tick: sample rows' remote addresses are read from them. */
  private lastPolls: readonly PreparedPoll[] = [];
  private lastPollStats: Float64Array = new Float64Array(0);
  private readonly v = {
    rxDelta: new ViewCache((b) => new Float64Array(b)),
    txDelta: new ViewCache((b) => new Float64Array(b)),
    rx: new ViewCache((b) => new Float64Array(b)),
    tx: new ViewCache((b) => new Float64Array(b)),
    connectedAt: new ViewCache((b) => new Float64Array(b)),
    user: new ViewCache((b) => new Uint32Array(b)),
    flags: new ViewCache((b) => new Uint8Array(b)),
    userRxDelta: new ViewCache((b) => new Float64Array(b)),
    userTxDelta: new ViewCache((b) => new Float64Array(b)),
    userLive: new ViewCache((b) => new Uint32Array(b)),
  };

  constructor(addon: NativeAddon) {
    this.t = new addon.NativeTracker();
  }

  tick(polls: readonly PreparedPoll[]): RawTick {
    const descriptors: unknown[] = new Array(polls.length);
    for (let i = 0; i < polls.length; i++) {
      const p = polls[i];
      if (p.format === 3) {
        const s = p.samples;
        descriptors[i] = [3, s.joined, p.scope, undefined, s.lengths, s.numbers, s.count, s.joined.length, s.ascii];
      } else {
        descriptors[i] = [p.format, p.text, p.scope, p.resolve];
      }
    }
    this.lastPolls = [];
    const r = this.t.tick(descriptors);
    this.lastPolls = polls;
    this.lastPollStats = r.polls;
    const v = this.v;
    return {
      tick: r.tick,
      rowCount: r.rowCount,
      rxDelta: v.rxDelta.get(r.rxDelta),
      txDelta: v.txDelta.get(r.txDelta),
      rx: v.rx.get(r.rx),
      tx: v.tx.get(r.tx),
      connectedAt: v.connectedAt.get(r.connectedAt),
      user: v.user.get(r.user),
      flags: v.flags.get(r.flags),
      userRxDelta: v.userRxDelta.get(r.userRxDelta),
      userTxDelta: v.userTxDelta.get(r.userTxDelta),
      userLive: v.userLive.get(r.userLive),
      activeUsers: r.activeUsers,
      newUsers: r.newUsers,
      vanished: r.vanished,
      polls: r.polls,
    };
  }

  keyAt(row: number): string {
    return this.t.keyAt(row);
  }

  remoteAt(row: number): string {
    const r = this.t.remoteAt(row);
    if (typeof r === 'string') return r;
    const stats = this.lastPollStats;
    for (let i = 0; i < this.lastPolls.length; i++) {
      const p = this.lastPolls[i];
      if (p.format === 3 && row >= stats[i * 5] && row < stats[i * 5] + stats[i * 5 + 1]) return p.samples.remotes[r];
    }
    return '';
  }

  ended(
    key: string,
    rx: number,
    tx: number,
    connectedAt: number | undefined,
    user: string | undefined,
    scope: string | undefined,
  ): RawEnded | null {
    return this.t.ended(key, rx, tx, connectedAt, user, scope);
  }

  seed(key: string, scope: string, user: string, rx: number, tx: number, connectedAt: number, ended: boolean): void {
    this.t.seed(key, scope, user, rx, tx, connectedAt, ended);
  }

  forget(key: string): boolean {
    return this.t.forget(key);
  }

  snapshot(): TrackedSession[] {
    return this.t.snapshot();
  }

  size(): number {
    return this.t.size();
  }

  reset(): void {
    this.t.reset();
  }
}
