/**
 * Pure mapping from database rows to what the API shows about a user. No I/O: the users
 * service reads rows with raw queries (hot paths) and hands them here, so the same mapping
 * serves GET /users/{u}, list_all and the subscription page.
 */
import { deriveStatus, type ResellerStatusInputs, type UserStatus } from './user-status';
import { MAIN_SERVER, type OpenVpnEndpoint } from './servers';

export type ActivationType = 'fixed_date' | 'flexible_days';
export type DataLimitUnit = 'MB' | 'GB' | 'TB';
export type DataLimitResetStrategy = 'no_reset' | 'day' | 'week' | 'month' | 'year';

export const DATA_LIMIT_UNITS: readonly DataLimitUnit[] = ['MB', 'GB', 'TB'];
export const RESET_STRATEGIES: readonly DataLimitResetStrategy[] = ['no_reset', 'day', 'week', 'month', 'year'];
/** Binary units: 1 GB here is 1024^3 bytes, as VPN accounting has always counted. */
export const UNIT_BYTES: Readonly<Record<DataLimitUnit, number>> = { MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/** Well-known ports shown in the per-protocol server lists (the daemons listen there on every server). */
export const L2TP_PORT = 500;
export const CISCO_PORT = 443;
export const WIREGUARD_PORT = 51820;

/** A users row as the service works with it, whatever the dialect returned. */
export interface UserRow {
  id: number;
  username: string;
  sub_admin_id: number | null;
  is_active: boolean;
  max_clients: number;
  activation_type: ActivationType;
  pending_activation_days: number | null;
  expiry_date: Date | null;
  first_connection_at: Date | null;
  data_limit: number;
  data_limit_unit: DataLimitUnit;
  data_limit_bytes: number;
  data_limit_reset_strategy: DataLimitResetStrategy;
  upload_bytes: number;
  download_bytes: number;
  enable_openvpn: boolean;
  openvpn_password: string | null;
  enable_l2tp: boolean;
  l2tp_password: string | null;
  enable_cisco: boolean;
  cisco_password: string | null;
  enable_wg: boolean;
  wg_private_key: string | null;
  wg_public_key: string | null;
  wg_address: string | null;
  /** null = every server the owner may use. */
  nodes: string[] | null;
  notes: string | null;
}

/** The reseller facts a user's view depends on. */
export interface ResellerRow extends ResellerStatusInputs {
  id: number;
  username: string;
  /** Empty = every server. */
  allowed_servers: string[];
  subscription_port: number | null;
}

export interface ServerEndpointView {
  name: string;
  is_tunnel: false;
  address: string;
  port: number;
  protocol: 'udp' | 'tcp';
}

/** OpenVPN listener with the address clients dial filled in. */
export type ResolvedOpenVpnEndpoint = OpenVpnEndpoint & { address: string };

export interface UserListItem {
  username: string;
  status: UserStatus;
  is_active: boolean;
  is_online: boolean;
  data_limit: number;
  data_limit_unit: DataLimitUnit;
  total_traffic_bytes: number;
  expiry_date: string | null;
  max_clients: number;
  sub_admin_id: number | null;
}

/** Everything GET /api/v1/users/{username} shows (without the `success` flag). */
export interface UserDetail {
  username: string;
  status: UserStatus;
  is_active: boolean;
  is_online: boolean;
  active_connections: number;
  max_clients: number;
  data_limit: number;
  data_limit_unit: DataLimitUnit;
  data_limit_bytes: number;
  data_limit_reset_strategy: DataLimitResetStrategy;
  upload_bytes: number;
  download_bytes: number;
  total_traffic_bytes: number;
  activation_type: ActivationType;
  expiry_date: string | null;
  pending_activation_days: number | null;
  first_connection_at: string | null;
  notes: string | null;
  sub_admin_id: number | null;
  /** Server ids the user is pinned to; empty = every server its owner may use. */
  nodes: string[];
  subscription_url: string;
  enable_openvpn: boolean;
  openvpn_password: string | null;
  enable_l2tp: boolean;
  l2tp_password: string | null;
  enable_cisco: boolean;
  cisco_password: string | null;
  enable_wg1: boolean;
  wg_address: string | null;
  wg_public_key: string | null;
  openvpn_servers: ServerEndpointView[];
  l2tp_servers: ServerEndpointView[];
  cisco_servers: ServerEndpointView[];
  wg_servers: ServerEndpointView[];
}

export interface OvpnLink {
  name: string;
  url: string;
}

/**
 * What the public /sub and /download pages need beyond the API detail: the WireGuard private
 * key (the client config carries it), the OpenVPN endpoints to render profiles for, and the
 * download links. Only ever returned to a caller that presented the user's token.
 */
export interface SubscriptionDetail extends UserDetail {
  wg_private_key: string | null;
  openvpn_endpoints: ResolvedOpenVpnEndpoint[];
  ovpn_links: OvpnLink[];
}

// ---------------------------------------------------------------------------------------------
// Reading raw rows: SQLite gives 0/1 and text dates, PostgreSQL booleans, Date and BIGINT strings.

export const toBool = (v: unknown): boolean => v === true || v === 1 || v === '1' || v === 't' || v === 'true';
export const toNumber = (v: unknown): number => (v === null || v === undefined || v === '' ? 0 : Number(v));
export const toNullableNumber = (v: unknown): number | null => (v === null || v === undefined || v === '' ? null : Number(v));
export const toStringOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

/** Sequelize stores SQLite dates as `2026-06-01 12:00:00.000 +00:00`. */
export function toDate(v: unknown): Date | null {
  if (v === null || v === undefined || v === '') return null;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v;
  const d = new Date(typeof v === 'number' ? v : String(v).replace(' ', 'T').replace(' ', ''));
  return Number.isNaN(d.getTime()) ? null : d;
}

export const toIso = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** A JSON array of server ids from a TEXT column; anything unreadable counts as "not set". */
export function parseServerIds(v: unknown): string[] | null {
  if (v === null || v === undefined || v === '') return null;
  try {
    const parsed: unknown = JSON.parse(String(v));
    return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === 'string') : null;
  } catch {
    return null;
  }
}

export function readUserRow(raw: Record<string, unknown>): UserRow {
  return {
    id: toNumber(raw.id),
    username: String(raw.username),
    sub_admin_id: toNullableNumber(raw.sub_admin_id),
    is_active: toBool(raw.is_active),
    max_clients: toNumber(raw.max_clients),
    activation_type: raw.activation_type === 'flexible_days' ? 'flexible_days' : 'fixed_date',
    pending_activation_days: toNullableNumber(raw.pending_activation_days),
    expiry_date: toDate(raw.expiry_date),
    first_connection_at: toDate(raw.first_connection_at),
    data_limit: toNumber(raw.data_limit),
    data_limit_unit: (raw.data_limit_unit as DataLimitUnit) ?? 'GB',
    data_limit_bytes: toNumber(raw.data_limit_bytes),
    data_limit_reset_strategy: (raw.data_limit_reset_strategy as DataLimitResetStrategy) ?? 'no_reset',
    upload_bytes: toNumber(raw.upload_bytes),
    download_bytes: toNumber(raw.download_bytes),
    enable_openvpn: toBool(raw.enable_openvpn),
    openvpn_password: toStringOrNull(raw.openvpn_password),
    enable_l2tp: toBool(raw.enable_l2tp),
    l2tp_password: toStringOrNull(raw.l2tp_password),
    enable_cisco: toBool(raw.enable_cisco),
    cisco_password: toStringOrNull(raw.cisco_password),
    enable_wg: toBool(raw.enable_wg),
    wg_private_key: toStringOrNull(raw.wg_private_key),
    wg_public_key: toStringOrNull(raw.wg_public_key),
    wg_address: toStringOrNull(raw.wg_address),
    nodes: parseServerIds(raw.nodes),
    notes: toStringOrNull(raw.notes),
  };
}

/** Reads a sub_admins row; `prefix` is how its columns were aliased in a join. */
export function readResellerRow(raw: Record<string, unknown>, prefix = ''): ResellerRow | null {
  const id = raw[`${prefix}id`];
  if (id === null || id === undefined) return null;
  return {
    id: toNumber(id),
    username: String(raw[`${prefix}username`] ?? ''),
    is_active: toBool(raw[`${prefix}is_active`]),
    total_usage_quota_gb: toNullableNumber(raw[`${prefix}total_usage_quota_gb`]),
    used_traffic_bytes: toNumber(raw[`${prefix}used_traffic_bytes`]),
    allowed_servers: parseServerIds(raw[`${prefix}allowed_servers`]) ?? [],
    subscription_port: toNullableNumber(raw[`${prefix}subscription_port`]),
  };
}

export function statusOf(row: UserRow, reseller: ResellerRow | null, now: Date): UserStatus {
  return deriveStatus(row, reseller, now);
}

export function toListItem(row: UserRow, reseller: ResellerRow | null, now: Date, connections: number): UserListItem {
  return {
    username: row.username,
    status: statusOf(row, reseller, now),
    is_active: row.is_active,
    is_online: connections > 0,
    data_limit: row.data_limit,
    data_limit_unit: row.data_limit_unit,
    total_traffic_bytes: row.upload_bytes + row.download_bytes,
    expiry_date: toIso(row.expiry_date),
    max_clients: row.max_clients,
    sub_admin_id: row.sub_admin_id,
  };
}

// ---------------------------------------------------------------------------------------------
// Servers a user may use.

export interface CatalogServer {
  id: string;
  name: string;
  address: string;
}

/** Servers and OpenVPN endpoints with addresses resolved; cached by the users service. */
export interface ServerCatalog {
  servers: CatalogServer[];
  endpoints: ResolvedOpenVpnEndpoint[];
}

export function buildServerCatalog(endpoints: readonly OpenVpnEndpoint[], publicHost: string): ServerCatalog {
  const resolved = endpoints.map((e) => ({ ...e, address: e.address ?? publicHost }));
  const servers: CatalogServer[] = [{ id: MAIN_SERVER.id, name: MAIN_SERVER.name, address: publicHost }];
  for (const e of resolved) {
    if (e.isDefault && e.serverId !== MAIN_SERVER.id) servers.push({ id: e.serverId, name: e.serverName, address: e.address });
  }
  return { servers, endpoints: resolved };
}

/**
 * The servers a user may use now: its own pin list (or every server when unpinned), narrowed
 * to what its reseller is allowed (empty allowed list = every server) and to servers that
 * still exist.
 */
export function effectiveServerIds(nodes: string[] | null, reseller: ResellerRow | null, catalog: ServerCatalog): Set<string> {
  const existing = catalog.servers.map((s) => s.id);
  const allowed = reseller && reseller.allowed_servers.length > 0 ? new Set(reseller.allowed_servers) : null;
  const wanted = nodes && nodes.length > 0 ? new Set(nodes) : null;
  return new Set(existing.filter((id) => (!allowed || allowed.has(id)) && (!wanted || wanted.has(id))));
}

export function openVpnEndpointsFor(row: UserRow, reseller: ResellerRow | null, catalog: ServerCatalog): ResolvedOpenVpnEndpoint[] {
  if (!row.enable_openvpn) return [];
  const ids = effectiveServerIds(row.nodes, reseller, catalog);
  return catalog.endpoints.filter((e) => ids.has(e.serverId));
}

function fixedPortServers(enabled: boolean, ids: Set<string>, catalog: ServerCatalog, port: number, protocol: 'udp' | 'tcp'): ServerEndpointView[] {
  if (!enabled) return [];
  return catalog.servers.filter((s) => ids.has(s.id)).map((s) => ({ name: s.name, is_tunnel: false as const, address: s.address, port, protocol }));
}

export interface DetailInputs {
  row: UserRow;
  reseller: ResellerRow | null;
  catalog: ServerCatalog;
  now: Date;
  connections: number;
  subscriptionUrl: string;
}

export function toDetail({ row, reseller, catalog, now, connections, subscriptionUrl }: DetailInputs): UserDetail {
  const ids = effectiveServerIds(row.nodes, reseller, catalog);
  return {
    username: row.username,
    status: statusOf(row, reseller, now),
    is_active: row.is_active,
    is_online: connections > 0,
    active_connections: connections,
    max_clients: row.max_clients,
    data_limit: row.data_limit,
    data_limit_unit: row.data_limit_unit,
    data_limit_bytes: row.data_limit_bytes,
    data_limit_reset_strategy: row.data_limit_reset_strategy,
    upload_bytes: row.upload_bytes,
    download_bytes: row.download_bytes,
    total_traffic_bytes: row.upload_bytes + row.download_bytes,
    activation_type: row.activation_type,
    expiry_date: toIso(row.expiry_date),
    pending_activation_days: row.pending_activation_days,
    first_connection_at: toIso(row.first_connection_at),
    notes: row.notes,
    sub_admin_id: row.sub_admin_id,
    nodes: row.nodes ?? [],
    subscription_url: subscriptionUrl,
    enable_openvpn: row.enable_openvpn,
    openvpn_password: row.openvpn_password,
    enable_l2tp: row.enable_l2tp,
    l2tp_password: row.l2tp_password,
    enable_cisco: row.enable_cisco,
    cisco_password: row.cisco_password,
    enable_wg1: row.enable_wg,
    wg_address: row.wg_address,
    wg_public_key: row.wg_public_key,
    openvpn_servers: openVpnEndpointsFor(row, reseller, catalog).map((e) => ({
      name: e.serverName,
      is_tunnel: false as const,
      address: e.address,
      port: e.port,
      protocol: e.protocol,
    })),
    l2tp_servers: fixedPortServers(row.enable_l2tp, ids, catalog, L2TP_PORT, 'udp'),
    cisco_servers: fixedPortServers(row.enable_cisco, ids, catalog, CISCO_PORT, 'tcp'),
    wg_servers: fixedPortServers(row.enable_wg, ids, catalog, WIREGUARD_PORT, 'udp'),
  };
}
