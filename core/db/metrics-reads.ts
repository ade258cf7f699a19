import { QueryTypes, type Sequelize } from 'sequelize';
import type { NodeStatus } from './models';

/** Every status a node row can hold, so a status series exists (at 0) before a node reaches it. */
export const NODE_STATUSES = ['installing', 'active', 'error', 'deleting', 'offline'] as const satisfies readonly NodeStatus[];

/**
 * Read-only figures for /metrics, one query each, straight from the counters accounting
 * commits (sub_admins.used_traffic_bytes, nodes.total_traffic_bytes, user_usage), so a scrape
 * shows what the database holds and costs one round trip per family.
 */
export interface ResellerFigures {
  username: string;
  users: number;
  usedTrafficBytes: number;
  /** null: no quota (the column's null or 0, as enforcement reads it). */
  quotaGb: number | null;
  /** null: no limit (null or 0). */
  maxUsers: number | null;
}

export interface NodeFigures {
  id: number;
  name: string;
  status: string;
  totalTrafficBytes: number;
}

export interface UserTrafficFigures {
  username: string;
  uploadBytes: number;
  downloadBytes: number;
}

// BIGINT and COUNT come back as strings on PostgreSQL.
const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));
const positiveOrNull = (v: unknown): number | null => (v === null || v === undefined || !(Number(v) > 0) ? null : Number(v));

export async function readResellerFigures(sequelize: Sequelize): Promise<ResellerFigures[]> {
  const rows = await sequelize.query<Record<string, unknown>>(
    `SELECT s.username, s.used_traffic_bytes, s.total_usage_quota_gb, s.max_users_limit, COALESCE(c.n, 0) AS users
     FROM sub_admins s LEFT JOIN (SELECT sub_admin_id, COUNT(*) AS n FROM users WHERE sub_admin_id IS NOT NULL GROUP BY sub_admin_id) c ON c.sub_admin_id = s.id
     ORDER BY s.id`,
    { type: QueryTypes.SELECT },
  );
  return rows.map((r) => ({
    username: String(r.username),
    users: num(r.users),
    usedTrafficBytes: num(r.used_traffic_bytes),
    quotaGb: positiveOrNull(r.total_usage_quota_gb),
    maxUsers: positiveOrNull(r.max_users_limit),
  }));
}

export async function readNodeFigures(sequelize: Sequelize): Promise<NodeFigures[]> {
  const rows = await sequelize.query<Record<string, unknown>>('SELECT id, name, status, total_traffic_bytes FROM nodes ORDER BY id', { type: QueryTypes.SELECT });
  return rows.map((r) => ({ id: num(r.id), name: String(r.name), status: String(r.status), totalTrafficBytes: num(r.total_traffic_bytes) }));
}

/** Every user's usage counters (a user without a usage row has used nothing). */
export async function readUserTrafficFigures(sequelize: Sequelize): Promise<UserTrafficFigures[]> {
  const rows = await sequelize.query<Record<string, unknown>>(
    `SELECT u.username, COALESCE(uu.upload_bytes, 0) AS upload_bytes, COALESCE(uu.download_bytes, 0) AS download_bytes
     FROM users u LEFT JOIN user_usage uu ON uu.user_id = u.id ORDER BY u.id`,
    { type: QueryTypes.SELECT },
  );
  return rows.map((r) => ({ username: String(r.username), uploadBytes: num(r.upload_bytes), downloadBytes: num(r.download_bytes) }));
}
