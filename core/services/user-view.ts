/**
 * Pure mapping from database rows to what the API shows about a user. No I/O: the users
 * service reads rows with raw queries (hot paths) and hands them here, so the same mapping
 * serves GET /users/{u}, list_all and the subscription page.
 */
import { MATERIAL_COLUMNS, PROTOCOLS, type EnableField, type MaterialField, type PasswordField, type ProtocolId, type ServersField, type Transport } from '../protocols/table';
import { mayUseServer, parseServerIds } from './server-access';
import type { ProtocolEndpoint, ServerWithAddress } from './servers';
import { deriveStatus, type ResellerStatusInputs, type StatusInputs, type UserStatus } from './user-status';

export { parseServerIds } from './server-access';

export type ActivationType = 'fixed_date' | 'flexible_days';
export type DataLimitUnit = 'MB' | 'GB' | 'TB';
export type DataLimitResetStrategy = 'no_reset' | 'day' | 'week' | 'month' | 'year';

export const DATA_LIMIT_UNITS: readonly DataLimitUnit[] = ['MB', 'GB', 'TB'];
export const RESET_STRATEGIES: readonly DataLimitResetStrategy[] = ['no_reset', 'day', 'week', 'month', 'year'];
/** Binary units: 1 GB here is 1024^3 bytes, as VPN accounting has always counted. */
export const UNIT_BYTES: Readonly<Record<DataLimitUnit, number>> = { MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/** One protocol's state on a user: whether it is enabled, and its password when it has one. */
export interface UserProtocolState {
  enabled: boolean;
  password: string | null;
}

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
  /** Every protocol of the table, enabled or not. */
  protocols: Record<ProtocolId, UserProtocolState>;
  /** Protocol material by column (the table's `material` columns), e.g. key pairs. */
  material: Record<string, string | null>;
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
  protocol: Transport;
}

/** An endpoint with the address clients dial filled in. */
export type ResolvedEndpoint = ProtocolEndpoint & { address: string };

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
export type UserDetail = {
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
} & Record<EnableField, boolean> &
  Record<PasswordField, string | null> &
  Record<MaterialField, string | null> &
  Record<ServersField, ServerEndpointView[]>;

export interface ClientConfigLink {
  name: string;
  url: string;
}

/** A client config a user may download: protocol, endpoint and file extension. */
export interface ClientConfigOffer {
  protocol: ProtocolId;
  endpoint: ResolvedEndpoint;
  extension: string;
  /** The config itself fits a QR code that client apps import. */
  qr: boolean;
  url: string;
}

/**
 * What the public /sub and /download pages need beyond the API detail: client-only material
 * (private keys go into client configs), and the client configs the user may download. Only
 * ever returned to a caller that presented the user's token.
 */
export interface SubscriptionDetail {
  detail: UserDetail;
  row: UserRow;
  clientConfigs: ClientConfigOffer[];
  /** Client configs the user has but whose plugin does not run now: a download says so (503). */
  unavailableConfigs: ClientConfigOffer[];
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

export function readUserRow(raw: Record<string, unknown>): UserRow {
  const protocols = {} as Record<ProtocolId, UserProtocolState>;
  for (const p of PROTOCOLS) {
    protocols[p.id] = { enabled: toBool(raw[p.columns.enable]), password: p.columns.password ? toStringOrNull(raw[p.columns.password]) : null };
  }
  const material: Record<string, string | null> = {};
  for (const column of MATERIAL_COLUMNS) material[column] = toStringOrNull(raw[column]);
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
    protocols,
    material,
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

export function statusOf(row: StatusInputs, reseller: ResellerRow | null, now: Date): UserStatus {
  return deriveStatus(row, reseller, now);
}

/** What a list item is computed from: the list query's columns, without per-protocol state or material. */
export type ListRow = Pick<
  UserRow,
  'username' | 'sub_admin_id' | 'is_active' | 'max_clients' | 'activation_type' | 'expiry_date' | 'first_connection_at' | 'data_limit' | 'data_limit_unit' | 'data_limit_bytes' | 'upload_bytes' | 'download_bytes'
>;

export function toListItem(row: ListRow, reseller: ResellerRow | null, now: Date, connections: number): UserListItem {
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

/** Which protocol runs where: only protocols whose plugin runs are shown to customers. */
export interface ProtocolOffer {
  offers(protocol: ProtocolId, serverId: string): boolean;
}

/** Servers and every protocol's endpoints with addresses resolved; cached by the users service. */
export interface ServerCatalog {
  servers: CatalogServer[];
  /** Endpoints of protocols that run on their server, in the order the API lists them. */
  endpoints: ResolvedEndpoint[];
  /** Endpoints whose protocol does not run there now (downloads answer 503, views hide them). */
  hidden: ResolvedEndpoint[];
}

export function buildServerCatalog(servers: readonly ServerWithAddress[], endpoints: readonly ProtocolEndpoint[], publicHost: string, offer: ProtocolOffer): ServerCatalog {
  const resolved = endpoints.map((e) => ({ ...e, address: e.address ?? publicHost }));
  return {
    servers: servers.map((s) => ({ id: s.id, name: s.name, address: s.address ?? publicHost })),
    endpoints: resolved.filter((e) => offer.offers(e.protocol, e.serverId)),
    hidden: resolved.filter((e) => !offer.offers(e.protocol, e.serverId)),
  };
}

/** The servers a user may use now, among those that exist (the one server-access rule). */
export function effectiveServerIds(nodes: string[] | null, reseller: ResellerRow | null, catalog: ServerCatalog): Set<string> {
  return new Set(catalog.servers.map((s) => s.id).filter((id) => mayUseServer(nodes, reseller?.allowed_servers, id)));
}

/** Endpoints of one protocol the user may dial (none when the protocol is off for the user). */
export function endpointsFor(protocol: ProtocolId, row: UserRow, reseller: ResellerRow | null, catalog: ServerCatalog, which: 'endpoints' | 'hidden' = 'endpoints'): ResolvedEndpoint[] {
  if (!row.protocols[protocol].enabled) return [];
  const ids = effectiveServerIds(row.nodes, reseller, catalog);
  return catalog[which].filter((e) => e.protocol === protocol && ids.has(e.serverId));
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
  const detail: Record<string, unknown> = {
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
  };
  for (const p of PROTOCOLS) {
    const state = row.protocols[p.id];
    detail[p.api.enable] = state.enabled;
    if (p.api.password) detail[p.api.password] = state.password;
    for (const [field, column] of Object.entries(p.material.apiFields)) detail[field] = row.material[column] ?? null;
    detail[p.api.servers] = endpointsFor(p.id, row, reseller, catalog).map(
      (e): ServerEndpointView => ({ name: e.serverName, is_tunnel: false, address: e.address, port: e.port, protocol: e.transport }),
    );
  }
  return detail as UserDetail;
}
