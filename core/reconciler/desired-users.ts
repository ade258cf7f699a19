import { QueryTypes } from 'sequelize';
import type { Database } from '../db';
import type { DesiredUser, ProtocolId } from '../plugin/types';

/** Column holding a protocol's enable flag and its password. */
const protocolColumns: Record<ProtocolId, { flag: string; password: string | null }> = {
  openvpn: { flag: 'enable_openvpn', password: 'openvpn_password' },
  l2tp: { flag: 'enable_l2tp', password: 'l2tp_password' },
  cisco: { flag: 'enable_cisco', password: 'cisco_password' },
  wireguard: { flag: 'enable_wg', password: null },
};

interface Row {
  username: string;
  password: string | null;
  nodes: string | null;
  allowed_servers: string | null;
  wg_public_key: string | null;
  wg_address: string | null;
}

function parseList(json: string | null): string[] {
  if (!json) return [];
  try {
    const v = JSON.parse(json);
    return Array.isArray(v) ? v.map(String) : [];
  } catch {
    return [];
  }
}

/**
 * Users that may use `protocol` on `serverId`: the protocol is enabled and the server is in
 * the user's `nodes` (empty = every server its owner may use; a reseller's empty
 * `allowed_servers` = every server). Whether they may connect *now* (expiry, limits,
 * max_clients) is decided per connection by core's authorize, not by this list.
 */
export async function desiredUsers(db: Database, protocol: ProtocolId, serverId: string): Promise<DesiredUser[]> {
  const cols = protocolColumns[protocol];
  const rows = await db.sequelize.query<Row>(
    `SELECT u.username, ${cols.password ? `u.${cols.password}` : 'NULL'} AS password, u.nodes, s.allowed_servers,
            u.wg_public_key, u.wg_address
       FROM users u LEFT JOIN sub_admins s ON s.id = u.sub_admin_id
      WHERE u.${cols.flag} = :yes
      ORDER BY u.id`,
    { type: QueryTypes.SELECT, replacements: { yes: true } },
  );
  const out: DesiredUser[] = [];
  for (const r of rows) {
    const own = parseList(r.nodes);
    const allowed = parseList(r.allowed_servers);
    if (own.length ? !own.includes(serverId) : allowed.length > 0 && !allowed.includes(serverId)) continue;
    const user: DesiredUser = { username: r.username };
    if (r.password) user.password = r.password;
    if (protocol === 'wireguard' && r.wg_public_key && r.wg_address) user.material = { publicKey: r.wg_public_key, address: r.wg_address };
    out.push(user);
  }
  return out;
}
