/**
 * The slice of the accounting tracker the engine relies on, backed by native/index.ts (the C++
 * addon, or its TypeScript fallback with identical results). Kept small so the engine can be
 * read without the addon's details, and so tests can see which implementation ran.
 */
import { createTracker, isNative, nativeLoadError, RowFlag, type AccountingTracker } from '../../native';

export type { EndedDelta, TickResult, TrackerPoll, VanishedSession, SessionSample } from '../../native';
export { RowFlag };

export type SessionTracker = Pick<AccountingTracker, 'implementation' | 'tick' | 'ended' | 'seed' | 'forget' | 'reset' | 'snapshot' | 'size'>;

export interface TrackerInfo {
  implementation: 'native' | 'fallback';
  /** Why the addon is not in use, when it is not. */
  reason?: string;
}

export function createSessionTracker(options: { forceFallback?: boolean } = {}): SessionTracker {
  return createTracker({ forceFallback: options.forceFallback });
}

export function trackerInfo(tracker: SessionTracker): TrackerInfo {
  if (tracker.implementation === 'native') return { implementation: 'native' };
  return { implementation: 'fallback', reason: isNative ? 'fallback forced' : (nativeLoadError ?? 'addon not built') };
}

/** Mirrors the tracker's argument limits, so a plugin's bad sample is refused per plugin, not per tick. */
export const TRACKER_LIMITS = { key: 4096, user: 1024, scope: 256 } as const;
