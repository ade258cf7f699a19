import type { Request, Response } from 'express';
import type { Services } from '../../core/services';
import { MAIN_ADMIN } from '../../core/principal';
import { PROTOCOLS } from '../../core/protocols/table';
import { qrSvg } from './qr';
import type { ServerEndpointView, SubscriptionDetail } from '../../core/services/user-view';
import {
  renderNotFoundPage,
  renderSubscriptionPage,
  type ProtocolCard,
  type ProtocolPresentation,
  type SubscriptionInfo,
  type SubscriptionPageExtras,
  type SubscriptionServer,
} from './subscription-html';

/** Card titles and labels, from the protocol table. */
export const PROTOCOL_PRESENTATION: readonly ProtocolPresentation[] = PROTOCOLS.map((p) => ({
  id: p.id,
  displayName: p.displayName,
  fields: p.customer.fields.map((f) => ({ key: f.key, label: f.label })),
}));

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
  subscription: SubscriptionDetail;
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
  const subscription = await services.users.resolveSubscription(username, token);
  if (!subscription) return null;
  if (scope.subAdminId !== undefined && subscription.detail.sub_admin_id !== scope.subAdminId) return null;
  const resolved = { ...toSubscriptionInfo(subscription, services.ctx.clock.now(), await settingsFor(services, subscription)), subscription };
  await addScannableConfigs(services, resolved);
  return resolved;
}

/**
 * Configs a client app imports by scanning (WireGuard's) go on the page in full, with their QR
 * code: the token already proved who is asking, and the download link serves the same text.
 * A plugin that cannot render now leaves the plain link.
 */
async function addScannableConfigs(services: Services, resolved: ResolvedSubscription): Promise<void> {
  for (const offer of resolved.subscription.clientConfigs) {
    if (!offer.qr) continue;
    const file = `${offer.endpoint.name}.${offer.extension}`;
    const link = resolved.info.protocols[offer.protocol]?.links?.find((l) => l.file === file);
    if (!link) continue;
    try {
      const rendered = await services.clientConfigs.render(resolved.subscription, file);
      link.config = rendered.content;
      link.qr_svg = await qrSvg(rendered.content);
    } catch (err) {
      services.ctx.logger.warn({ err: (err as Error).message, file }, 'client config for the QR code could not be rendered');
    }
  }
}

/**
 * The token proved who is asking; server-wide settings a protocol's customers need (the PSK)
 * are read only when one of the user's enabled protocols shows one.
 */
async function settingsFor(services: Services, subscription: SubscriptionDetail): Promise<Record<string, string | null>> {
  const wanted = PROTOCOLS.some((p) => subscription.row.protocols[p.id].enabled && p.customer.fields.some((f) => 'setting' in f.from));
  if (!wanted) return {};
  const settings = (await services.settings.get(MAIN_ADMIN)) as unknown as Record<string, string>;
  return Object.fromEntries(Object.entries(settings).map(([k, v]) => [k, v || null]));
}

/** Pure: the user's view → what the page and the JSON answer show. */
export function toSubscriptionInfo(subscription: SubscriptionDetail, now: Date, settings: Record<string, string | null>): Omit<ResolvedSubscription, 'subscription'> {
  const { detail, row } = subscription;
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
    protocols: {},
  };
  const views = detail as unknown as Record<string, ServerEndpointView[]>;
  for (const p of PROTOCOLS) {
    const state = row.protocols[p.id];
    // Credentials of a disabled protocol stay off the page: they cannot be used anyway.
    const on = state.enabled;
    const card: ProtocolCard = { enabled: on, servers: [] };
    if (p.api.password) {
      card.username = detail.username;
      card.password = on ? state.password : null;
    }
    for (const f of p.customer.fields) {
      card[f.key] = on ? ('column' in f.from ? row.material[f.from.column] ?? null : settings[f.from.setting] ?? null) : null;
    }
    card.servers = on ? toServers(views[p.api.servers] ?? []) : [];
    const configs = subscription.clientConfigs.filter((c) => c.protocol === p.id);
    if (configs.length || subscription.unavailableConfigs.some((c) => c.protocol === p.id)) {
      card.links = configs.map((c) => ({ name: c.endpoint.name, file: `${c.endpoint.name}.${c.extension}`, url: c.url }));
    }
    info.protocols[p.id] = card;
  }
  return {
    info,
    extras: {
      data_limit_bytes: detail.data_limit > 0 ? detail.data_limit_bytes : 0,
      pending_activation_days: detail.status === 'on_hold' ? detail.pending_activation_days : null,
    },
  };
}

/** The JSON answer carries each scannable config as text; the SVG is for the HTML page. */
function withoutSvg(info: SubscriptionInfo): SubscriptionInfo {
  const protocols: SubscriptionInfo['protocols'] = {};
  for (const [id, card] of Object.entries(info.protocols)) {
    protocols[id] = card.links ? { ...card, links: card.links.map(({ qr_svg: _svg, ...link }) => link) } : card;
  }
  return { ...info, protocols };
}

export async function subscriptionPage(services: Services, scope: PublicPagesScope, req: Request, res: Response): Promise<void> {
  const resolved = await resolveSubscription(services, String(req.params.username ?? ''), tokenOf(req), scope);
  if (!resolved) return sendNotFound(req, res);
  setPrivatePageHeaders(res);
  if (wantsJson(req)) {
    res.status(200).json({ success: true, ...withoutSvg(resolved.info) });
    return;
  }
  res.status(200).type('html').send(renderSubscriptionPage(resolved.info, resolved.extras, PROTOCOL_PRESENTATION));
}
