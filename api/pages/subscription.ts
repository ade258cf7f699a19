import { gzipSync } from 'node:zlib';
import type { Request, Response } from 'express';
import type { Services } from '../../core/services';
import { MAIN_ADMIN } from '../../core/principal';
import { sha256Hex } from '../../core/secrets';
import { PROTOCOLS, type ProtocolSpec } from '../../core/protocols/table';
import type { CustomerFact } from '../../core/plugin/types';
import type { ServerEndpointView, SubscriptionDetail } from '../../core/services/user-view';
import { LANGUAGES, pickLanguage, type Language } from './i18n';
import { GenerationCache } from './cache';
import { qrSvg } from './qr';
import {
  pageCsp,
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
  setup: p.customer.setup,
  apps: p.customer.apps,
}));

/**
 * `GET /sub/{username}?token=…`: no API key, the token is the secret. Every wrong answer
 * (unknown user, wrong, revoked or missing token) is the same 404, and the token is checked
 * even for unknown users so timing does not tell them apart either.
 */

/** CSP of answers that run and style nothing (JSON, files). */
const NO_CONTENT_CSP = "default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * Headers of every answer on /sub and /download: nothing cached, nothing loaded or run but
 * the page's own hashed style and script (`csp` from `pageCsp`), no referrer leaks the token,
 * never framed.
 */
export function setPrivatePageHeaders(res: Response, csp: string = NO_CONTENT_CSP): void {
  res.set({
    'Content-Security-Policy': csp,
    'Cache-Control': 'no-store',
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    Vary: 'Accept, Accept-Language, Accept-Encoding',
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
  const page = renderErrorPage(kind, { lang: languageOf(req) }, options);
  setPrivatePageHeaders(res, pageCsp(page));
  res.status(status).type('html').send(page.html);
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
 * contacts) or with the plugins' own state (rendered configs, customer facts): kept while the database's
 * write generation holds, and a rendered config for at most a minute (a plugin's certificate
 * pin may change without a write).
 */
const settingsCache = new GenerationCache<Record<string, string | null>>(4, 60_000);
const contactCache = new GenerationCache<string | null>(10_000, 60_000);
const renderCache = new GenerationCache<string>(5_000, 60_000);
const factsCache = new GenerationCache<readonly CustomerFact[]>(1_000, 60_000);

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
  await Promise.all([addRenderedConfigs(services, resolved, token, generation), addCustomerFacts(services, resolved, generation)]);
  return resolved;
}

/**
 * Configs a client app imports by scanning (the plugin says `qr`) go on the page in full, with
 * their QR code: the token already proved who is asking, and the download link serves the same
 * text. A plugin that cannot render now leaves the plain link.
 */
async function addRenderedConfigs(services: Services, resolved: ResolvedSubscription, token: string, generation: number): Promise<void> {
  await Promise.all(
    resolved.subscription.clientConfigs
      .filter((o) => o.qr)
      .map(async (offer) => {
        const file = `${offer.endpoint.name}.${offer.extension}`;
        const link = resolved.info.protocols[offer.protocol]?.links?.find((l) => l.file === file);
        if (!link) return;
        try {
          link.config = await renderCache.get(`${token}\u0000${file}`, generation, async () => (await services.clientConfigs.render(resolved.subscription, file)).content);
        } catch (err) {
          services.ctx.logger.warn({ err: (err as Error).message, file }, 'client config for the subscription page could not be rendered');
        }
      }),
  );
}

/** What each server's plugin says a client needs to trust it (a certificate pin, an IKEv2 identity), beside that server's download. */
async function addCustomerFacts(services: Services, resolved: ResolvedSubscription, generation: number): Promise<void> {
  await Promise.all(
    resolved.subscription.clientConfigs.map(async (offer) => {
      const file = `${offer.endpoint.name}.${offer.extension}`;
      const link = resolved.info.protocols[offer.protocol]?.links?.find((l) => l.file === file);
      if (!link) return;
      const facts = await factsCache.get(`${offer.protocol}\u0000${offer.endpoint.serverId}`, generation, () => services.clientConfigs.customerFacts(offer.protocol, offer.endpoint.serverId));
      if (facts.length) link.facts = facts.map((f) => ({ key: f.key, label: f.label, value: f.value }));
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

/**
 * Answers kept per (user, token, language, form): a customer's app or phone reloads the page
 * while nothing it shows changed. An entry is served only while `UserViews.detailStamp` holds
 * (database writes, plugins starting or failing, the user's live connections), before the
 * clock could change it (expiry, days left) and for at most a minute (a plugin's certificate
 * pin can change without a write). The key is a hash of the token: only someone holding the
 * user's current token can reach an entry, and every other request (wrong token, unknown user)
 * takes the same full path with its query, so nothing about other users is observable.
 */
interface KeptAnswer {
  stamp: string;
  validUntil: number;
  csp: string;
  mediaType: string;
  body: Buffer;
  /** The same body gzipped once (a page with a dozen QR codes shrinks to a fraction). */
  gzip: Buffer | null;
}
/** What the kept answers may hold in all (a page with five servers per protocol is ~140 KiB, ~25 KiB gzipped). */
const KEPT_BUDGET_BYTES = 64 * 1024 * 1024;
const KEPT_FOR_MS = 60_000;
/** Smaller bodies are sent as they are: compressing them saves less than it costs. */
const GZIP_FROM_BYTES = 4096;
const kept = new Map<string, KeptAnswer>();
let keptBytes = 0;
const sizeOf = (a: KeptAnswer) => a.body.length + (a.gzip?.length ?? 0);

/** Oldest first out (a Map iterates in insertion order) once the budget is spent. */
function keep(key: string, answer: KeptAnswer): void {
  const previous = kept.get(key);
  if (previous) {
    kept.delete(key);
    keptBytes -= sizeOf(previous);
  }
  const size = sizeOf(answer);
  if (size > KEPT_BUDGET_BYTES / 16) return;
  for (const [oldest, old] of kept) {
    if (keptBytes + size <= KEPT_BUDGET_BYTES) break;
    kept.delete(oldest);
    keptBytes -= sizeOf(old);
  }
  kept.set(key, answer);
  keptBytes += size;
}

function answerOf(stamp: string, validUntil: number, mediaType: string, text: string, csp: string = NO_CONTENT_CSP): KeptAnswer {
  const body = Buffer.from(text, 'utf8');
  return { stamp, validUntil, csp, mediaType, body, gzip: body.length >= GZIP_FROM_BYTES ? gzipSync(body, { level: 6 }) : null };
}

function sendKept(req: Request, res: Response, answer: KeptAnswer): void {
  setPrivatePageHeaders(res, answer.csp);
  const gzip = answer.gzip && req.acceptsEncodings('gzip', 'identity') === 'gzip';
  res.status(200).set('Content-Type', answer.mediaType);
  if (gzip) res.set('Content-Encoding', 'gzip');
  const body = gzip ? answer.gzip! : answer.body;
  // end() rather than send(): no ETag hashed over an answer that is never cached downstream.
  res.setHeader('Content-Length', body.length);
  res.end(body);
}

/** Until when an answer stays exact: the clock changes days_left at each day boundary and the status at expiry. */
function validUntilOf(info: SubscriptionInfo, now: number): number {
  let until = now + KEPT_FOR_MS;
  if (info.expiry_date) {
    const expiry = Date.parse(info.expiry_date);
    // days_left = ceil(left / day) drops by one when `left` reaches the next lower whole day; the status flips at expiry.
    if (expiry > now) until = Math.min(until, expiry - (Math.ceil((expiry - now) / DAY_MS) - 1) * DAY_MS);
  }
  return until;
}

export async function subscriptionPage(services: Services, scope: PublicPagesScope, req: Request, res: Response): Promise<void> {
  const token = tokenOf(req);
  const username = String(req.params.username ?? '');
  const json = wantsJson(req);
  const lang = languageOf(req);
  const views = services.users.views;
  const key = `${sha256Hex(`${username}\u0000${token}`)}\u0000${scope.subAdminId ?? ''}\u0000${json ? 'json' : lang.code}`;
  const stamp = views.detailStamp(username);
  const now = services.ctx.clock.now().getTime();
  const hit = kept.get(key);
  if (hit && hit.stamp === stamp && now < hit.validUntil) return sendKept(req, res, hit);

  const resolved = await resolveSubscription(services, username, token, scope);
  if (!resolved) return sendNotFound(req, res);
  // Kept only if nothing changed while it was computed.
  const still = views.detailStamp(username) === stamp;
  const validUntil = validUntilOf(resolved.info, now);
  let answer: KeptAnswer;
  if (json) {
    answer = answerOf(stamp, validUntil, 'application/json; charset=utf-8', JSON.stringify({ success: true, ...withoutSvg(resolved.info) }));
  } else {
    const pageQrSvg = await addQrCodes(resolved.info);
    const languages = LANGUAGES.map((l) => ({ lang: l, href: `?token=${encodeURIComponent(token)}&lang=${encodeURIComponent(l.code)}` }));
    const page = renderSubscriptionPage(resolved.info, resolved.extras, PROTOCOL_PRESENTATION, { lang, languages, pageQrSvg });
    answer = answerOf(stamp, validUntil, 'text/html; charset=utf-8', page.html, pageCsp(page));
  }
  if (still) keep(key, answer);
  sendKept(req, res, answer);
}
