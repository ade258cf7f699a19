import type { ProtocolId, SessionPoll } from '../plugin/types';
import { TRACKER_LIMITS, type TrackerPoll } from './tracker';

/*
 * What a plugin's poll becomes for the tracker. A plugin answers in the form it declares
 * (`capabilities.poll`): parsed sessions become one sample batch scoped to the source; raw
 * status texts become one tracker poll per daemon, scoped `<source>/<daemon scope>`, all
 * parsed by the native addon (or its fallback) in one call.
 */

/**
 * Tracker keys are `<source>/<plugin's session key>` whatever the poll kind: the addon builds
 * `<source>/<text scope>:<id>` from status text, which is `<source>/` + the key a plugin reports
 * for that session (`<scope>:<id>`, e.g. in `sessionEnded`).
 */
export function trackerKeyOf(sourceId: string, pluginKey: string): string {
  return `${sourceId}/${pluginKey}`;
}

export function isCounter(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** One tracker poll per daemon text, or one sample batch for parsed sessions. */
export function toTrackerPolls(sourceId: string, protocol: ProtocolId, serverId: string, poll: SessionPoll): TrackerPoll[] {
  if (!poll || typeof poll !== 'object') throw new Error('pollSessions() returned no poll');
  if (poll.kind === 'sessions') {
    if (!Array.isArray(poll.sessions)) throw new Error('pollSessions(): sessions must be an array');
    const samples = poll.sessions.map((s, i) => {
      if (!s || typeof s.sessionKey !== 'string' || !s.sessionKey) throw new Error(`pollSessions(): sessions[${i}].sessionKey must be a non-empty string`);
      if (typeof s.username !== 'string' || s.username.length > TRACKER_LIMITS.user) throw new Error(`pollSessions(): sessions[${i}].username is invalid`);
      for (const f of ['rxBytes', 'txBytes', 'connectedAt'] as const) {
        if (!isCounter(s[f])) throw new Error(`pollSessions(): sessions[${i}].${f} must be a non-negative safe integer`);
      }
      const key = trackerKeyOf(sourceId, s.sessionKey);
      if (key.length > TRACKER_LIMITS.key) throw new Error(`pollSessions(): sessions[${i}].sessionKey is too long`);
      return { key, user: s.username, rx: s.rxBytes, tx: s.txBytes, connectedAt: s.connectedAt, remoteAddress: typeof s.remoteAddress === 'string' ? s.remoteAddress.slice(0, 1024) : '' };
    });
    return [{ kind: 'samples', scope: sourceId, protocol, serverId, samples }];
  }
  if (poll.kind === 'status-text') {
    if (!Array.isArray(poll.texts)) throw new Error('pollSessions(): status-text texts must be an array');
    const seen = new Set<string>();
    return poll.texts.map((t, i) => {
      if (!t || typeof t.scope !== 'string' || !t.scope) throw new Error(`pollSessions(): texts[${i}].scope must be a non-empty string`);
      const scope = `${sourceId}/${t.scope}`;
      if (scope.length > TRACKER_LIMITS.scope) throw new Error(`pollSessions(): texts[${i}].scope is too long`);
      if (seen.has(scope)) throw new Error(`pollSessions(): texts[${i}].scope ${JSON.stringify(t.scope)} is listed twice`);
      seen.add(scope);
      return { kind: 'status-text' as const, format: poll.format, text: t.text, scope, protocol, serverId, peerNames: poll.peerNames };
    });
  }
  throw new Error(`pollSessions(): unknown poll kind ${JSON.stringify((poll as { kind?: unknown }).kind)}`);
}
