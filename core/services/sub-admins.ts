import { col, fn, Op, QueryTypes, UniqueConstraintError, type Transaction } from 'sequelize';
import type { CoreContext } from '../context';
import { ApiKey, SubAdmin, User } from '../db';
import { conflict, forbidden, invalid, notFound } from '../errors';
import type { Principal } from '../principal';
import { hashPassword, randomKey, sha256Hex } from '../secrets';
import type { PortClaim } from './port-registry';
import { checkSupportContact } from './settings';
import { deriveStatus, mayConnect, type ResellerStatusInputs } from './user-status';
import type { Services } from './index';

/** A reseller as the main admin sees it (never the password hash or the key). */
export interface SubAdminView {
  id: number;
  username: string;
  subscription_port: number | null;
  panel_port: number | null;
  max_users_limit: number | null;
  total_usage_quota_gb: number | null;
  is_active: boolean;
  notes: string | null;
  /** Shown to its customers; null = the global contact. */
  support_contact: string | null;
  allowed_servers: string[];
  users_count: number;
  used_traffic_bytes: number;
}

/** Fields a reseller can be created with; `null` clears an optional setting. */
export interface SubAdminFields {
  password?: string;
  subscription_port?: number | null;
  panel_port?: number | null;
  max_users_limit?: number | null;
  total_usage_quota_gb?: number | null;
  is_active?: boolean;
  notes?: string | null;
  support_contact?: string | null;
  allowed_servers?: string[] | null;
}

export interface SubAdminCreateInput extends SubAdminFields {
  username?: string;
}

export type SubAdminUpdateInput = SubAdminFields;

export interface CreatedSubAdmin {
  id: number;
  username: string;
  /** Shown once; only its SHA-256 is stored. */
  api_key: string;
}

/** What the reseller listeners need: where each active reseller wants to be served. */
export interface ResellerPorts {
  subAdminId: number;
  panel_port: number | null;
  subscription_port: number | null;
}

export type ResellerPortRole = 'panel' | 'subscription';

const USERNAME_PATTERN = /^[a-zA-Z0-9_.-]{3,64}$/;
const MIN_RESELLER_PORT = 1024;
const MAX_PORT = 65535;
const MAX_NOTES_LENGTH = 1000;
const MAX_PASSWORD_LENGTH = 256;
const ROLES: readonly ResellerPortRole[] = ['panel', 'subscription'];

export const resellerPortOwner = (subAdminId: number, role: ResellerPortRole) => `sub_admin:${subAdminId}:${role}`;

const NOT_FOUND = 'Sub-admin not found';

/** Reseller (sub-admin) management; every method is for the main admin only. */
export class SubAdminsService {
  constructor(
    protected readonly ctx: CoreContext,
    protected readonly services: Services,
  ) {}

  async list(principal: Principal): Promise<SubAdminView[]> {
    requireMainAdmin(principal);
    const rows = await SubAdmin.findAll({
      raw: true,
      attributes: ['id', 'username', 'subscription_port', 'panel_port', 'max_users_limit', 'total_usage_quota_gb', 'is_active', 'notes', 'support_contact', 'allowed_servers', 'used_traffic_bytes'],
      order: [['id', 'ASC']],
    });
    const counts = (await User.findAll({
      raw: true,
      attributes: ['sub_admin_id', [fn('COUNT', col('id')), 'users_count']],
      where: { sub_admin_id: { [Op.ne]: null } },
      group: ['sub_admin_id'],
    })) as unknown as { sub_admin_id: number; users_count: number | string }[];
    const countBy = new Map(counts.map((c) => [Number(c.sub_admin_id), Number(c.users_count)]));
    return rows.map((r) => ({
      id: r.id,
      username: r.username,
      subscription_port: r.subscription_port ?? null,
      panel_port: r.panel_port ?? null,
      max_users_limit: r.max_users_limit ?? null,
      total_usage_quota_gb: r.total_usage_quota_gb == null ? null : Number(r.total_usage_quota_gb),
      is_active: Boolean(r.is_active),
      notes: r.notes ?? null,
      support_contact: r.support_contact ?? null,
      allowed_servers: parseServerList(r.allowed_servers),
      users_count: countBy.get(r.id) ?? 0,
      // raw reads skip the model getter, and PostgreSQL returns BIGINT as a string
      used_traffic_bytes: Number(r.used_traffic_bytes ?? 0),
    }));
  }

  async create(principal: Principal, input: SubAdminCreateInput): Promise<CreatedSubAdmin> {
    requireMainAdmin(principal);
    if (!input.username || !input.password) throw invalid('Username and password are required.');
    const username = input.username;
    if (!USERNAME_PATTERN.test(username)) {
      throw invalid("Field 'username' must be 3 to 64 characters: letters, digits, '_', '.' or '-'.");
    }
    const password = checkPassword(input.password);
    const fields = validateFields(input);
    const panelPort = fields.panel_port ?? null;
    const subscriptionPort = fields.subscription_port ?? null;
    checkDistinctPorts(panelPort, subscriptionPort);
    // Hashed before the transaction: scrypt is deliberately slow and must not hold the database.
    const passwordHash = hashPassword(password);
    const apiKey = randomKey(32);

    const created = await this.ctx.db
      .transaction(async (transaction) => {
        if (await SubAdmin.count({ where: { username }, transaction })) {
          throw conflict('A sub-admin with this username already exists.');
        }
        const allowed = await this.checkServers(fields.allowed_servers ?? [], transaction);
        const row = await SubAdmin.create(
          {
            username,
            password_hash: passwordHash,
            panel_port: panelPort,
            subscription_port: subscriptionPort,
            max_users_limit: fields.max_users_limit ?? null,
            total_usage_quota_gb: fields.total_usage_quota_gb ?? null,
            is_active: fields.is_active ?? true,
            notes: fields.notes ?? null,
            support_contact: fields.support_contact ?? null,
            allowed_servers: JSON.stringify(allowed),
          },
          { transaction },
        );
        await this.services.portRegistry.claim(claimsFor(row.id, { panel: panelPort, subscription: subscriptionPort }), transaction);
        await ApiKey.create({ key_hash: sha256Hex(apiKey), kind: 'sub_admin', sub_admin_id: row.id }, { transaction });
        return row;
      })
      .catch(uniqueViolationAsConflict);

    this.ctx.logger.info({ subAdminId: created.id, username, panelPort, subscriptionPort }, 'sub-admin created');
    this.ctx.events.emit('sub_admins.changed', { subAdminId: created.id });
    return { id: created.id, username, api_key: apiKey };
  }

  async update(principal: Principal, id: number, input: SubAdminUpdateInput): Promise<{ id: number }> {
    requireMainAdmin(principal);
    const fields = validateFields(input);
    // Hashed before the transaction: scrypt is deliberately slow and must not hold the database.
    const passwordHash = input.password === undefined ? undefined : hashPassword(checkPassword(input.password));

    const { usernames, statusMayChange } = await this.ctx.db
      .transaction(async (transaction) => {
        const row = await SubAdmin.findByPk(id, { transaction });
        if (!row) throw notFound(NOT_FOUND);

        const nextPorts = {
          panel: fields.panel_port === undefined ? row.panel_port : fields.panel_port,
          subscription: fields.subscription_port === undefined ? row.subscription_port : fields.subscription_port,
        };
        checkDistinctPorts(nextPorts.panel, nextPorts.subscription);
        // Release every moved port first, so swapping panel and subscription ports in one call works.
        const moved = ROLES.filter((role) => nextPorts[role] !== (role === 'panel' ? row.panel_port : row.subscription_port));
        for (const role of moved) await this.services.portRegistry.release({ owner: resellerPortOwner(id, role) }, transaction);
        const movedPorts: Partial<Record<ResellerPortRole, number | null>> = {};
        for (const role of moved) movedPorts[role] = nextPorts[role];
        await this.services.portRegistry.claim(claimsFor(id, movedPorts), transaction);

        if (fields.allowed_servers !== undefined) {
          row.allowed_servers = JSON.stringify(await this.checkServers(fields.allowed_servers ?? [], transaction));
        }
        if (passwordHash !== undefined) row.password_hash = passwordHash;
        if (fields.panel_port !== undefined) row.panel_port = fields.panel_port;
        if (fields.subscription_port !== undefined) row.subscription_port = fields.subscription_port;
        if (fields.max_users_limit !== undefined) row.max_users_limit = fields.max_users_limit;
        if (fields.total_usage_quota_gb !== undefined) row.total_usage_quota_gb = fields.total_usage_quota_gb;
        if (fields.is_active !== undefined) row.is_active = fields.is_active;
        if (fields.notes !== undefined) row.notes = fields.notes;
        if (fields.support_contact !== undefined) row.support_contact = fields.support_contact;
        const statusMayChange = row.changed('is_active') || row.changed('total_usage_quota_gb') || row.changed('allowed_servers');
        await row.save({ transaction });
        // Deactivation, a new quota or other servers change what every user of this reseller may do.
        const usernames = statusMayChange ? await this.usernamesOf(id, transaction) : [];
        return { usernames, statusMayChange };
      })
      .catch(uniqueViolationAsConflict);

    this.ctx.logger.info({ subAdminId: id, fields: Object.keys(input).filter((k) => k !== 'password') }, 'sub-admin updated');
    this.ctx.events.emit('sub_admins.changed', { subAdminId: id });
    if (statusMayChange && usernames.length) this.ctx.events.emit('users.changed', { usernames });
    return { id };
  }

  /** Zeroes the reseller's usage; answers how many of its users that let back on. */
  async resetUsage(principal: Principal, id: number): Promise<{ reEnabled: number }> {
    requireMainAdmin(principal);
    const now = this.ctx.clock.now();
    const reEnabled = await this.ctx.db.transaction(async (transaction) => {
      const row = await SubAdmin.findByPk(id, { transaction });
      if (!row) throw notFound('Sub-admin not found.');
      const before: ResellerStatusInputs = {
        is_active: row.is_active,
        total_usage_quota_gb: row.total_usage_quota_gb,
        used_traffic_bytes: row.used_traffic_bytes,
      };
      const after: ResellerStatusInputs = { ...before, used_traffic_bytes: 0 };
      const users = await this.ctx.db.sequelize.query<{
        username: string;
        is_active: unknown;
        activation_type: 'fixed_date' | 'flexible_days';
        expiry_date: Date | string | null;
        first_connection_at: Date | string | null;
        data_limit_bytes: unknown;
        upload_bytes: unknown;
        download_bytes: unknown;
      }>(
        'SELECT u.username, u.is_active, u.activation_type, u.expiry_date, u.first_connection_at, u.data_limit_bytes, ' +
          'COALESCE(uu.upload_bytes, 0) AS upload_bytes, COALESCE(uu.download_bytes, 0) AS download_bytes ' +
          'FROM users u LEFT JOIN user_usage uu ON uu.user_id = u.id WHERE u.sub_admin_id = $id',
        { type: QueryTypes.SELECT, bind: { id }, transaction },
      );
      const names: string[] = [];
      for (const u of users) {
        const user = {
          ...u,
          is_active: Boolean(u.is_active),
          data_limit_bytes: Number(u.data_limit_bytes ?? 0),
          upload_bytes: Number(u.upload_bytes ?? 0),
          download_bytes: Number(u.download_bytes ?? 0),
        };
        if (deriveStatus(user, before, now) === 'limited' && mayConnect(deriveStatus(user, after, now))) names.push(u.username);
      }
      row.used_traffic_bytes = 0;
      await row.save({ transaction });
      return names;
    });

    this.ctx.logger.info({ subAdminId: id, reEnabled: reEnabled.length }, 'sub-admin usage reset');
    this.ctx.events.emit('sub_admins.changed', { subAdminId: id });
    if (reEnabled.length) this.ctx.events.emit('users.changed', { usernames: reEnabled });
    return { reEnabled: reEnabled.length };
  }

  /** Removes the reseller with its key, its port claims and every one of its users. */
  async delete(principal: Principal, id: number): Promise<void> {
    requireMainAdmin(principal);
    const usernames = await this.ctx.db.transaction(async (transaction) => {
      const row = await SubAdmin.findByPk(id, { transaction, attributes: ['id'] });
      if (!row) throw notFound(NOT_FOUND);
      const names = await this.usernamesOf(id, transaction);
      // A subquery rather than an id list: a reseller may own more users than a statement may bind.
      for (const table of ['subscription_tokens', 'user_usage'] as const) {
        await this.ctx.db.sequelize.query(`DELETE FROM ${table} WHERE user_id IN (SELECT id FROM users WHERE sub_admin_id = $id)`, {
          type: QueryTypes.DELETE,
          bind: { id },
          transaction,
        });
      }
      await User.destroy({ where: { sub_admin_id: id }, transaction });
      await ApiKey.destroy({ where: { sub_admin_id: id }, transaction });
      for (const role of ROLES) await this.services.portRegistry.release({ owner: resellerPortOwner(id, role) }, transaction);
      await SubAdmin.destroy({ where: { id }, transaction });
      return names;
    });

    this.ctx.logger.info({ subAdminId: id, usersDeleted: usernames.length }, 'sub-admin deleted');
    if (usernames.length) this.ctx.events.emit('users.deleted', { usernames });
    this.ctx.events.emit('sub_admins.deleted', { subAdminId: id });
  }

  /** Ports each active reseller should be served on (for the reseller listeners, not the API). */
  async activeResellerPorts(): Promise<ResellerPorts[]> {
    const rows = await SubAdmin.findAll({
      raw: true,
      attributes: ['id', 'panel_port', 'subscription_port'],
      where: { is_active: true },
      order: [['id', 'ASC']],
    });
    return rows.map((r) => ({ subAdminId: r.id, panel_port: r.panel_port ?? null, subscription_port: r.subscription_port ?? null }));
  }

  private async usernamesOf(subAdminId: number, transaction: Transaction): Promise<string[]> {
    const rows = await User.findAll({ raw: true, attributes: ['username'], where: { sub_admin_id: subAdminId }, transaction });
    return rows.map((r) => r.username);
  }

  private async checkServers(ids: readonly string[], transaction: Transaction): Promise<string[]> {
    const unique = [...new Set(ids)];
    for (const serverId of unique) {
      if (!(await this.services.servers.exists(serverId, transaction))) {
        throw invalid(`Field 'allowed_servers' names an unknown server: '${serverId}'.`);
      }
    }
    return unique;
  }
}

function requireMainAdmin(principal: Principal): void {
  if (principal.kind !== 'main') throw forbidden('Permission denied');
}

function checkPassword(password: string): string {
  if (password.length === 0) throw invalid("Field 'password' cannot be empty.");
  if (password.length > MAX_PASSWORD_LENGTH) throw invalid(`Field 'password' must be at most ${MAX_PASSWORD_LENGTH} characters.`);
  return password;
}

/** Range and shape checks the zod schema leaves to us so tRPC and REST get the same sentences. */
function validateFields(input: SubAdminFields): SubAdminFields {
  for (const field of ['panel_port', 'subscription_port'] as const) {
    const port = input[field];
    if (port != null && (!Number.isInteger(port) || port < MIN_RESELLER_PORT || port > MAX_PORT)) {
      throw invalid(`Field '${field}' must be an integer between ${MIN_RESELLER_PORT} and ${MAX_PORT}.`);
    }
  }
  const limit = input.max_users_limit;
  if (limit != null && (!Number.isInteger(limit) || limit < 0)) {
    throw invalid("Field 'max_users_limit' must be a whole number of users, 0 or more.");
  }
  const quota = input.total_usage_quota_gb;
  if (quota != null && (!Number.isFinite(quota) || quota < 0)) {
    throw invalid("Field 'total_usage_quota_gb' must be a number of GB, 0 or more.");
  }
  if (input.notes != null && input.notes.length > MAX_NOTES_LENGTH) {
    throw invalid(`Field 'notes' must be at most ${MAX_NOTES_LENGTH} characters.`);
  }
  if (input.support_contact !== undefined) return { ...input, support_contact: checkSupportContact(input.support_contact) };
  return input;
}

function checkDistinctPorts(panel: number | null | undefined, subscription: number | null | undefined): void {
  if (panel != null && panel === subscription) {
    throw invalid("Fields 'panel_port' and 'subscription_port' must be different ports.");
  }
}

function claimsFor(subAdminId: number, ports: Partial<Record<ResellerPortRole, number | null>>): PortClaim[] {
  const claims: PortClaim[] = [];
  for (const role of ROLES) {
    const port = ports[role];
    if (port != null) claims.push({ server: 'main', port, protocol: 'tcp', owner: resellerPortOwner(subAdminId, role) });
  }
  return claims;
}

function parseServerList(value: string | null | undefined): string[] {
  if (!value) return [];
  try {
    const parsed: unknown = JSON.parse(value);
    return Array.isArray(parsed) ? parsed.filter((s): s is string => typeof s === 'string') : [];
  } catch {
    return [];
  }
}

/**
 * Two concurrent changes racing for one name or one port (PostgreSQL; SQLite serializes
 * writers): the unique index decides, and the loser gets a 409 instead of a 500.
 */
function uniqueViolationAsConflict(error: unknown): never {
  if (error instanceof UniqueConstraintError) {
    if (error.errors.some((e) => e.path === 'username')) throw conflict('A sub-admin with this username already exists.');
    if (error.errors.some((e) => e.path === 'port')) throw conflict('That port was taken by a concurrent change; please try again.');
  }
  throw error;
}
