/**
 * Who each plugin must let in, as pure functions of the facts and the clock.
 *
 * A daemon that asks core at every login (`gatesLogins`) gets every user entitled to the
 * protocol on that server: core's authorize refuses the rest at login time. A daemon that never
 * asks (WireGuard peers, chap-secrets, password files) is enforced by omission: it gets exactly
 * the users allowed to connect *now*, and the set is recomputed whenever time alone changes the
 * answer (see `nextChangeAt`), after every accounting tick and after every change.
 */
import { clientLimit, nextResetAt, serverAllowed, statusOf, toDate, type ResellerFacts, type UserFacts } from '../enforcement/policy';
import type { DesiredUser, ProtocolId } from '../plugin/types';
import { protocolSpec } from '../protocols/table';
import { mayConnect } from '../services/user-status';

export interface DesiredUsersInput {
  protocol: ProtocolId;
  serverId: string;
  gatesLogins: boolean;
  users: Iterable<UserFacts>;
  resellerOf(id: number): ResellerFacts | undefined;
  /** Public material by username, column → value (the table's `material.public` columns). */
  materialOf(username: string): Readonly<Record<string, string | null>> | undefined;
  /** `protocol@server` of each live connection the user holds (settled or just authorized). */
  connectionSourcesOf(username: string): readonly string[];
  now: Date;
  /** Plain text of a stored password (sealed ones start with `v1.`). */
  openSecret?(stored: string): string;
}

/** Whether the user may use `protocol` on `serverId` at all (enabled, and the server is allowed). */
export function entitled(user: UserFacts, reseller: ResellerFacts | null | undefined, protocol: ProtocolId, serverId: string): boolean {
  return user.protocols[protocol] !== undefined && serverAllowed(user, reseller, serverId);
}

/**
 * Whether a login-less daemon may hold the user now: its status lets it connect, and it has
 * room under `max_clients` counted across every other protocol and server (its connections
 * on this very source are its own and keep it in, so a device already connected is not
 * thrown out by its own session).
 */
export function allowedNow(user: UserFacts, reseller: ResellerFacts | null | undefined, sourceId: string, sources: readonly string[], now: Date): boolean {
  if (!mayConnect(statusOf(user, reseller, now))) return false;
  if (sources.includes(sourceId)) return true;
  return sources.length < clientLimit(user);
}

export function desiredUsers(input: DesiredUsersInput): DesiredUser[] {
  const spec = protocolSpec(input.protocol);
  const sourceId = `${input.protocol}@${input.serverId}`;
  const out: DesiredUser[] = [];
  for (const user of input.users) {
    const reseller = user.sub_admin_id == null ? null : input.resellerOf(user.sub_admin_id);
    if (!entitled(user, reseller, input.protocol, input.serverId)) continue;
    const sources = input.gatesLogins ? [] : input.connectionSourcesOf(user.username);
    if (!input.gatesLogins && !allowedNow(user, reseller, sourceId, sources, input.now)) continue;
    const material: Record<string, string> = {};
    const columns = input.materialOf(user.username);
    let complete = true;
    for (const [name, column] of Object.entries(spec.material.public)) {
      const value = columns?.[column];
      if (value) material[name] = value;
      else complete = false;
    }
    // A user whose material is not there yet (its address is being leased) cannot be configured.
    if (!complete) continue;
    const desired: DesiredUser = { username: user.username, material };
    if (!input.gatesLogins && Number.isFinite(clientLimit(user))) {
      const elsewhere = sources.filter((s) => s !== sourceId).length;
      // Never below one: a user already here over its limit is cut by enforcement, newest first.
      desired.maxSessions = Math.max(1, clientLimit(user) - elsewhere);
    }
    const stored = user.protocols[input.protocol]?.password;
    if (stored) desired.password = input.openSecret && stored.startsWith('v1.') ? input.openSecret(stored) : stored;
    out.push(desired);
  }
  out.sort((a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0));
  return out;
}

/**
 * The next instant at which time alone changes who may connect: an expiry passing, a
 * periodic reset bringing a limited user back. (An on_hold user may connect already; its
 * activation starts at its first connection, which a tick sees.) Null when nothing is due.
 */
export function nextChangeAt(users: Iterable<UserFacts>, now: Date): Date | null {
  let next: number = Number.POSITIVE_INFINITY;
  const nowMs = now.getTime();
  for (const u of users) {
    if (Object.keys(u.protocols).length === 0) continue;
    const expiry = toDate(u.expiry_date);
    if (expiry && expiry.getTime() > nowMs) next = Math.min(next, expiry.getTime());
    if (u.data_limit_bytes > 0 && u.data_limit_reset_strategy !== 'no_reset') {
      const reset = nextResetAt(u.data_limit_reset_strategy, toDate(u.last_traffic_reset_at) ?? toDate(u.created_at) ?? now);
      if (reset && reset.getTime() > nowMs) next = Math.min(next, reset.getTime());
    }
  }
  return Number.isFinite(next) ? new Date(next) : null;
}
