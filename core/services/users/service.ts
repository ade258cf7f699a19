import { randomInt } from 'node:crypto';
import { UniqueConstraintError, type Transaction } from 'sequelize';
import type { CoreContext } from '../../context';
import { insertBound, SubAdmin, SubscriptionToken, User, UserUsage } from '../../db';
import { conflict, forbidden, invalid, notFound, unauthorized } from '../../errors';
import type { Principal } from '../../principal';
import { MATERIAL_COLUMNS, PROTOCOLS, type ProtocolId } from '../../protocols/table';
import { randomKey } from '../../secrets';
import type { Services } from '../index';
import { mayConnect, resellerOverQuota, userOverLimit } from '../user-status';
import { readResellerRow, readUserRow, statusOf, type ClientConfigLink, type ResellerRow, type SubscriptionDetail, type UserDetail } from '../user-view';
import {
  applyUserFields,
  checkUsername,
  editableOf,
  EMPTY_BODY,
  fillMissingPasswords,
  isWhole,
  MAX_BULK_COUNT,
  missingMaterial,
  renewedPasswords,
  NEW_USER_DEFAULTS,
  NOT_FOUND,
  NOT_FOUND_REVOKE,
  sameValue,
  toAttributes,
  UPDATE_FIELDS,
  USER_EXISTS,
  type CreateUsersInput,
  type EditableUser,
  type ListAllResult,
  type UpdateUserInput,
} from './fields';
import type { UserViews } from './views';

const emptyMaterial = (): Record<string, null> => Object.fromEntries(MATERIAL_COLUMNS.map((c) => [c, null]));

/**
 * Users: create (single and bulk), edit, toggle, reset, revoke, delete. Reads are the views'
 * (`./views.ts`); this class answers for both so callers have one users service. Every call
 * is scoped by the principal: a sub-admin sees and touches only its own users, and "not
 * found" and "not yours" are the same answer.
 */
export class UsersService {
  constructor(
    protected readonly ctx: CoreContext,
    protected readonly services: Services,
    readonly views: UserViews,
  ) {}

  listAll(principal: Principal): Promise<ListAllResult> {
    return this.views.listAll(principal);
  }

  get(principal: Principal, username: string): Promise<UserDetail> {
    return this.views.get(principal, username);
  }

  subscriptionUrl(principal: Principal, username: string): Promise<string> {
    return this.views.subscriptionUrl(principal, username);
  }

  clientConfigLinks(principal: Principal, username: string, protocol: ProtocolId): Promise<ClientConfigLink[]> {
    return this.views.clientConfigLinks(principal, username, protocol);
  }

  resolveSubscription(username: string, token: string): Promise<SubscriptionDetail | null> {
    return this.views.resolveSubscription(username, token);
  }

  subscriptionUrlFor(username: string, token: string, reseller?: { subscription_port: number | null } | null): string {
    return this.views.subscriptionUrlFor(username, token, reseller);
  }

  async create(principal: Principal, input: CreateUsersInput): Promise<{ created_users: string[] }> {
    const bulkCount = input.bulk_count ?? 0;
    if (!isWhole(bulkCount, 0, MAX_BULK_COUNT)) throw invalid(`Invalid bulk_count: must be a whole number from 1 to ${MAX_BULK_COUNT}.`);
    // When both are sent, bulk wins: bulk_count is the explicit request for N accounts, and a
    // single name cannot name N of them.
    const single = bulkCount === 0 ? input.username : undefined;
    if (bulkCount === 0) {
      if (single === undefined || single === null || single === '') throw invalid('Username is required.');
      checkUsername(single);
    }
    const now = this.ctx.clock.now();
    const template = applyUserFields(NEW_USER_DEFAULTS, input, now, true);
    const count = bulkCount || 1;

    let created: string[];
    try {
      created = await this.ctx.db.transaction(async (transaction) => {
        const { subAdminId, reseller } = await this.resolveOwner(principal, input.sub_admin_id, transaction);
        if (template.nodes) await this.checkServers(template.nodes, input.nodes !== undefined ? 'nodes' : 'allowed_nodes', reseller, transaction);
        if (principal.kind === 'sub_admin' && reseller) await this.checkResellerLimits(reseller.id, count, transaction);

        let names: string[];
        if (single !== undefined) {
          if ((await User.count({ where: { username: single }, transaction })) > 0) throw conflict(USER_EXISTS);
          names = [single];
        } else {
          names = await this.randomUsernames(count, transaction);
        }

        const rows = names.map((username) => {
          const user = { ...template, protocols: { ...template.protocols } };
          fillMissingPasswords(user);
          return {
            ...emptyMaterial(),
            ...toAttributes(user),
            ...missingMaterial(user, null),
            username,
            sub_admin_id: subAdminId,
            last_traffic_reset_at: null,
          };
        });
        // Bound parameters, not bulkCreate's inlined values (see insertBound).
        await insertBound(User, rows, { transaction });
        const ids = await User.findAll({ where: { username: names }, attributes: ['id', 'username'], raw: true, transaction });
        await insertBound(
          SubscriptionToken,
          ids.map((u) => ({ user_id: u.id, token: randomKey(32), revoked_at: null })),
          { transaction },
        );
        await this.leaseAddresses(template, ids.map((u) => u.id), transaction);
        return names;
      });
    } catch (e) {
      // Two creates racing for the same name: the unique index decides, the loser gets the same 409.
      if (e instanceof UniqueConstraintError) throw conflict(USER_EXISTS);
      throw e;
    }
    this.ctx.logger.info({ count: created.length, by: principalLabel(principal) }, 'users created');
    this.ctx.events.emit('users.changed', { usernames: created });
    return { created_users: created };
  }

  async update(principal: Principal, username: string, input: UpdateUserInput): Promise<void> {
    if (!UPDATE_FIELDS.some((k) => input[k] !== undefined)) throw invalid(EMPTY_BODY);
    const now = this.ctx.clock.now();
    await this.ctx.db.transaction(async (transaction) => {
      const user = await this.findOwned(principal, username, transaction);
      if (!user) throw notFound(NOT_FOUND);
      const current = readUserRow(user.get({ plain: true }) as unknown as Record<string, unknown>);
      const next = applyUserFields(editableOf(current), input, now, false);

      let ownerId = current.sub_admin_id;
      if (principal.kind === 'main' && input.sub_admin_id !== undefined) ownerId = input.sub_admin_id ?? null;
      const owner = ownerId === current.sub_admin_id ? await this.resellerRow(ownerId, transaction) : (await this.resolveOwner(principal, ownerId, transaction)).reseller;
      const nodesChanged = !sameValue(next.nodes, current.nodes);
      if (next.nodes && (nodesChanged || ownerId !== current.sub_admin_id)) {
        await this.checkServers(next.nodes, input.nodes !== undefined || input.allowed_nodes === undefined ? 'nodes' : 'allowed_nodes', owner, transaction);
      }
      fillMissingPasswords(next);

      const changes: Record<string, unknown> = {};
      const attributes = toAttributes(next);
      const currentAttributes = toAttributes(editableOf(current));
      for (const key of Object.keys(attributes)) {
        const before = currentAttributes[key];
        if (!sameValue(attributes[key], before)) changes[key] = attributes[key];
      }
      if (ownerId !== current.sub_admin_id) changes.sub_admin_id = ownerId;
      Object.assign(changes, missingMaterial(next, current.material));
      if (Object.keys(changes).length > 0) await user.update(changes, { transaction });
      await this.leaseAddresses(next, [current.id], transaction, current.material);
    });
    this.ctx.events.emit('users.changed', { usernames: [username] });
  }

  async toggle(principal: Principal, username: string): Promise<{ is_active: boolean }> {
    const isActive = await this.ctx.db.transaction(async (transaction) => {
      const user = await this.findOwned(principal, username, transaction);
      if (!user) throw notFound(NOT_FOUND);
      await user.update({ is_active: !user.is_active }, { transaction });
      return user.is_active;
    });
    this.ctx.events.emit('users.changed', { usernames: [username] });
    return { is_active: isActive };
  }

  /**
   * Zeroes the user's counters. `user_re_enabled` is true when the user was `limited` by its
   * own data limit and may connect again now (not when it is still held back by its
   * reseller's quota, expiry or being disabled).
   */
  async resetTraffic(principal: Principal, username: string): Promise<{ user_re_enabled: boolean }> {
    const now = this.ctx.clock.now();
    const reEnabled = await this.ctx.db.transaction(async (transaction) => {
      const user = await this.findOwned(principal, username, transaction);
      if (!user) throw notFound(NOT_FOUND);
      const usage = await UserUsage.findByPk(user.id, { transaction });
      const before = readUserRow({
        ...(user.get({ plain: true }) as unknown as Record<string, unknown>),
        upload_bytes: usage?.upload_bytes ?? 0,
        download_bytes: usage?.download_bytes ?? 0,
      });
      const reseller = await this.resellerRow(before.sub_admin_id, transaction);
      const statusBefore = statusOf(before, reseller, now);
      if (usage) await UserUsage.update({ upload_bytes: 0, download_bytes: 0 }, { where: { user_id: user.id }, transaction });
      await user.update({ last_traffic_reset_at: now }, { transaction });
      const statusAfter = statusOf({ ...before, upload_bytes: 0, download_bytes: 0 }, reseller, now);
      return statusBefore === 'limited' && userOverLimit(before) && mayConnect(statusAfter);
    });
    this.ctx.events.emit('users.changed', { usernames: [username] });
    return { user_re_enabled: reEnabled };
  }

  /** Replaces the subscription token: the old URL stops working as soon as this returns. */
  async revoke(principal: Principal, username: string): Promise<{ new_subscription_url: string }> {
    const now = this.ctx.clock.now();
    const { token, reseller } = await this.ctx.db.transaction(async (transaction) => {
      const user = await this.findOwned(principal, username, transaction);
      if (!user) throw notFound(NOT_FOUND_REVOKE);
      await SubscriptionToken.update({ revoked_at: now }, { where: { user_id: user.id, revoked_at: null }, transaction });
      const fresh = randomKey(32);
      await SubscriptionToken.create({ user_id: user.id, token: fresh, revoked_at: null }, { transaction });
      // Every credential the old page showed is replaced (protocol passwords, keys core keeps
      // such as WireGuard's): the old config stops working on the next apply, and the
      // reconciler then ends the sessions opened with it.
      const editable = editableOf(readUserRow(user.get({ plain: true }) as unknown as Record<string, unknown>));
      const renewed = { ...missingMaterial(editable, null), ...renewedPasswords(editable) };
      if (Object.keys(renewed).length) await user.update(renewed, { transaction });
      return { token: fresh, reseller: await this.resellerRow(user.sub_admin_id ?? null, transaction) };
    });
    this.ctx.logger.info({ username, by: principalLabel(principal) }, 'subscription token revoked');
    this.ctx.events.emit('users.revoked', { username });
    return { new_subscription_url: this.subscriptionUrlFor(username, token, reseller) };
  }

  async delete(principal: Principal, username: string): Promise<void> {
    await this.ctx.db.transaction(async (transaction) => {
      const user = await this.findOwned(principal, username, transaction);
      if (!user) throw notFound(NOT_FOUND);
      await SubscriptionToken.destroy({ where: { user_id: user.id }, transaction });
      await UserUsage.destroy({ where: { user_id: user.id }, transaction });
      await this.services.addresses.releaseUsers([user.id], transaction);
      await user.destroy({ transaction });
    });
    this.ctx.logger.info({ username, by: principalLabel(principal) }, 'user deleted');
    this.ctx.events.emit('users.deleted', { usernames: [username] });
  }

  // ------------------------------------------------------------------------------------------
  // Internals

  private findOwned(principal: Principal, username: string, transaction: Transaction): Promise<User | null> {
    if (typeof username !== 'string' || username.length === 0) return Promise.resolve(null);
    const where = principal.kind === 'sub_admin' ? { username, sub_admin_id: principal.subAdminId } : { username };
    return User.findOne({ where, transaction });
  }

  private async resellerRow(id: number | null, transaction: Transaction, lock = false): Promise<ResellerRow | null> {
    if (id === null) return null;
    const row = await SubAdmin.findByPk(id, { raw: true, transaction, lock: lock && this.ctx.db.dialect === 'postgres' ? transaction.LOCK.UPDATE : undefined });
    return row ? readResellerRow(row as unknown as Record<string, unknown>) : null;
  }

  /** Who will own the user: the calling reseller, or for the main admin the named reseller (or itself). */
  private async resolveOwner(principal: Principal, requested: number | null | undefined, transaction: Transaction): Promise<{ subAdminId: number | null; reseller: ResellerRow | null }> {
    if (principal.kind === 'sub_admin') {
      // Locked so two concurrent creates cannot both pass the reseller's user limit.
      const reseller = await this.resellerRow(principal.subAdminId, transaction, true);
      if (!reseller) throw unauthorized('Invalid or inactive API key');
      return { subAdminId: reseller.id, reseller };
    }
    if (requested === undefined || requested === null) return { subAdminId: null, reseller: null };
    const reseller = Number.isInteger(requested) ? await this.resellerRow(requested, transaction) : null;
    if (!reseller) throw invalid('Unknown sub_admin_id.');
    return { subAdminId: reseller.id, reseller };
  }

  /**
   * A reseller's limits for `adding` more users: its user count and its traffic quota. Only a
   * sub-admin's own key is held to them; the main admin may assign users to a reseller beyond.
   * A max_users_limit of null or 0 means unlimited (as a quota of 0 does).
   */
  private async checkResellerLimits(subAdminId: number, adding: number, transaction: Transaction): Promise<void> {
    const reseller = await SubAdmin.findByPk(subAdminId, { raw: true, transaction });
    if (!reseller) throw unauthorized('Invalid or inactive API key');
    const limit = reseller.max_users_limit;
    if (limit !== null && limit > 0) {
      const existing = await User.count({ where: { sub_admin_id: subAdminId }, transaction });
      if (existing + adding > limit) throw forbidden(`User limit reached: this sub-admin may have at most ${limit} users (${existing} exist).`);
    }
    if (resellerOverQuota(readResellerRow(reseller as unknown as Record<string, unknown>))) {
      throw forbidden('Traffic quota exhausted: this sub-admin has used its total_usage_quota_gb.');
    }
  }

  private async checkServers(nodes: string[], field: string, reseller: ResellerRow | null, transaction: Transaction): Promise<void> {
    const known = new Set((await this.services.servers.list(transaction)).map((s) => s.id));
    const allowed = reseller && reseller.allowed_servers.length > 0 ? new Set(reseller.allowed_servers) : null;
    for (const id of nodes) {
      if (!known.has(id)) throw invalid(`Invalid ${field}: unknown server '${id}'.`);
      if (allowed && !allowed.has(id)) throw invalid(`Invalid ${field}: server '${id}' is not allowed for this sub-admin.`);
    }
  }

  /**
   * `count` names like `user1234` that no user has: random digits, checked against the
   * database in batches; more digits when the 4-digit space gets crowded.
   */
  private async randomUsernames(count: number, transaction: Transaction): Promise<string[]> {
    const chosen = new Set<string>();
    let digits = 4;
    for (let round = 0; chosen.size < count; round++) {
      if (round > 50) throw new Error('could not find free random usernames');
      const space = 9 * 10 ** (digits - 1);
      if ((chosen.size + count) * 2 > space && digits < 12) {
        digits++;
        continue;
      }
      const candidates = new Set<string>();
      const need = count - chosen.size;
      for (let attempt = 0; candidates.size < need && attempt < need * 20; attempt++) {
        const name = `user${randomInt(10 ** (digits - 1), 10 ** digits)}`;
        if (!chosen.has(name)) candidates.add(name);
      }
      const taken = new Set(
        (await User.findAll({ where: { username: [...candidates] }, attributes: ['username'], raw: true, transaction })).map((u) => u.username),
      );
      for (const name of candidates) if (!taken.has(name)) chosen.add(name);
      if (taken.size * 4 > candidates.size && digits < 12) digits++;
    }
    return [...chosen];
  }

  /**
   * Tunnel addresses for protocols that need one (the table's `addressColumn`), for users that
   * have the protocol enabled and no address yet.
   */
  private async leaseAddresses(user: EditableUser, ids: number[], transaction: Transaction, current?: Record<string, string | null>): Promise<void> {
    for (const p of PROTOCOLS) {
      const column = p.addressColumn;
      if (!column || !user.protocols[p.id].enabled || current?.[column]) continue;
      const leased = [...(await this.services.addresses.leaseMany(this.services.addresses.poolOf(p.id), ids, transaction))];
      // One UPDATE (bound values) per 250 users: a bulk create of 1000 costs four statements.
      for (let i = 0; i < leased.length; i += 250) {
        const bind: unknown[] = [];
        const param = (v: unknown) => `$${bind.push(v)}`;
        const chunk = leased.slice(i, i + 250);
        const cases = chunk.map(([id, address]) => `WHEN ${param(id)} THEN ${param(address)}`).join(' ');
        await this.ctx.db.sequelize.query(`UPDATE users SET ${column} = CASE id ${cases} END WHERE id IN (${chunk.map(([id]) => param(id)).join(',')})`, { bind, transaction });
      }
    }
  }
}

const principalLabel = (p: Principal): string => (p.kind === 'main' ? 'main' : `sub_admin:${p.subAdminId}`);
