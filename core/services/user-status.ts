/**
 * The one definition of a user's status, shared by the API, enforcement and the reseller
 * quota logic. Order matters: a disabled user is "disabled" even when also expired.
 */
export type UserStatus = 'active' | 'disabled' | 'limited' | 'expired' | 'on_hold';

export interface StatusInputs {
  is_active: boolean;
  activation_type: 'fixed_date' | 'flexible_days' | string;
  expiry_date: Date | string | null;
  first_connection_at: Date | string | null;
  data_limit_bytes: number;
  upload_bytes: number;
  download_bytes: number;
}

export interface ResellerStatusInputs {
  is_active: boolean;
  total_usage_quota_gb: number | null;
  used_traffic_bytes: number;
}

export const GiB = 1024 ** 3;

export function resellerOverQuota(reseller: ResellerStatusInputs | null | undefined): boolean {
  if (!reseller || reseller.total_usage_quota_gb == null || reseller.total_usage_quota_gb <= 0) return false;
  return reseller.used_traffic_bytes >= reseller.total_usage_quota_gb * GiB;
}

export function userOverLimit(user: StatusInputs): boolean {
  return user.data_limit_bytes > 0 && user.upload_bytes + user.download_bytes >= user.data_limit_bytes;
}

export function deriveStatus(user: StatusInputs, reseller: ResellerStatusInputs | null | undefined, now: Date): UserStatus {
  if (!user.is_active || (reseller && !reseller.is_active)) return 'disabled';
  if (user.expiry_date && new Date(user.expiry_date).getTime() <= now.getTime()) return 'expired';
  if (userOverLimit(user) || resellerOverQuota(reseller)) return 'limited';
  if (user.activation_type === 'flexible_days' && !user.first_connection_at) return 'on_hold';
  return 'active';
}

/** Whether a user in this status may hold VPN sessions (on_hold users may: their first one starts the clock). */
export const mayConnect = (status: UserStatus): boolean => status === 'active' || status === 'on_hold';
