import { randomInt } from 'node:crypto';
import { QueryTypes, UniqueConstraintError, type Transaction } from 'sequelize';
import type { CoreContext } from '../context';
import { insertBound, SubAdmin, SubscriptionToken, User, UserUsage } from '../db';
import { conflict, forbidden, invalid, notFound, unauthorized } from '../errors';
import type { Principal } from '../principal';
import { generatePassword, hashesEqual, randomKey, sha256Hex } from '../secrets';
import type { Services } from './index';
import { mayConnect, resellerOverQuota, userOverLimit } from './user-status';
import {
  buildServerCatalog,
  DATA_LIMIT_UNITS,
  openVpnEndpointsFor,
  readResellerRow,
  readUserRow,
  RESET_STRATEGIES,
  statusOf,
  toDetail,
  toListItem,
  UNIT_BYTES,
  type ActivationType,
  type DataLimitResetStrategy,
  type DataLimitUnit,
  type OvpnLink,
  type ResellerRow,
  type ServerCatalog,
  type SubscriptionDetail,
  type UserDetail,
  type UserListItem,
  type UserRow,
} from './user-view';
import { generateWireGuardKeyPair, wireGuardAddressFor } from './wireguard-keys';

export type { SubscriptionDetail, UserDetail, UserListItem } from './user-view';

/** Fields create and edit share (API names). Types are already checked by zod at the edge. */
export interface UserFieldsInput {
  max_clients?: number;
  activation_type?: ActivationType;
  pending_activation_days?: number | null;
  expiry_date_str?: string | null;
  expiry_days?: number | null;
  data_limit?: number | null;
  data_limit_unit?: DataLimitUnit;
  data_limit_reset_strategy?: DataLimitResetStrategy;
  enable_openvpn?: boolean;
  openvpn_password?: string;
  enable_l2tp?: boolean;
  l2tp_password?: string;
  enable_cisco?: boolean;
  cisco_password?: string;
  enable_wg1?: boolean;
  nodes?: string[] | null;
  notes?: string | null;
  /** Main admin only: the reseller the user belongs to (null = the main admin's own). Ignored for sub-admin keys. */
  sub_admin_id?: number | null;
}

export interface CreateUsersInput extends UserFieldsInput {
  username?: string;
  /** 1..1000 random names; 0 or null = single mode. Wins over `username` when both are sent. */
  bulk_count?: number | null;
}

export interface UpdateUserInput extends UserFieldsInput {
  /** Legacy alias of `nodes` (used when `nodes` is absent). */
  allowed_nodes?: string[] | null;
  is_active?: boolean;
}

export type ListAllResult =
  | { kind: 'main'; main_admin: { users: UserListItem[] }; sub_admins: { id: number; username: string; users: UserListItem[] }[] }
  | { kind: 'sub_admin'; users: UserListItem[] };

export const USERNAME_PATTERN = /^[a-zA-Z0-9_.-]{3,32}$/;
/** `GET /users/list_all` would shadow a user of that name. */
const RESERVED_USERNAMES = new Set(['list_all']);
export const MAX_BULK_COUNT = 1000;
const MAX_CLIENTS_LIMIT = 1000;
const MAX_DAYS = 36_500;
const MAX_NOTES_LENGTH = 4096;
const DAY_MS = 86_400_000;

const NOT_FOUND = 'User not found or permission denied';
const NOT_FOUND_REVOKE = 'User not found or permission denied.';
const EMPTY_BODY = 'Request body must be JSON and not empty';
const USER_EXISTS = 'User already exists.';

/** Printable ASCII except whitespace, `"` and `\`: these passwords end up in VPN secrets files. */
const PASSWORD_PATTERN = /^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/;

/** The user attributes create and edit decide; everything else is derived or bookkeeping. */
export type EditableUser = Omit<UserRow, 'id' | 'username' | 'sub_admin_id' | 'upload_bytes' | 'download_bytes' | 'wg_private_key' | 'wg_public_key' | 'wg_address'>;

const NEW_USER_DEFAULTS: EditableUser = {
  is_active: true,
  max_clients: 1,
  activation_type: 'fixed_date',
  pending_activation_days: null,
  expiry_date: null,
  first_connection_at: null,
  data_limit: 0,
  data_limit_unit: 'GB',
  data_limit_bytes: 0,
  data_limit_reset_strategy: 'no_reset',
  enable_openvpn: true,
  openvpn_password: null,
  enable_l2tp: false,
  l2tp_password: null,
  enable_cisco: false,
  cisco_password: null,
  enable_wg: false,
  nodes: null,
  notes: null,
};

/** Keys of UpdateUserInput that count as "something to change" (the path's username does not). */
const UPDATE_FIELDS: readonly (keyof UpdateUserInput)[] = [
  'max_clients',
  'activation_type',
  'pending_activation_days',
  'expiry_date_str',
  'expiry_days',
  'data_limit',
  'data_limit_unit',
  'data_limit_reset_strategy',
  'enable_openvpn',
  'openvpn_password',
  'enable_l2tp',
  'l2tp_password',
  'enable_cisco',
  'cisco_password',
  'enable_wg1',
  'nodes',
  'allowed_nodes',
  'notes',
  'sub_admin_id',
  'is_active',
];

const isWhole = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/**
 * `YYYY-MM-DD` → the first instant after that day (00:00 UTC of the next day): a user whose
 * expiry date is 2026-12-31 may connect through the whole of that date, and is expired from
 * 2027-01-01T00:00:00Z on.
 */
export function expiryFromDateString(value: string): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (m) {
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const day = new Date(Date.UTC(y, mo - 1, d));
    if (y >= 1970 && day.getUTCFullYear() === y && day.getUTCMonth() === mo - 1 && day.getUTCDate() === d) {
      return new Date(Date.UTC(y, mo - 1, d + 1));
    }
  }
  throw invalid('Invalid expiry_date_str: expected YYYY-MM-DD.');
}

export function dataLimitBytes(limit: number, unit: DataLimitUnit): number {
  return Math.round(limit * UNIT_BYTES[unit]);
}

function checkPassword(field: string, value: string | undefined): void {
  if (value !== undefined && !PASSWORD_PATTERN.test(value)) {
    throw invalid(`Invalid ${field}: use 1-64 printable ASCII characters without spaces, double quotes or backslashes.`);
  }
}

/**
 * Applies create/edit fields to a user's current values and returns the new ones (pure; throws
 * `invalid` naming the field). Derived values follow: data_limit_bytes from limit × unit,
 * expiry from the activation type.
 */
export function applyUserFields(base: EditableUser, input: UpdateUserInput, now: Date, isNew: boolean): EditableUser {
  const next: EditableUser = { ...base };

  if (input.is_active !== undefined) next.is_active = input.is_active;

  if (input.max_clients !== undefined) {
    if (!isWhole(input.max_clients, 1, MAX_CLIENTS_LIMIT)) throw invalid(`Invalid max_clients: must be a whole number from 1 to ${MAX_CLIENTS_LIMIT}.`);
    next.max_clients = input.max_clients;
  }

  if (input.data_limit !== undefined) {
    const limit = input.data_limit ?? 0;
    if (!(limit >= 0) || !Number.isFinite(limit)) throw invalid('Invalid data_limit: must be 0 (unlimited) or a positive number.');
    next.data_limit = limit;
  }
  if (input.data_limit_unit !== undefined) {
    if (!DATA_LIMIT_UNITS.includes(input.data_limit_unit)) throw invalid(`Invalid data_limit_unit: must be one of ${DATA_LIMIT_UNITS.join(', ')}.`);
    next.data_limit_unit = input.data_limit_unit;
  }
  next.data_limit_bytes = dataLimitBytes(next.data_limit, next.data_limit_unit);
  if (!Number.isSafeInteger(next.data_limit_bytes)) throw invalid('Invalid data_limit: the limit is too large.');

  if (input.data_limit_reset_strategy !== undefined) {
    if (!RESET_STRATEGIES.includes(input.data_limit_reset_strategy)) {
      throw invalid(`Invalid data_limit_reset_strategy: must be one of ${RESET_STRATEGIES.join(', ')}.`);
    }
    next.data_limit_reset_strategy = input.data_limit_reset_strategy;
  }

  // Validate the expiry inputs whenever they are sent, even where the activation type makes
  // them irrelevant: a typo should not pass silently.
  let expiryFromDate: Date | null | undefined;
  if (input.expiry_date_str !== undefined) {
    expiryFromDate = input.expiry_date_str === null || input.expiry_date_str === '' ? null : expiryFromDateString(input.expiry_date_str);
  }
  let expiryFromDays: Date | null | undefined;
  if (input.expiry_days !== undefined) {
    if (input.expiry_days !== null && !isWhole(input.expiry_days, 0, MAX_DAYS)) {
      throw invalid(`Invalid expiry_days: must be a whole number of days from 0 (no expiry) to ${MAX_DAYS}.`);
    }
    expiryFromDays = input.expiry_days ? new Date(now.getTime() + input.expiry_days * DAY_MS) : null;
  }
  if (input.pending_activation_days !== undefined && input.pending_activation_days !== null && !isWhole(input.pending_activation_days, 1, MAX_DAYS)) {
    throw invalid(`Invalid pending_activation_days: must be a whole number of days from 1 to ${MAX_DAYS}.`);
  }

  const activation = input.activation_type ?? base.activation_type;
  if (activation !== 'fixed_date' && activation !== 'flexible_days') throw invalid('Invalid activation_type: must be fixed_date or flexible_days.');
  if (activation === 'flexible_days') {
    const days = input.pending_activation_days !== undefined ? input.pending_activation_days : base.pending_activation_days;
    if (days === null || days === undefined) throw invalid('pending_activation_days is required for flexible_days activation (a whole number of days, at least 1).');
    const switching = isNew || base.activation_type !== 'flexible_days';
    next.activation_type = 'flexible_days';
    next.pending_activation_days = days;
    if (switching) {
      // A user switched to flexible_days starts over on hold: its days count from the next first connection.
      next.expiry_date = null;
      next.first_connection_at = null;
    } else if (days !== base.pending_activation_days && base.first_connection_at) {
      next.expiry_date = new Date(base.first_connection_at.getTime() + days * DAY_MS);
    }
  } else {
    next.activation_type = 'fixed_date';
    next.pending_activation_days = null;
    // The contract: expiry_date_str first, then expiry_days; neither keeps the current expiry (none for a new user).
    if (expiryFromDate !== undefined) next.expiry_date = expiryFromDate;
    else if (expiryFromDays !== undefined) next.expiry_date = expiryFromDays;
    else if (isNew) next.expiry_date = null;
  }

  if (input.enable_openvpn !== undefined) next.enable_openvpn = input.enable_openvpn;
  if (input.enable_l2tp !== undefined) next.enable_l2tp = input.enable_l2tp;
  if (input.enable_cisco !== undefined) next.enable_cisco = input.enable_cisco;
  if (input.enable_wg1 !== undefined) next.enable_wg = input.enable_wg1;
  checkPassword('openvpn_password', input.openvpn_password);
  checkPassword('l2tp_password', input.l2tp_password);
  checkPassword('cisco_password', input.cisco_password);
  if (input.openvpn_password !== undefined) next.openvpn_password = input.openvpn_password;
  if (input.l2tp_password !== undefined) next.l2tp_password = input.l2tp_password;
  if (input.cisco_password !== undefined) next.cisco_password = input.cisco_password;

  const nodes = input.nodes !== undefined ? input.nodes : input.allowed_nodes;
  if (nodes !== undefined) {
    const field = input.nodes !== undefined ? 'nodes' : 'allowed_nodes';
    if (nodes !== null && nodes.some((n) => typeof n !== 'string' || n.length === 0 || n.length > 32)) throw invalid(`Invalid ${field}: expected a list of server ids such as "main" or "node_1".`);
    // An empty list means the same as no list (every server the owner may use), as for a reseller's allowed_servers.
    next.nodes = nodes && nodes.length > 0 ? [...new Set(nodes)] : null;
  }

  if (input.notes !== undefined) {
    if (input.notes !== null && input.notes.length > MAX_NOTES_LENGTH) throw invalid(`Invalid notes: at most ${MAX_NOTES_LENGTH} characters.`);
    next.notes = input.notes === '' ? null : input.notes;
  }
  return next;
}

/** Passwords a protocol needs and nobody gave are generated (and then shown in the detail). */
function fillMissingPasswords(user: EditableUser): void {
  if (user.enable_openvpn && !user.openvpn_password) user.openvpn_password = generatePassword();
  if (user.enable_l2tp && !user.l2tp_password) user.l2tp_password = generatePassword();
  if (user.enable_cisco && !user.cisco_password) user.cisco_password = generatePassword();
}

function editableOf(row: UserRow): EditableUser {
  const out = {} as EditableUser;
  for (const key of Object.keys(NEW_USER_DEFAULTS) as (keyof EditableUser)[]) (out as unknown as Record<string, unknown>)[key] = row[key];
  return out;
}

/** Row values as written through the model: `nodes` as JSON text. */
function toAttributes(user: EditableUser) {
  return { ...user, nodes: user.nodes ? JSON.stringify(user.nodes) : null };
}

const sameValue = (a: unknown, b: unknown): boolean => {
  if (a instanceof Date || b instanceof Date) return (a as Date | null)?.getTime?.() === (b as Date | null)?.getTime?.();
  if (Array.isArray(a) || Array.isArray(b)) return JSON.stringify(a) === JSON.stringify(b);
  return a === b;
};

/** Everything a user's view needs, read in one raw query. */
interface LoadedUser {
  row: UserRow;
  reseller: ResellerRow | null;
  token: string | null;
  serversFingerprint: string;
}

const USER_VIEW_SQL = `
SELECT u.*, COALESCE(uu.upload_bytes, 0) AS upload_bytes, COALESCE(uu.download_bytes, 0) AS download_bytes,
  s.id AS r_id, s.username AS r_username, s.is_active AS r_is_active, s.total_usage_quota_gb AS r_total_usage_quota_gb,
  s.used_traffic_bytes AS r_used_traffic_bytes, s.allowed_servers AS r_allowed_servers, s.subscription_port AS r_subscription_port,
  t.token AS subscription_token,
  (SELECT COUNT(*) FROM nodes) AS fp_nodes_count, (SELECT MAX(updated_at) FROM nodes) AS fp_nodes_updated,
  (SELECT COUNT(*) FROM ports) AS fp_ports_count, (SELECT MAX(updated_at) FROM ports) AS fp_ports_updated,
  (SELECT COUNT(*) FROM port_assignments) AS fp_assignments_count, (SELECT MAX(updated_at) FROM port_assignments) AS fp_assignments_updated,
  (SELECT COUNT(*) FROM settings) AS fp_settings_count, (SELECT MAX(updated_at) FROM settings) AS fp_settings_updated
FROM users u
LEFT JOIN user_usage uu ON uu.user_id = u.id
LEFT JOIN sub_admins s ON s.id = u.sub_admin_id
LEFT JOIN subscription_tokens t ON t.user_id = u.id AND t.revoked_at IS NULL
WHERE u.username = $username`;

const LOAD_CACHE_MAX = 10_000;

const FINGERPRINT_COLUMNS = [
  'fp_nodes_count',
  'fp_nodes_updated',
  'fp_ports_count',
  'fp_ports_updated',
  'fp_assignments_count',
  'fp_assignments_updated',
  'fp_settings_count',
  'fp_settings_updated',
] as const;

const LIST_SQL = `
SELECT u.username, u.sub_admin_id, u.is_active, u.max_clients, u.activation_type, u.expiry_date, u.first_connection_at,
  u.data_limit, u.data_limit_unit, u.data_limit_bytes,
  COALESCE(uu.upload_bytes, 0) AS upload_bytes, COALESCE(uu.download_bytes, 0) AS download_bytes
FROM users u
LEFT JOIN user_usage uu ON uu.user_id = u.id`;

/**
 * Users: create (single and bulk), edit, toggle, reset, revoke, delete, and what the API and
 * the subscription pages show. Every call is scoped by the principal: a sub-admin sees and
 * touches only its own users, and "not found" and "not yours" are the same answer.
 */
export class UsersService {
  /**
   * OpenVPN endpoints and server addresses change rarely but every detail view needs them, so
   * they are cached and revalidated by a fingerprint (row counts + last update of nodes, ports,
   * assignments, settings) that rides along in the user query: no extra round trip, and no
   * stale answer even when another component writes those tables without emitting an event.
   */
  private catalogCache: { fingerprint: string; catalog: ServerCatalog } | null = null;
  /**
   * Loaded users by name, valid while the database's write generation is unchanged (any write
   * by this process, accounting ticks included, invalidates every entry). Bots poll the same
   * users over and over; between writes they are answered without a query.
   */
  private loadCache = new Map<string, LoadedUser>();
  private loadCacheGeneration = -1;

  constructor(
    protected readonly ctx: CoreContext,
    protected readonly services: Services,
  ) {}

  // ------------------------------------------------------------------------------------------
  // Reads

  async listAll(principal: Principal): Promise<ListAllResult> {
    const now = this.ctx.clock.now();
    const sequelize = this.ctx.db.sequelize;
    const isSub = principal.kind === 'sub_admin';
    const bind = isSub ? { sid: principal.subAdminId } : undefined;
    const [rawUsers, rawResellers] = await Promise.all([
      sequelize.query<Record<string, unknown>>(`${LIST_SQL}${isSub ? ' WHERE u.sub_admin_id = $sid' : ''} ORDER BY u.id`, { type: QueryTypes.SELECT, bind }),
      sequelize.query<Record<string, unknown>>(
        `SELECT id, username, is_active, total_usage_quota_gb, used_traffic_bytes, allowed_servers, subscription_port FROM sub_admins${isSub ? ' WHERE id = $sid' : ''} ORDER BY id`,
        { type: QueryTypes.SELECT, bind },
      ),
    ]);
    const resellers = new Map<number, ResellerRow>();
    for (const raw of rawResellers) {
      const r = readResellerRow(raw);
      if (r) resellers.set(r.id, r);
    }
    const live = this.ctx.live;
    const item = (raw: Record<string, unknown>): UserListItem => {
      const row = readUserRow(raw);
      return toListItem(row, row.sub_admin_id === null ? null : resellers.get(row.sub_admin_id) ?? null, now, live.connectionsOf(row.username));
    };
    if (isSub) return { kind: 'sub_admin', users: rawUsers.map(item) };

    const own: UserListItem[] = [];
    const byReseller = new Map<number, UserListItem[]>([...resellers.keys()].map((id) => [id, []]));
    for (const raw of rawUsers) {
      const u = item(raw);
      if (u.sub_admin_id === null) own.push(u);
      else byReseller.get(u.sub_admin_id)?.push(u);
    }
    return {
      kind: 'main',
      main_admin: { users: own },
      sub_admins: [...resellers.values()].map((r) => ({ id: r.id, username: r.username, users: byReseller.get(r.id) ?? [] })),
    };
  }

  async get(principal: Principal, username: string): Promise<UserDetail> {
    const loaded = await this.load(username, principal);
    if (!loaded) throw notFound(NOT_FOUND);
    if (!loaded.token) loaded.token = await this.tokenOf(loaded);
    return this.detailOf(loaded, await this.catalogFor(loaded));
  }

  async subscriptionUrl(principal: Principal, username: string): Promise<string> {
    const loaded = await this.load(username, principal);
    if (!loaded) throw notFound(NOT_FOUND);
    return this.subscriptionUrlFor(loaded.row.username, await this.tokenOf(loaded), loaded.reseller);
  }

  async ovpnLinks(principal: Principal, username: string): Promise<OvpnLink[]> {
    const loaded = await this.load(username, principal);
    if (!loaded) throw notFound(NOT_FOUND);
    const catalog = await this.catalogFor(loaded);
    return this.linksOf(loaded, catalog, await this.tokenOf(loaded));
  }

  /**
   * For the public /sub and /download pages: the user's full view when `token` is its current
   * subscription token, else null (unknown user, wrong or revoked token look the same). The
   * comparison is constant-time.
   */
  async resolveSubscription(username: string, token: string): Promise<SubscriptionDetail | null> {
    if (typeof username !== 'string' || typeof token !== 'string' || username.length > 64 || token.length > 128) return null;
    const loaded = await this.load(username, null, { fresh: true });
    const expected = loaded?.token ?? randomKey(32);
    if (!hashesEqual(sha256Hex(token), sha256Hex(expected)) || !loaded?.token) return null;
    const catalog = await this.catalogFor(loaded);
    const detail = this.detailOf(loaded, catalog);
    return {
      ...detail,
      wg_private_key: loaded.row.wg_private_key,
      openvpn_endpoints: openVpnEndpointsFor(loaded.row, loaded.reseller, catalog),
      ovpn_links: this.linksOf(loaded, catalog, loaded.token),
    };
  }

  /**
   * Where a user's subscription page lives: the panel's public URL, or — for a reseller with
   * its own subscription port — the same scheme and host on that port.
   */
  subscriptionBaseFor(reseller: { subscription_port: number | null } | null | undefined): string {
    const base = this.ctx.config.publicUrlResolved;
    if (!reseller?.subscription_port) return base;
    const url = new URL(base);
    return `${url.protocol}//${url.hostname}:${reseller.subscription_port}`;
  }

  subscriptionUrlFor(username: string, token: string, reseller?: { subscription_port: number | null } | null): string {
    return `${this.subscriptionBaseFor(reseller)}/sub/${encodeURIComponent(username)}?token=${encodeURIComponent(token)}`;
  }

  ovpnDownloadUrlFor(username: string, endpointName: string, token: string, reseller?: { subscription_port: number | null } | null): string {
    return `${this.subscriptionBaseFor(reseller)}/download/${encodeURIComponent(username)}/${encodeURIComponent(endpointName)}.ovpn?token=${encodeURIComponent(token)}`;
  }

  // ------------------------------------------------------------------------------------------
  // Writes

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
          const user = { ...template };
          fillMissingPasswords(user);
          const keys = user.enable_wg ? generateWireGuardKeyPair() : null;
          return {
            ...toAttributes(user),
            username,
            sub_admin_id: subAdminId,
            last_traffic_reset_at: null,
            wg_private_key: keys?.privateKey ?? null,
            wg_public_key: keys?.publicKey ?? null,
            wg_address: null,
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
        if (template.enable_wg) await this.assignWireGuardAddresses(ids.map((u) => u.id), transaction);
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
      for (const key of Object.keys(attributes) as (keyof typeof attributes)[]) {
        const before = key === 'nodes' ? (current.nodes ? JSON.stringify(current.nodes) : null) : current[key];
        if (!sameValue(attributes[key], before)) changes[key] = attributes[key];
      }
      if (ownerId !== current.sub_admin_id) changes.sub_admin_id = ownerId;
      if (next.enable_wg && !current.wg_private_key) {
        const keys = generateWireGuardKeyPair();
        changes.wg_private_key = keys.privateKey;
        changes.wg_public_key = keys.publicKey;
      }
      if (next.enable_wg && !current.wg_address) changes.wg_address = wireGuardAddressFor(current.id);
      if (Object.keys(changes).length > 0) await user.update(changes, { transaction });
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
      await user.destroy({ transaction });
    });
    this.ctx.logger.info({ username, by: principalLabel(principal) }, 'user deleted');
    this.ctx.events.emit('users.deleted', { usernames: [username] });
  }

  // ------------------------------------------------------------------------------------------
  // Internals

  /** One raw query: the user, its reseller, its current token and the servers fingerprint. */
  /**
   * One user with its reseller and token. A cache hit serves only callers who may see the user:
   * anyone else pays the same query as for a name that does not exist, so answer times reveal
   * nothing about other resellers' users. `fresh` always queries (the public pages, where the
   * token check must cost the same for every name).
   */
  private async load(username: string, principal: Principal | null, options: { fresh?: boolean } = {}): Promise<LoadedUser | null> {
    const generation = this.ctx.db.writeGeneration();
    if (generation !== this.loadCacheGeneration) {
      this.loadCache.clear();
      this.loadCacheGeneration = generation;
    }
    const mayServe = (l: LoadedUser) => principal?.kind !== 'sub_admin' || l.row.sub_admin_id === principal.subAdminId;
    const hit = options.fresh ? undefined : this.loadCache.get(username);
    if (hit && mayServe(hit)) return { ...hit };
    // A reseller's query is scoped to its own users in SQL: another reseller's user then costs
    // exactly what an unknown name costs (no row, nothing parsed), so GET timings reveal nothing.
    const loaded = await this.query(username, principal?.kind === 'sub_admin' ? principal.subAdminId : undefined);
    if (!loaded) return null;
    // Only cache what was read under the generation we checked: a write meanwhile made it stale.
    if (this.ctx.db.writeGeneration() === generation && this.loadCache.size < LOAD_CACHE_MAX) this.loadCache.set(username, loaded);
    return mayServe(loaded) ? { ...loaded } : null;
  }

  private async query(username: string, subAdminId?: number): Promise<LoadedUser | null> {
    const scoped = subAdminId !== undefined;
    const rows = await this.ctx.db.sequelize.query<Record<string, unknown>>(`${USER_VIEW_SQL}${scoped ? ' AND u.sub_admin_id = $sid' : ''} ORDER BY t.id DESC LIMIT 1`, {
      type: QueryTypes.SELECT,
      bind: scoped ? { username, sid: subAdminId } : { username },
    });
    const raw = rows[0];
    if (!raw) return null;
    const fingerprint = JSON.stringify(FINGERPRINT_COLUMNS.map((c) => (raw[c] instanceof Date ? (raw[c] as Date).toISOString() : String(raw[c] ?? ''))));
    return {
      row: readUserRow(raw),
      reseller: readResellerRow(raw, 'r_'),
      token: raw.subscription_token == null ? null : String(raw.subscription_token),
      serversFingerprint: fingerprint,
    };
  }

  private async catalogFor(loaded: LoadedUser): Promise<ServerCatalog> {
    const cached = this.catalogCache;
    if (cached && cached.fingerprint === loaded.serversFingerprint) return cached.catalog;
    const catalog = buildServerCatalog(await this.services.servers.openVpnEndpoints(), this.ctx.config.publicHostResolved);
    this.catalogCache = { fingerprint: loaded.serversFingerprint, catalog };
    return catalog;
  }

  private detailOf(loaded: LoadedUser, catalog: ServerCatalog): UserDetail {
    const { row, reseller, token } = loaded;
    return toDetail({
      row,
      reseller,
      catalog,
      now: this.ctx.clock.now(),
      connections: this.ctx.live.connectionsOf(row.username),
      subscriptionUrl: token ? this.subscriptionUrlFor(row.username, token, reseller) : '',
    });
  }

  private linksOf(loaded: LoadedUser, catalog: ServerCatalog, token: string): OvpnLink[] {
    return openVpnEndpointsFor(loaded.row, loaded.reseller, catalog).map((e) => ({
      name: e.name,
      url: this.ovpnDownloadUrlFor(loaded.row.username, e.name, token, loaded.reseller),
    }));
  }

  /** The user's current token, created when a user inserted by other means has none yet. */
  private async tokenOf(loaded: LoadedUser): Promise<string> {
    if (loaded.token) return loaded.token;
    return this.ctx.db.transaction(async (transaction) => {
      // The user may have been deleted since it was loaded (a concurrent DELETE): then it is
      // not found, rather than a token row failing its foreign key (a 500).
      if (!(await User.count({ where: { id: loaded.row.id }, transaction }))) throw notFound(NOT_FOUND);
      const existing = await SubscriptionToken.findOne({ where: { user_id: loaded.row.id, revoked_at: null }, order: [['id', 'DESC']], raw: true, transaction });
      if (existing) return existing.token;
      const token = randomKey(32);
      await SubscriptionToken.create({ user_id: loaded.row.id, token, revoked_at: null }, { transaction });
      return token;
    });
  }

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

  /** Addresses derive from row ids, known only after the insert: one UPDATE (bound values) per 250 users. */
  private async assignWireGuardAddresses(ids: number[], transaction: Transaction): Promise<void> {
    const sequelize = this.ctx.db.sequelize;
    for (let i = 0; i < ids.length; i += 250) {
      const chunk = ids.slice(i, i + 250);
      const bind: unknown[] = [];
      const param = (v: unknown) => `$${bind.push(v)}`;
      const cases = chunk.map((id) => `WHEN ${param(id)} THEN ${param(wireGuardAddressFor(id))}`).join(' ');
      const list = chunk.map((id) => param(id)).join(',');
      await sequelize.query(`UPDATE users SET wg_address = CASE id ${cases} END WHERE id IN (${list})`, { bind, transaction });
    }
  }
}

function checkUsername(username: string): void {
  if (!USERNAME_PATTERN.test(username)) {
    throw invalid("Invalid username: use 3-32 characters from letters, digits, '_', '.' and '-'.");
  }
  if (RESERVED_USERNAMES.has(username)) throw invalid(`Invalid username: '${username}' is reserved.`);
}

const principalLabel = (p: Principal): string => (p.kind === 'main' ? 'main' : `sub_admin:${p.subAdminId}`);
