import { randomBytes } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Services } from '../../core/services';
import { MAIN_ADMIN } from '../../core/principal';
import { PROTOCOLS, type ProtocolSpec } from '../../core/protocols/table';
import type { ClientConfigOffer, ServerEndpointView, SubscriptionDetail } from '../../core/services/user-view';
import { LANGUAGES, pickLanguage, type Language } from './i18n';
import { GenerationCache } from './cache';
import { qrSvg } from './qr';
import {
  renderErrorPage,
  renderSubscriptionPage,
  type ErrorPageKind,
  type ProtocolCard,
  type ProtocolPresentation,
  type SubscriptionInfo,
  type SubscriptionPageExtras,
  type SubscriptionServer,
} from './subscription-html';

/** Card titles, labels and setup guidance, from the protocol table. */
export const PROTOCOL_PRESENTATION: readonly ProtocolPresentation[] = PROTOCOLS.map((p) => ({
  id: p.id,
  displayName: p.displayName,
  fields: p.customer.fields.map((f) => ({ key: f.key, label: f.label })),
  configFields: (p.customer.configFields ?? []).map((f) => ({ key: f.key, label: f.label })),
  setup: p.customer.setup,
  apps: p.customer.apps,
}));

/**
 * `GET /sub/{username}?token=…`: no API key, the token is the secret. Every wrong answer
 * (unknown user, wrong, revoked or missing token) is the same 404, and the token is checked
 * even for unknown users so timing does not tell them apart either.
 */

/** A fresh nonce per answer: the page's one inline script and stylesheet carry it, nothing else may run. */
export function newNonce(): string {
  return randomBytes(18).toString('base64');
}

/**
 * Headers of every answer on /sub and /download: nothing cached, nothing loaded but our own
 * nonce'd style and script, no referrer leaks the token, never framed.
 */
export function setPrivatePageHeaders(res: Response, nonce: string | null = null): void {
  const own = nonce ? `script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; ` : '';
  res.set({
    'Content-Security-Policy': `default-src 'none'; ${own}img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'Cache-Control': 'no-store',
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    Vary: 'Accept, Accept-Language',
  });
}

export const NOT_FOUND_BODY = Object.freeze({ success: false, message: 'Not found' });

export function wantsJson(req: Request): boolean {
  return req.accepts(['html', 'json']) === 'json';
}

/** A browser navigating (it names text/html); bots and scripts that send `*\/*` or nothing keep their JSON answers on downloads. */
export function isBrowser(req: Request): boolean {
  return /\btext\/html\b/i.test(req.get('accept') ?? '');
}

export function languageOf(req: Request): Language {
  return pickLanguage(req.query.lang, req.get('accept-language'));
}

/** A friendly page in the reader's language (status as given); never JSON. */
export function sendErrorPage(req: Request, res: Response, status: number, kind: ErrorPageKind, options: Parameters<typeof renderErrorPage>[2] = {}): void {
  const nonce = newNonce();
  setPrivatePageHeaders(res, nonce);
  res.status(status).type('html').send(renderErrorPage(kind, { lang: languageOf(req), nonce }, options));
}

export function sendNotFound(req: Request, res: Response): void {
  if (wantsJson(req)) {
    setPrivatePageHeaders(res);
    res.status(404).json(NOT_FOUND_BODY);
    return;
  }
  // Nothing from the request or the user goes into this page: every wrong link gets the same bytes per language.
  sendErrorPage(req, res, 404, 'not_found');
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

/** How a customer types a server into a client (the protocol table's `dial`). */
export function dialOf(spec: ProtocolSpec, address: string, port: number): string {
  const host = address.includes(':') ? `[${address}]` : address;
  if (spec.customer.dial === 'host') return address;
  if (spec.customer.dial === 'https-url') return port === 443 ? `https://${host}` : `https://${host}:${port}`;
  return `${host}:${port}`;
}

const toServers = (spec: ProtocolSpec, list: readonly ServerEndpointView[]): SubscriptionServer[] =>
  list.map((s) => ({ name: s.name, address: s.address, port: s.port, dial: dialOf(spec, s.address, s.port) }));

export interface ResolvedSubscription {
  info: SubscriptionInfo;
  extras: SubscriptionPageExtras;
  subscription: SubscriptionDetail;
}

/**
 * The user's subscription when `token` is its current one and this listener serves it, else
 * null for any wrong link. The users service checks the token in full (constant-time)
 * whether or not the user exists.
 */
export async function resolveToken(services: Services, username: string, token: string, scope: PublicPagesScope = {}): Promise<SubscriptionDetail | null> {
  const subscription = await services.users.resolveSubscription(username, token);
  if (!subscription) return null;
  if (scope.subAdminId !== undefined && subscription.detail.sub_admin_id !== scope.subAdminId) return null;
  return subscription;
}

/**
 * Reads that every page view repeats but that change only with a write (settings, support
 * contacts) or with the plugins' own state (rendered configs): kept while the database's
 * write generation holds, and a rendered config for at most a minute (a plugin's certificate
 * pin may change without a write).
 */
const settingsCache = new GenerationCache<Record<string, string | null>>(4, 60_000);
const contactCache = new GenerationCache<string | null>(10_000, 60_000);
const renderCache = new GenerationCache<string>(5_000, 60_000);

/** Everything the page and its JSON form show, or null for any wrong link. */
export async function resolveSubscription(services: Services, username: string, token: string, scope: PublicPagesScope = {}): Promise<ResolvedSubscription | null> {
  const subscription = await resolveToken(services, username, token, scope);
  if (!subscription) return null;
  const generation = services.ctx.db.writeGeneration();
  const [settings, contact] = await Promise.all([
    settingsFor(services, subscription, generation),
    contactCache.get(String(subscription.detail.sub_admin_id), generation, () => services.settings.supportContactFor(subscription.detail.sub_admin_id)),
  ]);
  const resolved = { ...toSubscriptionInfo(subscription, services.ctx.clock.now(), settings, contact), subscription };
  await addRenderedConfigs(services, resolved, token, generation);
  return resolved;
}

/** `key=value` of a rendered config (a certificate pin): the first matching line, trimmed. */
export function configValue(config: string, line: string): string | null {
  for (const l of config.split(/\r?\n/)) {
    const eq = l.indexOf('=');
    if (eq > 0 && l.slice(0, eq).trim() === line) return l.slice(eq + 1).trim() || null;
  }
  return null;
}

/**
 * Configs a client app imports by scanning (the plugin says `qr`) go on the page in full, with
 * their QR code: the token already proved who is asking, and the download link serves the same
 * text. Configs holding values customers type by hand (the table's `configFields`) are rendered
 * for those values. A plugin that cannot render now leaves the plain link.
 */
async function addRenderedConfigs(services: Services, resolved: ResolvedSubscription, token: string, generation: number): Promise<void> {
  const wanted = (o: ClientConfigOffer) => o.qr || (PROTOCOLS.find((p) => p.id === o.protocol)?.customer.configFields?.length ?? 0) > 0;
  await Promise.all(
    resolved.subscription.clientConfigs.filter(wanted).map(async (offer) => {
      const spec = PROTOCOLS.find((p) => p.id === offer.protocol)!;
      const file = `${offer.endpoint.name}.${offer.extension}`;
      const link = resolved.info.protocols[offer.protocol]?.links?.find((l) => l.file === file);
      if (!link) return;
      try {
        const content = await renderCache.get(`${token}\u0000${file}`, generation, async () => (await services.clientConfigs.render(resolved.subscription, file)).content);
        if (offer.qr) link.config = content;
        for (const f of spec.customer.configFields ?? []) link[f.key] = configValue(content, f.line);
      } catch (err) {
        services.ctx.logger.warn({ err: (err as Error).message, file }, 'client config for the subscription page could not be rendered');
      }
    }),
  );
}

/**
 * The token proved who is asking; server-wide settings a protocol's customers need (the PSK)
 * are read only when one of the user's enabled protocols shows one.
 */
async function settingsFor(services: Services, subscription: SubscriptionDetail, generation: number): Promise<Record<string, string | null>> {
  const wanted = PROTOCOLS.some((p) => subscription.row.protocols[p.id].enabled && p.customer.fields.some((f) => 'setting' in f.from));
  if (!wanted) return {};
  return settingsCache.get('settings', generation, async () => {
    const settings = (await services.settings.get(MAIN_ADMIN)) as unknown as Record<string, string>;
    return Object.fromEntries(Object.entries(settings).map(([k, v]) => [k, v || null]));
  });
}

/** Pure: the user's view → what the page and the JSON answer show. */
export function toSubscriptionInfo(
  subscription: SubscriptionDetail,
  now: Date,
  settings: Record<string, string | null>,
  supportContact: string | null = null,
): Omit<ResolvedSubscription, 'subscription'> {
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
    subscription_url: detail.subscription_url,
    support_contact: supportContact,
    protocols: {},
  };
  const views = detail as unknown as Record<string, ServerEndpointView[]>;
  for (const p of PROTOCOLS) {
    const state = row.protocols[p.id];
    // Credentials of a disabled protocol stay off the page: they cannot be used anyway.
    const on = state.enabled;
    const card: ProtocolCard = { enabled: on, available: false, servers: [] };
    if (p.api.password) {
      card.username = detail.username;
      card.password = on ? state.password : null;
    }
    for (const f of p.customer.fields) {
      card[f.key] = on ? ('column' in f.from ? row.material[f.from.column] ?? null : settings[f.from.setting] ?? null) : null;
    }
    card.servers = on ? toServers(p, views[p.api.servers] ?? []) : [];
    const configs = subscription.clientConfigs.filter((c) => c.protocol === p.id);
    if (configs.length || subscription.unavailableConfigs.some((c) => c.protocol === p.id)) {
      card.links = configs.map((c) => ({ name: c.endpoint.name, file: `${c.endpoint.name}.${c.extension}`, url: c.url }));
    }
    // Shown only where its plugin runs on one of the user's servers (the views list only those).
    card.available = on && (card.servers.length > 0 || configs.length > 0);
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

/** QR codes for the HTML page: each scannable config, each other download link, and the page itself. */
async function addQrCodes(info: SubscriptionInfo): Promise<string> {
  const jobs: Promise<void>[] = [];
  for (const card of Object.values(info.protocols)) {
    if (!card.available) continue;
    for (const link of card.links ?? []) {
      jobs.push(
        qrSvg(typeof link.config === 'string' ? link.config : link.url).then((svg) => {
          link.qr_svg = svg;
        }),
      );
    }
  }
  const [page] = await Promise.all([qrSvg(info.subscription_url), ...jobs]);
  return page as string;
}

export async function subscriptionPage(services: Services, scope: PublicPagesScope, req: Request, res: Response): Promise<void> {
  const token = tokenOf(req);
  const resolved = await resolveSubscription(services, String(req.params.username ?? ''), token, scope);
  if (!resolved) return sendNotFound(req, res);
  if (wantsJson(req)) {
    setPrivatePageHeaders(res);
    res.status(200).json({ success: true, ...withoutSvg(resolved.info) });
    return;
  }
  const nonce = newNonce();
  setPrivatePageHeaders(res, nonce);
  const pageQrSvg = await addQrCodes(resolved.info);
  const languages = LANGUAGES.map((lang) => ({ lang, href: `?token=${encodeURIComponent(token)}&lang=${encodeURIComponent(lang.code)}` }));
  res.status(200).type('html').send(renderSubscriptionPage(resolved.info, resolved.extras, PROTOCOL_PRESENTATION, { lang: languageOf(req), nonce, languages, pageQrSvg }));
}
