/**
 * The low-level contract both implementations (C++ addon, TypeScript fallback) fulfil. Only
 * native/index.ts talks to it: arguments arrive validated, and the shared wrapper turns the raw
 * outputs into `TickResult`s, so whatever differs between the two is confined below this line.
 */
import type { TrackedSession } from './types';

/** Format codes shared with native/src/parsers.h. */
export const FormatCode = { 'openvpn-status3': 0, 'wg-dump': 1, 'ocserv-json': 2, samples: 3 } as const;

/**
 * Sample batches cross into C++ as one string plus lengths and numbers: reading 100k JS objects
 * property by property through N-API costs more than the whole native tick.
 */
export interface PackedSamples {
  /** key and user of every sample, concatenated. */
  joined: string;
  /** `joined` is pure ASCII (its UTF-16 lengths are also its UTF-8 byte lengths). */
  ascii: boolean;
  /** Per sample: UTF-16 lengths of key and user. */
  lengths: Uint32Array;
  /** Per sample: remote address. They never cross into C++: `remoteAt` reads them here. */
  remotes: string[];
  /** Per sample: rx, tx, connectedAt. */
  numbers: Float64Array;
  count: number;
}

export type PreparedPoll =
  | { format: 0 | 1 | 2; text: string | Uint8Array; scope: string; resolve: ((publicKey: string) => string) | undefined }
  | { format: 3; samples: PackedSamples; scope: string };

export interface RawVanished {
  key: string;
  scope: string;
  user: string;
  rx: number;
  tx: number;
  connectedAt: number;
}

export interface RawTick {
  tick: number;
  rowCount: number;
  /** Row columns; may be longer than rowCount. */
  rxDelta: Float64Array;
  txDelta: Float64Array;
  rx: Float64Array;
  tx: Float64Array;
  connectedAt: Float64Array;
  user: Uint32Array;
  flags: Uint8Array;
  /** User columns; at least as long as the number of interned users. */
  userRxDelta: Float64Array;
  userTxDelta: Float64Array;
  userLive: Uint32Array;
  activeUsers: Uint32Array;
  /** Users interned since the previous tick result, in id order. */
  newUsers: string[];
  vanished: RawVanished[];
  /** 5 numbers per poll: rowStart, rowCount, malformed, ignored, complete (0/1). */
  polls: Float64Array;
}

export interface RawEnded {
  known: boolean;
  user: string;
  scope: string | undefined;
  rxDelta: number;
  txDelta: number;
  rx: number;
  tx: number;
  connectedAt: number;
}

export interface Engine {
  tick(polls: readonly PreparedPoll[]): RawTick;
  keyAt(row: number): string;
  remoteAt(row: number): string;
  ended(
    key: string,
    rx: number,
    tx: number,
    connectedAt: number | undefined,
    user: string | undefined,
    scope: string | undefined,
  ): RawEnded | null;
  seed(key: string, scope: string, user: string, rx: number, tx: number, connectedAt: number, ended: boolean): void;
  forget(key: string): boolean;
  snapshot(): TrackedSession[];
  size(): number;
  reset(): void;
}
