import { Op } from 'sequelize';
import type { CoreContext } from '../context';
import { User, UserUsage } from '../db';
import { activationFor, resetDue, statusOf, type ResellerFacts, type UserFacts } from '../enforcement/policy';
import { loadFacts, type FactsCache, type FactsSnapshot } from '../enforcement/user-facts';
import type { Logger } from '../logger';
import { GiB } from '../services/user-status';
import type { TickReport } from './engine';
import type { LiveSessions } from './live-sessions';
import type { ChangedUsage } from './usage-sums';

/*
 * What a committed tick changes besides the counters: flexible_days users activated by their
 * first session, periodic resets that fell due, and the users whose status the tick flipped,
 * which the engine announces and enforces.
 */

export class AfterCommit {
  /** Users known to have first_connection_at set (or not flexible): no activation check needed. */
  private readonly activationDone = new Set<string>();
  private lastResetCheckMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly ctx: CoreContext,
    private readonly facts: FactsCache,
    private readonly live: LiveSessions,
    private readonly logger: Logger,
    private readonly resetCheckIntervalMs: number,
  ) {}

  /** Changed users are checked for activation again at their next session. */
  forget(usernames: readonly string[]): void {
    for (const u of usernames) this.activationDone.delete(u);
  }

  /**
   * After a commit: starts flexible_days users' clocks at their first session, applies due
   * periodic resets, and announces every user whose status changed. Returns the facts the
   * enforcement pass decides on.
   */
  async run(
    now: Date,
    changed: ReadonlyMap<number, ChangedUsage>,
    resellerBytes: ReadonlyMap<number, number>,
    report: TickReport,
  ): Promise<FactsSnapshot> {
    const online = [...this.live.connectionsByUser().keys()].filter(Boolean);
    const changedNames = [...changed.values()].map((c) => c.username);
    for (const c of changed.values()) this.facts.addUsage(c.username, c.rx, c.tx);
    for (const [id, bytes] of resellerBytes) this.facts.addResellerUsage(id, bytes);
    const facts = await this.facts.snapshot([...online, ...changedNames]);
    const flipped = new Set<string>();

    // Status before this tick's usage: the same facts minus the deltas.
    const resellerDelta = new Map<number, number>();
    for (const c of changed.values()) {
      const u = facts.users.get(c.username);
      if (u?.sub_admin_id != null) resellerDelta.set(u.sub_admin_id, (resellerDelta.get(u.sub_admin_id) ?? 0) + c.rx + c.tx);
    }
    const resellerBefore = (id: number | null): ResellerFacts | null => {
      if (id == null) return null;
      const r = facts.resellers.get(id);
      if (!r) return null;
      return { ...r, used_traffic_bytes: r.used_traffic_bytes - (resellerDelta.get(id) ?? 0) };
    };
    for (const c of changed.values()) {
      const u = facts.users.get(c.username);
      if (!u) continue;
      const before: UserFacts = { ...u, upload_bytes: u.upload_bytes - c.rx, download_bytes: u.download_bytes - c.tx };
      const reseller = u.sub_admin_id == null ? null : facts.resellers.get(u.sub_admin_id);
      if (statusOf(before, resellerBefore(u.sub_admin_id), now) !== statusOf(u, reseller, now)) flipped.add(u.username);
    }
    // A reseller crossing its quota changes every one of its users, connected or not.
    for (const [id, delta] of resellerDelta) {
      const r = facts.resellers.get(id);
      if (!r || r.total_usage_quota_gb == null || r.total_usage_quota_gb <= 0) continue;
      const quota = r.total_usage_quota_gb * GiB;
      if (r.used_traffic_bytes - delta < quota && r.used_traffic_bytes >= quota) {
        const rows = await User.findAll({ raw: true, attributes: ['username'], where: { sub_admin_id: id } });
        for (const row of rows) flipped.add(row.username);
        this.logger.info({ subAdminId: id }, 'reseller reached its usage quota; its users are limited');
      }
    }

    // flexible_days: the first session starts the clock (a session seen live, or one that
    // began and ended between two polls and was only reported by its disconnect event).
    const toActivate: UserFacts[] = [];
    for (const name of new Set([...online, ...changedNames])) {
      if (this.activationDone.has(name)) continue;
      const u = facts.users.get(name);
      if (!u) continue;
      if (activationFor(u, now)) toActivate.push(u);
      else this.activationDone.add(name);
    }
    if (toActivate.length) {
      const byDays = new Map<number | null, UserFacts[]>();
      for (const u of toActivate) {
        const list = byDays.get(u.pending_activation_days) ?? [];
        list.push(u);
        byDays.set(u.pending_activation_days, list);
      }
      await this.ctx.db.transaction(async (transaction) => {
        for (const [, list] of byDays) {
          const a = activationFor(list[0], now)!;
          await User.update(
            { first_connection_at: a.first_connection_at, expiry_date: a.expiry_date },
            { where: { id: { [Op.in]: list.map((u) => u.id) }, first_connection_at: null }, transaction },
          );
        }
      });
      for (const u of toActivate) {
        const a = activationFor(u, now)!;
        u.first_connection_at = a.first_connection_at;
        u.expiry_date = a.expiry_date;
        this.activationDone.add(u.username);
        flipped.add(u.username);
        this.logger.info({ username: u.username, expiry: a.expiry_date }, 'flexible_days user activated by its first session');
      }
    }

    // Periodic resets (looked for at most once per interval of the domain clock).
    if (now.getTime() - this.lastResetCheckMs >= this.resetCheckIntervalMs) {
      this.lastResetCheckMs = now.getTime();
      const reset = await this.applyPeriodicResets(now, facts);
      for (const name of reset.flipped) flipped.add(name);
      report.resetUsers = reset.reset;
    }

    report.statusChanged = [...flipped].sort();
    return facts;
  }

  /**
   * Zeroes usage of users whose data_limit_reset_strategy period has passed since
   * last_traffic_reset_at (or creation), and records the reset time.
   */
  async applyPeriodicResets(now: Date, facts?: FactsSnapshot): Promise<{ reset: string[]; flipped: string[] }> {
    const rows = await User.findAll({
      raw: true,
      attributes: ['id', 'username', 'sub_admin_id', 'data_limit_reset_strategy', 'last_traffic_reset_at', 'created_at'],
      where: { data_limit_reset_strategy: { [Op.ne]: 'no_reset' } },
    });
    const due = rows.filter((r) => resetDue(r, now));
    if (!due.length) return { reset: [], flipped: [] };
    const names = due.map((r) => r.username);
    const before = await loadFacts(names);
    await this.ctx.db.transaction(async (transaction) => {
      for (let i = 0; i < due.length; i += 1000) {
        const ids = due.slice(i, i + 1000).map((r) => r.id);
        await UserUsage.update({ upload_bytes: 0, download_bytes: 0 }, { where: { user_id: { [Op.in]: ids } }, transaction });
        await User.update({ last_traffic_reset_at: now }, { where: { id: { [Op.in]: ids } }, transaction });
      }
    });
    const flipped = new Set<string>();
    for (const name of names) {
      const u = before.users.get(name);
      if (!u) continue;
      const reseller = u.sub_admin_id == null ? null : before.resellers.get(u.sub_admin_id);
      const after: UserFacts = { ...u, upload_bytes: 0, download_bytes: 0, last_traffic_reset_at: now };
      if (statusOf(u, reseller, now) !== statusOf(after, reseller, now)) flipped.add(name);
      const shared = facts?.users.get(name);
      if (shared) {
        shared.upload_bytes = 0;
        shared.download_bytes = 0;
        shared.last_traffic_reset_at = now;
      }
    }
    this.facts.invalidateUsers(names);
    this.logger.info({ users: names.length }, 'periodic traffic reset applied');
    return { reset: names, flipped: [...flipped] };
  }
}
