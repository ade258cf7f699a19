import { randomBytes } from 'node:crypto';
import type { Transaction } from 'sequelize';
import type { CoreContext } from '../context';
import { insertBound, NodeRecord, SubAdmin } from '../db';
import type { ResellerFacts, UserFacts } from '../enforcement/policy';
import { loadFacts, loadResellers } from '../enforcement/user-facts';
import { deriveStatus, GiB, resellerOverQuota, userOverLimit } from '../services/user-status';
import { WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookState } from './models';
import { GLOBAL_ONLY_EVENTS, type WebhookEventType, type WebhookOptions } from './options';

const DAY_MS = 86_400_000;

/**
 * What the detector remembers per user. Conditions are tracked, not the status alone, so a
 * disabled user that also expires still gets `user.expired`, and each occurrence is keyed:
 * `limitedN` counts entries into "over the limit or quota", `usageEpoch` counts drops of the
 * usage level (a reset, a raised limit) after which thresholds may fire again.
 */
export interface UserMark {
  baseline?: boolean;
  limited: boolean;
  limitedN: number;
  /** The expiry (ms) `user.expired` was sent for. */
  expiredFor: number | null;
  usageLevel: number;
  usageEpoch: number;
  /** The expiry (ms) the `user.expiring` level below belongs to. */
  expiringFor: number | null;
  expiringLevel: number | null;
}

interface FlagMark {
  on: boolean;
  n: number;
}

export interface PendingEvent {
  type: WebhookEventType;
  /** Unique per occurrence; the outbox refuses a second row with it. */
  key: string;
  /** Deliveries of one subject to one endpoint are sent in order. */
  subject: string;
  /** The reseller the event belongs to (null: the main admin's own). */
  ownerId: number | null;
  data: Record<string, unknown>;
}

type StateWrite = { subject: string; kind: WebhookState['kind']; refId: number; name: string | null; ownerId: number | null; state: unknown } | { subject: string; remove: true };

const FRESH: UserMark = { limited: false, limitedN: 0, expiredFor: null, usageLevel: 0, usageEpoch: 0, expiringFor: null, expiringLevel: null };

const ms = (d: Date | string | null): number | null => (d == null ? null : new Date(d).getTime());

/**
 * Pure: the user's new mark and the events its change since `prev` makes. `prev` undefined
 * means a user not seen before (announced as created); a baseline mark is taken over silently.
 */
export function userTransitions(user: UserFacts, reseller: ResellerFacts | null | undefined, prev: UserMark | undefined, now: Date, options: Pick<WebhookOptions, 'usagePercents' | 'expiringDays'>): { mark: UserMark; events: PendingEvent[] } {
  const used = user.upload_bytes + user.download_bytes;
  const overLimit = userOverLimit(user);
  const overQuota = resellerOverQuota(reseller);
  const limitedNow = overLimit || overQuota;
  const expiry = ms(user.expiry_date);
  const expiredNow = expiry != null && expiry <= now.getTime();
  const usageLevel = user.data_limit_bytes > 0 ? Math.max(0, ...options.usagePercents.filter((p) => used * 100 >= p * user.data_limit_bytes)) : 0;
  const left = expiry == null ? null : expiry - now.getTime();
  const fitting = left == null || expiredNow ? [] : options.expiringDays.filter((d) => left <= d * DAY_MS);
  const expiringLevel = fitting.length ? Math.min(...fitting) : null;

  if (prev?.baseline) {
    return {
      mark: { limited: limitedNow, limitedN: 0, expiredFor: expiredNow ? expiry : null, usageLevel, usageEpoch: 0, expiringFor: expiry, expiringLevel },
      events: [],
    };
  }
  const subject = `user:${user.id}`;
  const base = {
    username: user.username,
    sub_admin_id: user.sub_admin_id,
    status: deriveStatus(user, reseller, now),
    data_limit_bytes: user.data_limit_bytes,
    used_bytes: used,
    expiry_date: expiry == null ? null : new Date(expiry).toISOString(),
  };
  const events: PendingEvent[] = [];
  const event = (type: WebhookEventType, key: string, extra: Record<string, unknown> = {}) => events.push({ type, key, subject, ownerId: user.sub_admin_id, data: { ...base, ...extra } });
  const was = prev ?? FRESH;
  const mark: UserMark = { ...was };
  // Pushed in the order they happen to a user: a threshold is crossed before the limit is.
  if (!prev) event('user.created', `user.created:${user.id}`);

  let floor = was.usageLevel;
  if (usageLevel < floor) {
    mark.usageEpoch = was.usageEpoch + 1;
    floor = usageLevel;
  }
  // One event for the highest threshold crossed: a jump from 10 % to 95 % is one occurrence.
  if (usageLevel > floor) event('user.usage_reached', `user.usage_reached:${user.id}:${mark.usageEpoch}:${usageLevel}`, { percent: usageLevel, used_percent: Math.floor((used * 100) / user.data_limit_bytes) });
  mark.usageLevel = usageLevel;

  const sameExpiry = was.expiringFor === expiry;
  const firedLevel = sameExpiry ? was.expiringLevel : null;
  if (expiringLevel != null && (firedLevel == null || expiringLevel < firedLevel)) {
    event('user.expiring', `user.expiring:${user.id}:${expiry}:${expiringLevel}`, { days: expiringLevel, expires_in_seconds: Math.floor(left! / 1000) });
    mark.expiringLevel = expiringLevel;
  } else {
    mark.expiringLevel = firedLevel;
  }
  mark.expiringFor = expiry;

  if (limitedNow && !was.limited) {
    mark.limitedN = was.limitedN + 1;
    event('user.limited', `user.limited:${user.id}:${mark.limitedN}`, { reason: overLimit ? 'data_limit' : 'reseller_quota' });
  }
  mark.limited = limitedNow;

  if (expiredNow && was.expiredFor !== expiry) {
    mark.expiredFor = expiry;
    event('user.expired', `user.expired:${user.id}:${expiry}`);
  }
  return { mark, events };
}

/** What one pass looks at: named users, or every user (a sweep). Resellers and nodes are always looked at. */
export type Scope = { usernames: ReadonlySet<string> } | 'all';

/**
 * Finds occurrences by comparing the database with what it last saw (`webhook_state`), and
 * writes the new state, the events and their deliveries in one transaction: an occurrence is
 * queued exactly once, and one found after a crash (the change committed, the pass did not
 * run) is found by the next pass instead of being lost.
 */
export class WebhookDetector {
  constructor(
    private readonly ctx: CoreContext,
    private readonly options: WebhookOptions,
  ) {}

  /** Returns the number of events queued. `silent`: take the current facts as the baseline. */
  async pass(scope: Scope, silent = false): Promise<number> {
    const now = this.ctx.clock.now();
    const writes: StateWrite[] = [];
    const events: PendingEvent[] = [];
    // A reseller's quota event comes before the limited events of its users it causes.
    await this.resellers(silent, writes, events);
    if (scope === 'all' || scope.usernames.size > 0) await this.users(scope, now, silent, writes, events);
    await this.nodes(silent, writes, events);
    if (writes.length === 0) return 0;
    const queued = await this.ctx.db.transaction((t) => this.write(writes, events, now, t));
    return queued;
  }

  private async users(scope: Scope, now: Date, silent: boolean, writes: StateWrite[], events: PendingEvent[]): Promise<void> {
    const names = scope === 'all' ? null : [...scope.usernames];
    const facts = await loadFacts(names ?? 'all');
    const states = await WebhookState.findAll({ where: names ? { kind: 'user', name: names } : { kind: 'user' }, raw: true });
    const byId = new Map(states.map((s) => [s.ref_id, s]));
    const seen = new Set<number>();
    for (const user of facts.users.values()) {
      seen.add(user.id);
      const row = byId.get(user.id);
      const prev = row ? (JSON.parse(row.state) as UserMark) : undefined;
      const reseller = user.sub_admin_id == null ? null : facts.resellers.get(user.sub_admin_id);
      const { mark, events: found } = userTransitions(user, reseller, silent ? { ...FRESH, baseline: true } : prev, now, this.options);
      if (!row || row.state !== JSON.stringify(mark) || row.owner_id !== user.sub_admin_id) {
        writes.push({ subject: `user:${user.id}`, kind: 'user', refId: user.id, name: user.username, ownerId: user.sub_admin_id, state: mark });
      }
      events.push(...found);
    }
    for (const row of states) {
      if (seen.has(row.ref_id)) continue;
      writes.push({ subject: row.subject, remove: true });
      if (!silent) {
        events.push({ type: 'user.deleted', key: `user.deleted:${row.ref_id}`, subject: row.subject, ownerId: row.owner_id, data: { username: row.name, sub_admin_id: row.owner_id } });
      }
    }
  }

  private async resellers(silent: boolean, writes: StateWrite[], events: PendingEvent[]): Promise<void> {
    const facts = await loadResellers('all');
    const names = new Map((await SubAdmin.findAll({ attributes: ['id', 'username'], raw: true })).map((r) => [r.id, r.username]));
    await this.flags('reseller', facts.values(), (r) => resellerOverQuota(r), silent, writes, (r, n) => {
      events.push({
        type: 'reseller.quota_reached',
        key: `reseller.quota_reached:${r.id}:${n}`,
        subject: `reseller:${r.id}`,
        ownerId: r.id,
        data: { sub_admin_id: r.id, username: names.get(r.id) ?? null, quota_bytes: (r.total_usage_quota_gb ?? 0) * GiB, used_bytes: r.used_traffic_bytes },
      });
    });
  }

  private async nodes(silent: boolean, writes: StateWrite[], events: PendingEvent[]): Promise<void> {
    const nodes = await NodeRecord.findAll({ attributes: ['id', 'name', 'ip_address', 'status', 'status_message'], raw: true });
    await this.flags('node', nodes, (n) => n.status === 'offline', silent, writes, (node, n, on) => {
      // Back from offline counts as online only once the node is active again (not while it errs or is deleted).
      if (!on && node.status !== 'active') return false;
      const type = on ? 'node.offline' : 'node.online';
      events.push({
        type,
        key: `${type}:${node.id}:${n}`,
        subject: `node:${node.id}`,
        ownerId: null,
        data: { node_id: node.id, name: node.name, ip_address: node.ip_address, status: node.status, status_message: node.status_message },
      });
      return true;
    });
  }

  /**
   * A yes/no condition per row (reseller over quota, node offline): a row seen for the first
   * time is taken as it is; a change fires `fire` (which may decline, keeping the old mark).
   */
  private async flags<R extends { id: number }>(
    kind: 'reseller' | 'node',
    rows: Iterable<R>,
    condition: (r: R) => boolean,
    silent: boolean,
    writes: StateWrite[],
    fire: (r: R, n: number, on: boolean) => boolean | void,
  ): Promise<void> {
    const states = new Map((await WebhookState.findAll({ where: { kind }, raw: true })).map((s) => [s.ref_id, s]));
    const seen = new Set<number>();
    for (const r of rows) {
      seen.add(r.id);
      const row = states.get(r.id);
      const on = condition(r);
      const prev = row ? (JSON.parse(row.state) as FlagMark) : null;
      let mark: FlagMark = prev ?? { on, n: 0 };
      if (prev && prev.on !== on && !silent) {
        const n = prev.n + 1;
        mark = fire(r, n, on) === false ? prev : { on, n };
      } else if (prev && silent) {
        mark = { on, n: prev.n };
      }
      if (!row || row.state !== JSON.stringify(mark)) writes.push({ subject: `${kind}:${r.id}`, kind, refId: r.id, name: null, ownerId: kind === 'reseller' ? r.id : null, state: mark });
    }
    for (const row of states.values()) if (!seen.has(row.ref_id)) writes.push({ subject: row.subject, remove: true });
  }

  private async write(writes: StateWrite[], events: PendingEvent[], now: Date, transaction: Transaction): Promise<number> {
    // Replaced in bulk: a baseline pass over 100k users must not hold the write gate for 100k statements.
    const subjects = writes.map((w) => w.subject);
    for (let i = 0; i < subjects.length; i += 500) await WebhookState.destroy({ where: { subject: subjects.slice(i, i + 500) }, transaction });
    const rows = writes.flatMap((w) =>
      'remove' in w ? [] : [{ subject: w.subject, kind: w.kind, ref_id: w.refId, name: w.name, owner_id: w.ownerId, state: JSON.stringify(w.state), updated_at: now }],
    );
    await insertBound(WebhookState, rows, { transaction });
    if (events.length === 0) return 0;
    const endpoints = await WebhookEndpoint.findAll({ where: { enabled: true }, raw: true, transaction });
    let queued = 0;
    for (const e of events) {
      const targets = endpoints.filter((ep) => receives(ep, e));
      if (targets.length === 0) continue;
      if (await WebhookEvent.findOne({ where: { occurrence_key: e.key }, attributes: ['id'], transaction })) continue;
      const id = `evt_${randomBytes(12).toString('hex')}`;
      const body = JSON.stringify({ id, type: e.type, occurred_at: now.toISOString(), data: e.data });
      await WebhookEvent.create({ id, occurrence_key: e.key, type: e.type, subject: e.subject, owner_id: e.ownerId, occurred_at: now, body }, { transaction });
      const created = new Date();
      for (const ep of targets) {
        await WebhookDelivery.create({ event_id: id, endpoint_id: ep.id, subject: e.subject, next_attempt_at: created, created_at: created, last_attempt_at: null, last_status_code: null, last_error: null, delivered_at: null }, { transaction });
      }
      queued++;
    }
    return queued;
  }
}

/** Whether an endpoint takes an event: its filter, and its owner (a reseller gets its own events only). */
export function receives(endpoint: Pick<WebhookEndpoint, 'sub_admin_id' | 'events'>, event: Pick<PendingEvent, 'type' | 'ownerId'>): boolean {
  const filter = JSON.parse(endpoint.events) as string[];
  if (filter.length > 0 && !filter.includes(event.type)) return false;
  if (endpoint.sub_admin_id == null) return true;
  return !GLOBAL_ONLY_EVENTS.has(event.type) && event.ownerId === endpoint.sub_admin_id;
}
