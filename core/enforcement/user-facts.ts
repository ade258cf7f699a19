import { Op, QueryTypes, type Transaction } from 'sequelize';
import { SubAdmin, User } from '../db';
import { PROTOCOL_COLUMNS, PROTOCOLS } from '../protocols/table';
import type { ResellerFacts, UserFacts } from './policy';

const USER_COLUMNS = [
  'id',
  'username',
  'sub_admin_id',
  'is_active',
  'max_clients',
  'activation_type',
  'pending_activation_days',
  'expiry_date',
  'first_connection_at',
  'data_limit_bytes',
  'data_limit_reset_strategy',
  'last_traffic_reset_at',
  ...PROTOCOL_COLUMNS,
  'nodes',
  'created_at',
];

/** The users' columns plus their usage counters (no user_usage row = nothing used yet). */
const FACTS_SQL =
  `SELECT ${USER_COLUMNS.map((c) => `u.${c}`).join(', ')}, ` +
  'COALESCE(uu.upload_bytes, 0) AS upload_bytes, COALESCE(uu.download_bytes, 0) AS download_bytes ' +
  'FROM users u LEFT JOIN user_usage uu ON uu.user_id = u.id';

/** Above this many names one full read is cheaper than IN lists. */
const FULL_SCAN_THRESHOLD = 5000;

export interface FactsSnapshot {
  users: Map<string, UserFacts>;
  resellers: Map<number, ResellerFacts>;
}

/** Enabled protocols with their passwords (SQLite gives 0/1, PostgreSQL booleans). */
function protocolsOf(r: Record<string, unknown>): UserFacts['protocols'] {
  const out: UserFacts['protocols'] = {};
  for (const p of PROTOCOLS) {
    const flag = r[p.columns.enable];
    if (flag === true || flag === 1 || flag === '1' || flag === 't') out[p.id] = { password: p.columns.password ? ((r[p.columns.password] as string | null) ?? null) : null };
  }
  return out;
}

/** Raw rows differ by dialect (0/1 vs booleans, BIGINT strings on PostgreSQL); normalise once. */
function toUserFacts(r: Record<string, unknown>): UserFacts {
  return {
    id: Number(r.id),
    username: String(r.username),
    sub_admin_id: r.sub_admin_id == null ? null : Number(r.sub_admin_id),
    is_active: Boolean(r.is_active),
    max_clients: Number(r.max_clients),
    activation_type: String(r.activation_type),
    pending_activation_days: r.pending_activation_days == null ? null : Number(r.pending_activation_days),
    expiry_date: (r.expiry_date as Date | string | null) ?? null,
    first_connection_at: (r.first_connection_at as Date | string | null) ?? null,
    data_limit_bytes: Number(r.data_limit_bytes ?? 0),
    data_limit_reset_strategy: String(r.data_limit_reset_strategy ?? 'no_reset'),
    last_traffic_reset_at: (r.last_traffic_reset_at as Date | string | null) ?? null,
    upload_bytes: Number(r.upload_bytes ?? 0),
    download_bytes: Number(r.download_bytes ?? 0),
    protocols: protocolsOf(r),
    nodes: (r.nodes as string | null) ?? null,
    created_at: r.created_at as Date | string,
  };
}

export function toResellerFacts(r: Record<string, unknown>): ResellerFacts {
  return {
    id: Number(r.id),
    is_active: Boolean(r.is_active),
    total_usage_quota_gb: r.total_usage_quota_gb == null ? null : Number(r.total_usage_quota_gb),
    used_traffic_bytes: Number(r.used_traffic_bytes ?? 0),
    allowed_servers: String(r.allowed_servers ?? '[]'),
  };
}

/**
 * Reads what the policy needs for the named users (all users when `usernames` is 'all') and
 * their resellers, straight from the database: enforcement decides on the truth, not a cache.
 */
export async function loadFacts(usernames: Iterable<string> | 'all', transaction?: Transaction): Promise<FactsSnapshot> {
  const users = new Map<string, UserFacts>();
  const names = usernames === 'all' ? null : [...new Set(usernames)].filter(Boolean);
  const sequelize = User.sequelize!;
  if (names === null || names.length > FULL_SCAN_THRESHOLD) {
    const rows = await sequelize.query<Record<string, unknown>>(FACTS_SQL, { type: QueryTypes.SELECT, transaction });
    const wanted = names ? new Set(names) : null;
    for (const r of rows) {
      const username = String(r.username);
      if (!wanted || wanted.has(username)) users.set(username, toUserFacts(r));
    }
  } else {
    for (let i = 0; i < names.length; i += 500) {
      const bind = names.slice(i, i + 500);
      const rows = await sequelize.query<Record<string, unknown>>(`${FACTS_SQL} WHERE u.username IN (${bind.map((_, k) => `$${k + 1}`).join(', ')})`, {
        type: QueryTypes.SELECT,
        bind,
        transaction,
      });
      for (const r of rows) users.set(String(r.username), toUserFacts(r));
    }
  }
  const resellerIds = [...new Set([...users.values()].map((u) => u.sub_admin_id).filter((id): id is number => id != null))];
  const resellers = await loadResellers(resellerIds, transaction);
  return { users, resellers };
}

/**
 * Every user's facts (with the material columns named), page by page in id order, so a pass
 * over 100k users holds one page at a time instead of the whole table.
 */
export async function forEachFactsPage(
  extraColumns: readonly string[],
  visit: (page: Array<{ facts: UserFacts; extra: Record<string, unknown> }>) => void,
  pageSize = 5000,
): Promise<void> {
  const sequelize = User.sequelize!;
  const extra = extraColumns.map((c) => `, u.${c}`).join('');
  const sql = FACTS_SQL.replace(' FROM users u', `, u.id AS page_id${extra} FROM users u`);
  let last = 0;
  for (;;) {
    const rows = await sequelize.query<Record<string, unknown>>(`${sql} WHERE u.id > $1 ORDER BY u.id LIMIT ${Number(pageSize)}`, { type: QueryTypes.SELECT, bind: [last] });
    if (rows.length === 0) return;
    visit(rows.map((r) => ({ facts: toUserFacts(r), extra: Object.fromEntries(extraColumns.map((c) => [c, r[c]])) })));
    last = Number(rows[rows.length - 1]!.page_id);
    if (rows.length < pageSize) return;
  }
}

export async function loadResellers(ids: number[] | 'all', transaction?: Transaction): Promise<Map<number, ResellerFacts>> {
  const out = new Map<number, ResellerFacts>();
  if (ids !== 'all' && ids.length === 0) return out;
  const rows = await SubAdmin.findAll({
    raw: true,
    attributes: ['id', 'is_active', 'total_usage_quota_gb', 'used_traffic_bytes', 'allowed_servers'],
    where: ids === 'all' ? undefined : { id: { [Op.in]: ids } },
    transaction,
  });
  for (const r of rows) out.set(r.id, toResellerFacts(r as unknown as Record<string, unknown>));
  return out;
}

/**
 * What the tick's enforcement pass decides on, kept in memory so a tick with 25k users online
 * does not re-read 25k rows: names are loaded on first need, reloaded when a domain event says
 * they changed, usage is advanced by the engine's own committed deltas, and everything is
 * re-read every `refreshMs` to heal any change made without an event.
 */
export class FactsCache {
  /** username → facts, or null for "no such user" (so ghost sessions cost no query per tick). */
  private users = new Map<string, UserFacts | null>();
  private resellers = new Map<number, ResellerFacts>();
  private staleResellers = new Set<number>();
  private refreshedAtMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly refreshMs = 5 * 60_000) {}

  invalidateUsers(usernames: Iterable<string>): void {
    for (const n of usernames) this.users.delete(n);
  }

  invalidateReseller(id: number): void {
    this.staleResellers.add(id);
  }

  invalidateAll(): void {
    this.refreshedAtMs = Number.NEGATIVE_INFINITY;
  }

  /** Facts for these users (and their resellers), from memory where current. */
  async snapshot(usernames: Iterable<string>): Promise<FactsSnapshot> {
    const wanted = [...new Set(usernames)].filter(Boolean);
    if (Date.now() - this.refreshedAtMs > this.refreshMs) {
      const all = await loadFacts('all');
      const resellers = await loadResellers('all');
      this.users = new Map(all.users);
      this.resellers = resellers;
      this.staleResellers.clear();
      this.refreshedAtMs = Date.now();
    }
    const missing = wanted.filter((n) => !this.users.has(n));
    if (missing.length) {
      const loaded = await loadFacts(missing);
      for (const n of missing) this.users.set(n, loaded.users.get(n) ?? null);
      for (const [id, r] of loaded.resellers) if (!this.resellers.has(id)) this.resellers.set(id, r);
    }
    const out: FactsSnapshot = { users: new Map(), resellers: new Map() };
    const needResellers = new Set<number>();
    for (const n of wanted) {
      const u = this.users.get(n);
      if (!u) continue;
      out.users.set(n, u);
      if (u.sub_admin_id != null) needResellers.add(u.sub_admin_id);
    }
    const reload = [...needResellers].filter((id) => this.staleResellers.has(id) || !this.resellers.has(id));
    if (reload.length) {
      const fresh = await loadResellers(reload);
      for (const id of reload) {
        const r = fresh.get(id);
        if (r) this.resellers.set(id, r);
        else this.resellers.delete(id);
        this.staleResellers.delete(id);
      }
    }
    for (const id of needResellers) {
      const r = this.resellers.get(id);
      if (r) out.resellers.set(id, r);
    }
    return out;
  }

  /** The engine committed these bytes: advance the cached counters the same way. */
  addUsage(username: string, rx: number, tx: number): void {
    const u = this.users.get(username);
    if (!u) return;
    u.upload_bytes += rx;
    u.download_bytes += tx;
  }

  addResellerUsage(id: number, bytes: number): void {
    const r = this.resellers.get(id);
    if (r) r.used_traffic_bytes += bytes;
  }
}
