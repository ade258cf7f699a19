import { timingSafeEqual } from 'node:crypto';
import type { AuthorizeRequest, AuthorizeResult, ProtocolId } from '../plugin/types';
import { protocolSpec } from '../protocols/table';
import { mayUseServer, parseServerIds } from '../services/server-access';
import { deriveStatus, mayConnect, type ResellerStatusInputs, type StatusInputs, type UserStatus } from '../services/user-status';

/**
 * Who may be connected, as pure functions of the facts and the clock. The enforcer feeds them
 * from the database and the live sessions; the unit tests feed them directly.
 */

/** What enforcement needs to know about a user (a subset of the `users` row). */
export interface UserFacts extends StatusInputs {
  id: number;
  username: string;
  sub_admin_id: number | null;
  max_clients: number;
  pending_activation_days: number | null;
  data_limit_reset_strategy: ResetStrategy | string;
  last_traffic_reset_at: Date | string | null;
  created_at: Date | string;
  /** The protocols enabled for the user, with each one's password (null when it has none). */
  protocols: Partial<Record<ProtocolId, { password: string | null }>>;
  /** JSON array of server ids, or null for "every server the owner may use". */
  nodes: string | null;
}

export interface ResellerFacts extends ResellerStatusInputs {
  id: number;
  /** JSON array of server ids. */
  allowed_servers: string;
}

export type ResetStrategy = 'no_reset' | 'day' | 'week' | 'month' | 'year';

/** Why a session must end. */
export type CutReason = Exclude<UserStatus, 'active' | 'on_hold'> | 'unknown_user' | 'max_clients' | 'protocol_disabled' | 'server_not_allowed';

/** One live connection as enforcement sees it. */
export interface LiveConnectionRef {
  /** Tracker key (unique across servers and protocols). */
  key: string;
  /** `protocol@server` of the plugin that reports it. */
  sourceId: string;
  username: string;
  /** Unix seconds; 0 when the daemon does not say. */
  connectedAt: number;
  /** When polygate first saw it (ms); orders connections the daemon gives no start time for. */
  firstSeenMs: number;
  /**
   * Listed by at least two polls. A row seen once may be a login still being authenticated
   * or one being refused (status listings show those too); it does not count towards
   * max_clients until it is still there on the next poll. Default true.
   */
  settled?: boolean;
}

export type Decision =
  | { kind: 'cut_user'; username: string; reason: CutReason; connections: LiveConnectionRef[] }
  | { kind: 'cut_sessions'; username: string; reason: 'max_clients' | 'protocol_disabled' | 'server_not_allowed'; connections: LiveConnectionRef[] };

export function statusOf(user: UserFacts, reseller: ResellerFacts | null | undefined, now: Date): UserStatus {
  return deriveStatus(user, reseller, now);
}

/** `max_clients` of 0 or less means "no limit". */
export const clientLimit = (user: Pick<UserFacts, 'max_clients'>): number => (user.max_clients > 0 ? user.max_clients : Infinity);

/** Newest first: later start, then later first sighting, then key (stable). */
export function newestFirst(a: LiveConnectionRef, b: LiveConnectionRef): number {
  const sa = a.connectedAt || Math.floor(a.firstSeenMs / 1000);
  const sb = b.connectedAt || Math.floor(b.firstSeenMs / 1000);
  if (sa !== sb) return sb - sa;
  if (a.firstSeenMs !== b.firstSeenMs) return b.firstSeenMs - a.firstSeenMs;
  return a.key < b.key ? 1 : a.key > b.key ? -1 : 0;
}

/**
 * For every user holding connections: cut them all when the user may not connect (disabled,
 * expired, over its limit, reseller over quota or inactive, or no such user any more); else cut
 * the newest connections beyond `max_clients` (counted across all protocols and servers).
 */
export function decide(
  connectionsByUser: ReadonlyMap<string, readonly LiveConnectionRef[]>,
  userOf: (username: string) => UserFacts | undefined,
  resellerOf: (id: number) => ResellerFacts | undefined,
  now: Date,
  isSettled: (c: LiveConnectionRef) => boolean = (c) => c.settled !== false,
): Decision[] {
  const out: Decision[] = [];
  for (const [username, connections] of connectionsByUser) {
    if (connections.length === 0) continue;
    const user = userOf(username);
    if (!user) {
      out.push({ kind: 'cut_user', username, reason: 'unknown_user', connections: [...connections] });
      continue;
    }
    const reseller = user.sub_admin_id == null ? null : resellerOf(user.sub_admin_id);
    const status = statusOf(user, reseller, now);
    if (!mayConnect(status)) {
      out.push({ kind: 'cut_user', username, reason: status as CutReason, connections: [...connections] });
      continue;
    }
    // Connections on a protocol the user no longer has, or a server it may no longer use
    // (its own pins or its reseller's allow-list shrank), end; they do not count below.
    const misplaced = new Map<'protocol_disabled' | 'server_not_allowed', LiveConnectionRef[]>();
    const kept: LiveConnectionRef[] = [];
    for (const c of connections) {
      const where = parseSource(c.sourceId);
      const reason = !where ? null : !user.protocols[where.protocol] ? 'protocol_disabled' : !serverAllowed(user, reseller, where.serverId) ? 'server_not_allowed' : null;
      if (reason) misplaced.set(reason, [...(misplaced.get(reason) ?? []), c]);
      else kept.push(c);
    }
    for (const [reason, list] of misplaced) out.push({ kind: 'cut_sessions', username, reason, connections: list });
    const limit = clientLimit(user);
    const settled = kept.filter(isSettled);
    if (settled.length > limit) {
      const newest = settled.sort(newestFirst);
      out.push({ kind: 'cut_sessions', username, reason: 'max_clients', connections: newest.slice(0, settled.length - limit) });
    }
  }
  return out;
}

/** `openvpn@node_3` → its protocol and server (null for anything else). */
export function parseSource(sourceId: string): { protocol: ProtocolId; serverId: string } | null {
  const at = sourceId.indexOf('@');
  if (at <= 0) return null;
  const protocol = sourceId.slice(0, at) as ProtocolId;
  try {
    protocolSpec(protocol);
  } catch {
    return null;
  }
  return { protocol, serverId: sourceId.slice(at + 1) };
}

export interface AuthorizeFacts {
  user: UserFacts | undefined;
  reseller: ResellerFacts | null | undefined;
  /** Connections the user holds now on every protocol and server (settled ones plus ones just authorized). */
  liveConnections: number;
  now: Date;
  /** Turns a stored password into plain text when it is stored sealed. */
  openSecret?: (stored: string) => string;
}

/**
 * The verdict for a new connection. Checked in the order an operator would explain it:
 * identity, protocol, server, password, status, then the concurrent connection limit.
 */
export function authorizeDecision(request: AuthorizeRequest, facts: AuthorizeFacts): AuthorizeResult {
  const { user, reseller } = facts;
  if (!user) return { allowed: false, reason: 'unknown user' };
  const enabled = user.protocols[request.protocol];
  if (!enabled) return { allowed: false, reason: `${request.protocol} is not enabled for this user` };
  if (!serverAllowed(user, reseller, request.serverId)) return { allowed: false, reason: `server ${request.serverId} is not allowed for this user` };
  if (request.password !== undefined && protocolSpec(request.protocol).columns.password) {
    const stored = enabled.password;
    if (!stored || !samePassword(request.password, stored, facts.openSecret)) return { allowed: false, reason: 'invalid credentials' };
  }
  const status = statusOf(user, reseller, facts.now);
  if (!mayConnect(status)) return { allowed: false, reason: `user is ${status}` };
  if (facts.liveConnections >= clientLimit(user)) return { allowed: false, reason: `max_clients (${user.max_clients}) reached` };
  return { allowed: true };
}

function samePassword(given: string, stored: string, openSecret?: (s: string) => string): boolean {
  let plain = stored;
  if (openSecret && stored.startsWith('v1.')) {
    try {
      plain = openSecret(stored);
    } catch {
      plain = stored;
    }
  }
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(plain, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The one server-access rule (see services/server-access.ts) on the facts' JSON lists. */
export function serverAllowed(user: Pick<UserFacts, 'nodes'>, reseller: Pick<ResellerFacts, 'allowed_servers'> | null | undefined, serverId: string): boolean {
  return mayUseServer(parseServerIds(user.nodes), reseller ? parseServerIds(reseller.allowed_servers) : null, serverId);
}

/**
 * flexible_days users start their clock at the first connection: first_connection_at = now,
 * expiry = now + pending_activation_days (no expiry when that is unset).
 */
export function activationFor(user: Pick<UserFacts, 'activation_type' | 'first_connection_at' | 'pending_activation_days'>, now: Date): { first_connection_at: Date; expiry_date: Date | null } | null {
  if (user.activation_type !== 'flexible_days' || user.first_connection_at) return null;
  const days = user.pending_activation_days;
  return {
    first_connection_at: now,
    expiry_date: days != null && days > 0 ? new Date(now.getTime() + days * 86_400_000) : null,
  };
}

/** When the next periodic reset is due, counted from the last reset (or creation), in UTC. */
export function nextResetAt(strategy: string, anchor: Date): Date | null {
  const d = new Date(anchor.getTime());
  switch (strategy) {
    case 'day':
      return new Date(d.getTime() + 86_400_000);
    case 'week':
      return new Date(d.getTime() + 7 * 86_400_000);
    case 'month':
      return addMonthsUtc(d, 1);
    case 'year':
      return addMonthsUtc(d, 12);
    default:
      return null;
  }
}

/** Whether usage must be zeroed now under the user's data_limit_reset_strategy. */
export function resetDue(user: Pick<UserFacts, 'data_limit_reset_strategy' | 'last_traffic_reset_at' | 'created_at'>, now: Date): boolean {
  const anchor = toDate(user.last_traffic_reset_at) ?? toDate(user.created_at);
  if (!anchor) return false;
  const next = nextResetAt(user.data_limit_reset_strategy, anchor);
  return next !== null && now.getTime() >= next.getTime();
}

/** Jan 31 + 1 month = Feb 28/29: the day is clamped to the target month's length. */
function addMonthsUtc(d: Date, months: number): Date {
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth() + months;
  const lastDay = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
  return new Date(Date.UTC(y, m, Math.min(d.getUTCDate(), lastDay), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()));
}

export function toDate(v: Date | string | number | null | undefined): Date | null {
  if (v === null || v === undefined || v === '') return null;
  const d = v instanceof Date ? v : new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}
