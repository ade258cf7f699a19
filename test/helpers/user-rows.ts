import type { InferCreationAttributes } from 'sequelize';
import { User, UserUsage } from '../../core/db';

export type UserRowFields = Partial<InferCreationAttributes<User>> & { username: string; upload_bytes?: number; download_bytes?: number };

/**
 * Inserts a user row directly (bypassing the users service) for tests that need exact state:
 * every nullable column defaults to null, counters go to user_usage when non-zero.
 */
export async function insertUserRow({ upload_bytes = 0, download_bytes = 0, ...fields }: UserRowFields): Promise<User> {
  const user = await User.create({
    sub_admin_id: null,
    expiry_date: null,
    first_connection_at: null,
    pending_activation_days: null,
    last_traffic_reset_at: null,
    openvpn_password: null,
    l2tp_password: null,
    cisco_password: null,
    wg_private_key: null,
    wg_public_key: null,
    wg_address: null,
    nodes: null,
    notes: null,
    ...fields,
  });
  if (upload_bytes || download_bytes) await UserUsage.create({ user_id: user.id, upload_bytes, download_bytes });
  return user;
}
