import type { Request, Response } from 'express';
import type { Services } from '../../core/services';
import { MAIN_ADMIN } from '../../core/principal';
import type { ServerEndpointView, SubscriptionDetail } from '../../core/services/user-view';
import {
  renderNotFoundPage,
  renderSubscriptionPage,
  type SubscriptionInfo,
  type SubscriptionPageExtras,
  type SubscriptionServer,
} from './subscription-html';

/**
 * `GET /sub/{username}?token=…`: no API key, the token is the secret. Every wrong answer
 * (unknown user, wrong, revoked or missing token) is the same 404, and the token is checked
 * even for unknown users so timing does not tell them apart either.
 */

/** Headers of every answer on /sub and /download: nothing cached, nothing loaded, no referrer leaks the token. */
export function setPrivatePageHeaders(res: Response): void {
  res.set({
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    'Cache-Control': 'no-store',
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
  });
}

export const NOT_FOUND_BODY = Object.freeze({ success: false, message: 'Not found' });

export function wantsJson(req: Request): boolean {
  return req.accepts(['html', 'json']) === 'json';
}

export function sendNotFound(req: Request, res: Response): void {
  setPrivatePageHeaders(res);
  if (wantsJson(req)) res.status(404).json(NOT_FOUND_BODY);
  else res.status(404).type('html').send(renderNotFoundPage());
}

/** The token from the query string; a repeated or non-string `token` counts as none. */
export function tokenOf(req: Request): string {
  const token = req.query.token;
  return typeof token === 'string' ? token : '';
}

const DAY_MS = 86_400_000;

/** Which users a listener serves pages for: a reseller's subscription port serves only that reseller's users. */
export interface PublicPagesScope {
  subAdminId?: number;
}

const toServers = (list: readonly ServerEndpointView[]): SubscriptionServer[] => list.map((s) => ({ name: s.name, address: s.address, port: s.port }));

export interface ResolvedSubscription {
  info: SubscriptionInfo;
  extras: SubscriptionPageExtras;
  /** OpenVPN endpoint names this user may download a profile for. */
  openvpnEndpointNames: string[];
}

/**
 * Everything the page and the download need, or null for any wrong link. The users service
 * checks the token in full (constant-time) whether or not the user exists.
 */
export async function resolveSubscription(
  services: Services,
  username: string,
  token: string,
  scope: PublicPagesScope = {},
): Promise<ResolvedSubscription | null> {
  const detail = await services.users.resolveSubscription(username, token);
  if (!detail) return null;
  if (scope.subAdminId !== undefined && detail.sub_admin_id !== scope.subAdminId) return null;
  return { ...toSubscriptionInfo(detail, services.ctx.clock.now(), await pskFor(services, detail)), openvpnEndpointNames: detail.openvpn_endpoints.map((e) => e.name) };
}

/** The token proved who is asking; the PSK is server-wide and every L2TP user needs it to connect. */
async function pskFor(services: Services, detail: SubscriptionDetail): Promise<string | null> {
  if (!detail.enable_l2tp) return null;
  return (await services.settings.get(MAIN_ADMIN)).ipsec_psk || null;
}

/** Pure: the user's view → what the page and the JSON answer show. */
export function toSubscriptionInfo(detail: SubscriptionDetail, now: Date, psk: string | null): Omit<ResolvedSubscription, 'openvpnEndpointNames'> {
  const expiry = detail.expiry_date ? new Date(detail.expiry_date) : null;
  const info: SubscriptionInfo = {
    username: detail.username,
    status: detail.status,
    is_active: detail.is_active,
    is_online: detail.is_online,
    data_limit: detail.data_limit,
    data_limit_unit: detail.data_limit_unit,
    upload_bytes: detail.upload_bytes,
    download_bytes: detail.download_bytes,
    total_traffic_bytes: detail.total_traffic_bytes,
    expiry_date: expiry ? expiry.toISOString() : null,
    days_left: expiry ? Math.max(0, Math.ceil((expiry.getTime() - now.getTime()) / DAY_MS)) : null,
    protocols: {
      openvpn: { enabled: detail.enable_openvpn, links: detail.enable_openvpn ? detail.ovpn_links.map((l) => ({ name: l.name, url: l.url })) : [] },
      // Credentials of a disabled protocol stay off the page: they cannot be used anyway.
      l2tp: {
        enabled: detail.enable_l2tp,
        username: detail.username,
        password: detail.enable_l2tp ? detail.l2tp_password : null,
        psk: detail.enable_l2tp ? psk : null,
        servers: detail.enable_l2tp ? toServers(detail.l2tp_servers) : [],
      },
      cisco: {
        enabled: detail.enable_cisco,
        username: detail.username,
        password: detail.enable_cisco ? detail.cisco_password : null,
        servers: detail.enable_cisco ? toServers(detail.cisco_servers) : [],
      },
      wireguard: {
        enabled: detail.enable_wg1,
        address: detail.enable_wg1 ? detail.wg_address : null,
        public_key: detail.enable_wg1 ? detail.wg_public_key : null,
        servers: detail.enable_wg1 ? toServers(detail.wg_servers) : [],
      },
    },
  };
  return {
    info,
    extras: {
      data_limit_bytes: detail.data_limit > 0 ? detail.data_limit_bytes : 0,
      pending_activation_days: detail.status === 'on_hold' ? detail.pending_activation_days : null,
    },
  };
}

export async function subscriptionPage(services: Services, scope: PublicPagesScope, req: Request, res: Response): Promise<void> {
  const resolved = await resolveSubscription(services, String(req.params.username ?? ''), tokenOf(req), scope);
  if (!resolved) return sendNotFound(req, res);
  setPrivatePageHeaders(res);
  if (wantsJson(req)) {
    res.status(200).json({ success: true, ...resolved.info });
    return;
  }
  res.status(200).type('html').send(renderSubscriptionPage(resolved.info, resolved.extras));
}
