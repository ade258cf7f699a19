/**
 * Public types of the accounting tracker (native addon and TypeScript fallback alike).
 * Everything here is plain data; behaviour lives in native/index.ts.
 */
import type { ProtocolId, StatusFormat } from '../core/plugin/types';

export type { ProtocolId, StatusFormat };

/** One live connection given as already-parsed numbers (e.g. L2TP, or tests). */
export interface SessionSample {
  /** Unique per connection, across every scope fed to the tracker. */
  key: string;
  user: string;
  /** Bytes the server received from the client since the connection began. */
  rx: number;
  /** Bytes the server sent to the client since the connection began. */
  tx: number;
  /** Unix seconds; 0 when the daemon does not say. */
  connectedAt: number;
  remoteAddress?: string;
}

/**
 * A daemon's raw status output. Same field names as `SessionPoll` of kind `status-text`, so a
 * plugin's poll can be handed over unchanged.
 *
 * Keys: OpenVPN `scope:<Client ID>` (`scope:<Common Name>:<Real Address>` when the daemon has no
 * Client ID column), WireGuard `scope:<interface>:<public key>`, ocserv `scope:<ID>`.
 */
export interface StatusTextPoll {
  kind: 'status-text';
  format: StatusFormat;
  /**
   * The bytes as the daemon wrote them (a Buffer: fastest), or a string. Bytes are read as UTF-8;
   * invalid sequences are kept byte for byte natively but become U+FFFD in the fallback.
   */
  text: string | Uint8Array;
  /** Prefix of every key from this text; also the set of sessions this poll can make vanish. */
  scope: string;
  protocol: ProtocolId;
  serverId: string;
  /**
   * WireGuard only: public key → username. Looked up when a peer is first seen (and again while
   * its username is still unknown); peers without a name are reported under username `''`.
   */
  peerNames?: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
}

/** Sessions given as numbers. Keys are used as given (no scope prefix is added). */
export interface SampleBatchPoll {
  kind: 'samples';
  samples: readonly SessionSample[];
  /** The set of sessions this poll can make vanish (its samples' keys are not prefixed). */
  scope: string;
  protocol: ProtocolId;
  serverId: string;
}

export type TrackerPoll = StatusTextPoll | SampleBatchPoll;

/** Bits of `TickResult.flags`. */
export const RowFlag = {
  /** First time this key is seen: the delta is the whole counter. */
  New: 1,
  /** A counter went down (daemon restarted its counters): counted as a new connection. */
  Reset: 2,
  /** `connectedAt` changed under the same key (the id was reused): counted as a new connection. */
  Reconnect: 4,
  /** The key had ended (via `ended()`) and shows up live again with more bytes. */
  Revived: 8,
  /** The key already appeared earlier in the same tick (duplicate row). */
  Repeat: 16,
} as const;

export interface PollSummary {
  scope: string;
  protocol: ProtocolId;
  serverId: string;
  /** This poll's rows are `rowStart … rowStart + rowCount - 1`. */
  rowStart: number;
  rowCount: number;
  /** Rows (or JSON objects) that could not be read; any makes the poll incomplete. */
  malformed: number;
  /** Rows of sessions that already ended with at least these counters (stale status). */
  ignored: number;
  /**
   * Parsed to its end without malformed rows (OpenVPN needs its `END` line, ocserv its closing
   * `]`). Sessions absent from an incomplete poll are kept, not reported as vanished.
   */
  complete: boolean;
}

/** A session that was tracked in a scope polled this tick but was not in the poll. */
export interface VanishedSession {
  key: string;
  scope: string;
  protocol: ProtocolId;
  serverId: string;
  user: string;
  /** Last counters seen; bytes after them are unknowable unless a disconnect event reports them. */
  rx: number;
  tx: number;
  connectedAt: number;
}

/** One row of `TickResult.toRows()` (allocates; for logs and tests, not the hot path). */
export interface ConnectionRow {
  key: string;
  user: string;
  remoteAddress: string;
  rxDelta: number;
  txDelta: number;
  rx: number;
  tx: number;
  connectedAt: number;
  flags: number;
  pollIndex: number;
}

/**
 * Outcome of one `tick()`. Column arrays are views of memory the tracker reuses: read them
 * (or copy) before the next call that changes the tracker; `keyAt` and friends throw after it.
 */
export interface TickResult {
  /** Increments on every tick. */
  readonly tick: number;
  readonly rowCount: number;
  /** Per row (length `rowCount`): bytes since the previous poll (never negative). */
  readonly rxDelta: Float64Array;
  readonly txDelta: Float64Array;
  /** Per row: the counters as the daemon reported them now. */
  readonly rx: Float64Array;
  readonly tx: Float64Array;
  readonly connectedAt: Float64Array;
  /** Per row: index into `userNames`. */
  readonly user: Uint32Array;
  /** Per row: `RowFlag` bits. */
  readonly flags: Uint8Array;
  readonly polls: readonly PollSummary[];
  /** Every username the tracker has interned, by id (only grows until `reset()`). */
  readonly userNames: readonly string[];
  /** Per user id (length `userNames.length`): sums of this tick's deltas; 0 for users without rows. */
  readonly userRxDelta: Float64Array;
  readonly userTxDelta: Float64Array;
  /** Per user id: distinct live sessions in this tick. */
  readonly userLive: Uint32Array;
  /** Ids of users with at least one row this tick, in order of first appearance. */
  readonly activeUsers: Uint32Array;
  /** Sorted by key. */
  readonly vanished: readonly VanishedSession[];
  keyAt(row: number): string;
  remoteAddressAt(row: number): string;
  userAt(row: number): string;
  /** Allocates one object per row. */
  toRows(): ConnectionRow[];
  /** username → sums, for users with rows this tick. Allocates. */
  perUser(): Map<string, { rxDelta: number; txDelta: number; live: number }>;
}

/** What `ended()` folded. */
export interface EndedDelta {
  key: string;
  user: string;
  /** Scope the session was tracked in (undefined when it was unknown and no scope was given). */
  scope: string | undefined;
  /** Bytes between the last poll and the final counters (the whole counters if it was unknown). */
  rxDelta: number;
  txDelta: number;
  rx: number;
  tx: number;
  connectedAt: number;
  /** False when the tracker had never seen the key. */
  known: boolean;
}

export interface EndedOptions {
  /** Username to charge when the key is unknown (without it, an unknown key returns null). */
  user?: string;
  /** The session's start; a different value than tracked means a different connection. */
  connectedAt?: number;
  /** For an unknown key: remember it (ended) in this scope so a stale row is not counted again. */
  scope?: string;
}

/** A tracked session as kept in the durable journal. */
export interface TrackedSession {
  key: string;
  scope: string;
  user: string;
  rx: number;
  tx: number;
  connectedAt: number;
  /** Ended via `ended()`, kept only to ignore stale rows until its scope's next complete poll. */
  ended: boolean;
}

/** The tracker; see native/index.ts for the rules. */
export interface AccountingTracker {
  /** 'native' or 'fallback'. */
  readonly implementation: 'native' | 'fallback';
  /** Feeds one tick: any number of polls, from any number of scopes. */
  tick(polls: readonly TrackerPoll[]): TickResult;
  ended(key: string, finalRx: number, finalTx: number, options?: EndedOptions): EndedDelta | null;
  seed(session: Omit<TrackedSession, 'ended'> & { ended?: boolean }): void;
  forget(key: string): boolean;
  /** Sorted by key. */
  snapshot(): TrackedSession[];
  /** Number of tracked sessions (live and ended). */
  readonly size: number;
  reset(): void;
}

export interface CreateTrackerOptions {
  /** Use the TypeScript implementation even when the addon loaded. */
  forceFallback?: boolean;
}
