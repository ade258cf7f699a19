import { QueryTypes, type Transaction } from 'sequelize';
import type { CoreContext } from '../../context';
import { SubscriptionToken, User } from '../../db';
import { notFound } from '../../errors';
import type { Principal } from '../../principal';
import type { ProtocolId } from '../../protocols/table';
import { hashesEqual, randomKey, sha256Hex } from '../../secrets';
import type { Services } from '../index';
import {
  buildServerCatalog,
  endpointsFor,
  readResellerRow,
  readUserRow,
  toBool,
  toDate,
  toDetail,
  toListItem,
  toNullableNumber,
  toNumber,
  type ClientConfigLink,
  type ClientConfigOffer,
  type DataLimitUnit,
  type ListRow,
  type ProtocolOffer,
  type ResellerRow,
  type ServerCatalog,
  type SubscriptionDetail,
  type UserDetail,
  type UserListItem,
  type UserRow,
} from '../user-view';
import { NOT_FOUND, type ListAllResult } from './fields';

/** Everything a user's view needs, read in one raw query. */
export interface LoadedUser {
  row: UserRow;
  reseller: ResellerRow | null;
  token: string | null;
  serversFingerprint: string;
}

/** Which protocols render client configs, with which file extension, and whether as a QR code too (from their plugins). */
export interface ClientConfigFormats {
  formatOf(protocol: ProtocolId): { extension: string; qr: boolean } | null;
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

/**
 * Scopes (all users, or one reseller's) whose list rows are kept between writes. A reseller's
 * list is read with its own scoped query and kept under its own key, never filtered out of
 * the full list: what it costs depends only on its own users.
 */
const LIST_CACHE_SCOPES = 64;
/** Beyond this many rows a scope's list is read afresh each time, bounding what the cache holds. */
const LIST_CACHE_MAX_ROWS = 50_000;

interface ListSnapshot {
  users: ListRow[];
  resellers: ResellerRow[];
}

/** The list's columns only: read 10k times per list, so nothing else is parsed. */
function readListRow(raw: Record<string, unknown>): ListRow {
  return {
    username: String(raw.username),
    sub_admin_id: toNullableNumber(raw.sub_admin_id),
    is_active: toBool(raw.is_active),
    max_clients: toNumber(raw.max_clients),
    activation_type: raw.activation_type === 'flexible_days' ? 'flexible_days' : 'fixed_date',
    expiry_date: toDate(raw.expiry_date),
    first_connection_at: toDate(raw.first_connection_at),
    data_limit: toNumber(raw.data_limit),
    data_limit_unit: (raw.data_limit_unit as DataLimitUnit) ?? 'GB',
    data_limit_bytes: toNumber(raw.data_limit_bytes),
    upload_bytes: toNumber(raw.upload_bytes),
    download_bytes: toNumber(raw.download_bytes),
  };
}

const LIST_SQL = `
SELECT u.username, u.sub_admin_id, u.is_active, u.max_clients, u.activation_type, u.expiry_date, u.first_connection_at,
  u.data_limit, u.data_limit_unit, u.data_limit_bytes,
  COALESCE(uu.upload_bytes, 0) AS upload_bytes, COALESCE(uu.download_bytes, 0) AS download_bytes
FROM users u
LEFT JOIN user_usage uu ON uu.user_id = u.id`;

/**
 * What the API and the subscription pages show about users, scoped by the principal: a
 * sub-admin sees only its own users, and "not found" and "not yours" are the same answer.
 */
export class UserViews {
  /**
   * Endpoints and server addresses change rarely but every detail view needs them, so they
   * are cached and revalidated by a fingerprint (row counts + last update of nodes, ports,
   * assignments, settings) that rides along in the user query, plus the version of what runs
   * where (plugins starting or failing).
   */
  private catalogCache: { fingerprint: string; offerVersion: number; catalog: ServerCatalog } | null = null;
  /**
   * Loaded users by name, valid while the database's write generation is unchanged (any write
   * by this process, accounting ticks included, invalidates every entry). Bots poll the same
   * users over and over; between writes they are answered without a query.
   */
  private loadCache = new Map<string, LoadedUser>();
  private loadCacheGeneration = -1;

  constructor(
    private readonly ctx: CoreContext,
    private readonly services: Services,
    private readonly offer: ProtocolOffer & { version(): number },
    private readonly formats: ClientConfigFormats,
  ) {}

  /**
   * Rows of list_all per scope (`all`, `sub:<id>`), valid while the write generation is
   * unchanged, like `loadCache`. Only rows are kept: status and `is_online` depend on the clock
   * and on live sessions, so they are computed for every answer.
   */
  private listCache = new Map<string, ListSnapshot>();
  private listCacheGeneration = -1;

  async listAll(principal: Principal): Promise<ListAllResult> {
    const now = this.ctx.clock.now();
    const isSub = principal.kind === 'sub_admin';
    const { users: rows, resellers: resellerRows } = await this.listSnapshot(isSub ? principal.subAdminId : undefined);
    const resellers = new Map<number, ResellerRow>();
    for (const r of resellerRows) resellers.set(r.id, r);
    const live = this.ctx.live;
    const item = (row: ListRow): UserListItem =>
      toListItem(row, row.sub_admin_id === null ? null : resellers.get(row.sub_admin_id) ?? null, now, live.connectionsOf(row.username));
    if (isSub) return { kind: 'sub_admin', users: rows.map(item) };

    const own: UserListItem[] = [];
    const byReseller = new Map<number, UserListItem[]>([...resellers.keys()].map((id) => [id, []]));
    for (const row of rows) {
      const u = item(row);
      if (u.sub_admin_id === null) own.push(u);
      else byReseller.get(u.sub_admin_id)?.push(u);
    }
    return {
      kind: 'main',
      main_admin: { users: own },
      sub_admins: [...resellers.values()].map((r) => ({ id: r.id, username: r.username, users: byReseller.get(r.id) ?? [] })),
    };
  }

  /** The list rows of one scope: every user (`subAdminId` undefined) or one reseller's, in id order. */
  private async listSnapshot(subAdminId: number | undefined): Promise<ListSnapshot> {
    const generation = this.ctx.db.writeGeneration();
    if (generation !== this.listCacheGeneration) {
      this.listCache.clear();
      this.listCacheGeneration = generation;
    }
    const key = subAdminId === undefined ? 'all' : `sub:${subAdminId}`;
    const hit = this.listCache.get(key);
    if (hit) return hit;
    const isSub = subAdminId !== undefined;
    const bind = isSub ? { sid: subAdminId } : undefined;
    const sequelize = this.ctx.db.sequelize;
    const [rawUsers, rawResellers] = await Promise.all([
      sequelize.query<Record<string, unknown>>(`${LIST_SQL}${isSub ? ' WHERE u.sub_admin_id = $sid' : ''} ORDER BY u.id`, { type: QueryTypes.SELECT, bind }),
      sequelize.query<Record<string, unknown>>(
        `SELECT id, username, is_active, total_usage_quota_gb, used_traffic_bytes, allowed_servers, subscription_port FROM sub_admins${isSub ? ' WHERE id = $sid' : ''} ORDER BY id`,
        { type: QueryTypes.SELECT, bind },
      ),
    ]);
    const snapshot: ListSnapshot = { users: rawUsers.map(readListRow), resellers: [] };
    for (const raw of rawResellers) {
      const r = readResellerRow(raw);
      if (r) snapshot.resellers.push(r);
    }
    // Only keep what was read under the generation checked above: a write meanwhile made it stale.
    if (this.ctx.db.writeGeneration() === generation && snapshot.users.length <= LIST_CACHE_MAX_ROWS && this.listCache.size < LIST_CACHE_SCOPES) {
      this.listCache.set(key, snapshot);
    }
    return snapshot;
  }

  /**
   * Changes whenever a user's detail (as `get` answers it) may have changed other than by the
   * clock: any write to the database, a plugin starting or failing, the user's live
   * connections. A detail computed under one stamp is exact while the stamp is unchanged and
   * `detailValidUntil` has not passed.
   */
  detailStamp(username: string): string {
    return `${this.ctx.db.writeGeneration()}:${this.offer.version()}:${this.ctx.live.connectionsOf(username)}`;
  }

  /**
   * Until when a detail stays exact under an unchanged stamp (ms since the epoch): its status is
   * the one part the clock changes, and only at `expiry_date` (see deriveStatus).
   */
  detailValidUntil(detail: Pick<UserDetail, 'expiry_date'>): number {
    const expiry = detail.expiry_date === null ? NaN : Date.parse(detail.expiry_date);
    return Number.isNaN(expiry) || expiry <= this.ctx.clock.now().getTime() ? Infinity : expiry;
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

  /** Download links of one protocol's client configs (the contract's `all_ovpn_links` for its protocol). */
  async clientConfigLinks(principal: Principal, username: string, protocol: ProtocolId): Promise<ClientConfigLink[]> {
    const loaded = await this.load(username, principal);
    if (!loaded) throw notFound(NOT_FOUND);
    const offers = this.clientConfigsOf(loaded, await this.catalogFor(loaded), await this.tokenOf(loaded));
    return offers.filter((o) => o.protocol === protocol).map((o) => ({ name: o.endpoint.name, url: o.url }));
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
    return {
      detail: this.detailOf(loaded, catalog),
      row: loaded.row,
      clientConfigs: this.clientConfigsOf(loaded, catalog, loaded.token),
      unavailableConfigs: this.clientConfigsOf(loaded, catalog, loaded.token, 'hidden'),
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

  downloadUrlFor(username: string, fileName: string, token: string, reseller?: { subscription_port: number | null } | null): string {
    return `${this.subscriptionBaseFor(reseller)}/download/${encodeURIComponent(username)}/${encodeURIComponent(fileName)}?token=${encodeURIComponent(token)}`;
  }

  /** The user's current token, created when a user inserted by other means has none yet. */
  async tokenOf(loaded: LoadedUser): Promise<string> {
    if (loaded.token) return loaded.token;
    return this.ctx.db.transaction(async (transaction: Transaction) => {
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

  /**
   * One user with its reseller and token. A cache hit serves only callers who may see the user:
   * anyone else pays the same query as for a name that does not exist, so answer times reveal
   * nothing about other resellers' users. `fresh` always queries (the public pages, where the
   * token check must cost the same for every name).
   */
  async load(username: string, principal: Principal | null, options: { fresh?: boolean } = {}): Promise<LoadedUser | null> {
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
    const offerVersion = this.offer.version();
    if (cached && cached.fingerprint === loaded.serversFingerprint && cached.offerVersion === offerVersion) return cached.catalog;
    const { servers } = this.services;
    const catalog = buildServerCatalog(await servers.listWithAddresses(), await servers.endpoints(), this.ctx.config.publicHostResolved, this.offer);
    this.catalogCache = { fingerprint: loaded.serversFingerprint, offerVersion, catalog };
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

  /** One download per endpoint of every enabled protocol whose plugin renders client configs. */
  private clientConfigsOf(loaded: LoadedUser, catalog: ServerCatalog, token: string, which: 'endpoints' | 'hidden' = 'endpoints'): ClientConfigOffer[] {
    const offers: ClientConfigOffer[] = [];
    const protocols = new Set(catalog[which].map((e) => e.protocol));
    for (const protocol of protocols) {
      const format = this.formats.formatOf(protocol);
      if (!format) continue;
      const { extension, qr } = format;
      for (const endpoint of endpointsFor(protocol, loaded.row, loaded.reseller, catalog, which)) {
        offers.push({ protocol, endpoint, extension, qr, url: this.downloadUrlFor(loaded.row.username, `${endpoint.name}.${extension}`, token, loaded.reseller) });
      }
    }
    return offers;
  }
}
