import type { ResellerFacts, UserFacts } from '../../core/enforcement/policy';

/** What enforcement and the desired state know of a user: active, unlimited, one client, every protocol on. */
export function userFacts(overrides: Partial<UserFacts> = {}): UserFacts {
  return {
    id: 1,
    username: 'alice',
    sub_admin_id: null,
    is_active: true,
    activation_type: 'fixed_date',
    expiry_date: null,
    first_connection_at: null,
    data_limit_bytes: 0,
    upload_bytes: 0,
    download_bytes: 0,
    max_clients: 1,
    pending_activation_days: null,
    data_limit_reset_strategy: 'no_reset',
    last_traffic_reset_at: null,
    created_at: new Date('2026-01-01T00:00:00Z'),
    protocols: { openvpn: { password: null }, l2tp: { password: 'l2tp-pass' }, cisco: { password: null }, wireguard: { password: null } },
    nodes: null,
    ...overrides,
  };
}

export const resellerFacts = (overrides: Partial<ResellerFacts> = {}): ResellerFacts => ({
  id: 7,
  is_active: true,
  total_usage_quota_gb: null,
  used_traffic_bytes: 0,
  allowed_servers: '[]',
  ...overrides,
});
