import { createHash } from 'node:crypto';
import type { ClientApp, ClientPlatform, SetupKind } from '../../core/protocols/table';
import type { UserStatus } from '../../core/services/user-status';
import { formatBytes, formatLimit, formatNumber, type Language } from './i18n';

/**
 * The subscription page and the error pages as pure functions: data in, HTML out. No I/O, no
 * clock, no request, so every branch (and the escaping of every value) is testable without a
 * server. Every string from data or from a message table goes through `escapeHtml`.
 */

export interface SubscriptionServer {
  name: string;
  address: string | null;
  port: number | null;
  /** What a customer types into a client: a host, `host:port` or an `https://` URL (the protocol table's `dial`). */
  dial: string;
}

export interface ConfigLink {
  name: string;
  /** File name of the download, e.g. `main_udp.ovpn`. */
  file: string;
  url: string;
  /** For configs a client app imports by scanning: the config itself. */
  config?: string;
  /** HTML only: the QR code (inline SVG) of `config` when there is one, else of `url`. */
  qr_svg?: string;
  /** What the plugin on that server says a client needs to trust it (a certificate pin, an IKEv2 identity). */
  facts?: Array<{ key: string; label: string; value: string }>;
}

/**
 * One protocol as the customer sees it. `username`/`password` only for protocols that log in
 * with one, `links` only where a client config can be downloaded; the protocol table's
 * customer fields (the PSK, a public key…) sit beside them under their own keys. `available`:
 * enabled, and its plugin runs on at least one of the user's servers.
 */
export interface ProtocolCard {
  enabled: boolean;
  available: boolean;
  username?: string;
  password?: string | null;
  servers: SubscriptionServer[];
  links?: ConfigLink[];
  [customerField: string]: unknown;
}

/** How a card is titled, labelled and explained (from the protocol table). */
export interface ProtocolPresentation {
  id: string;
  displayName: string;
  fields: ReadonlyArray<{ key: string; label: string }>;
  setup: SetupKind;
  apps: readonly ClientApp[];
}

/** What `/sub/{username}` tells a user about itself; the JSON answer is `{success: true, ...this}` (without `qr_svg`). */
export interface SubscriptionInfo {
  username: string;
  status: UserStatus;
  is_active: boolean;
  is_online: boolean;
  data_limit: number;
  data_limit_unit: 'MB' | 'GB' | 'TB';
  upload_bytes: number;
  download_bytes: number;
  total_traffic_bytes: number;
  expiry_date: string | null;
  days_left: number | null;
  /** This page's own address (what its "open on your phone" QR code holds). */
  subscription_url: string;
  /** Whom to ask: the reseller's contact, else the operator's; null = none set. */
  support_contact: string | null;
  /** Keyed by protocol id, in the protocol table's order. */
  protocols: Record<string, ProtocolCard>;
}

/** Facts the page shows that the JSON answer leaves to the client. */
export interface SubscriptionPageExtras {
  /** Limit in bytes (0 = unlimited), for the usage bar. */
  data_limit_bytes: number;
  /** For on_hold users: how long the account lasts once the first connection starts it. */
  pending_activation_days: number | null;
}

/** How a page is rendered: the language, the language switch, the page's own QR code. */
export interface PageContext {
  lang: Language;
  /** One entry per language; `href` keeps the token (relative: `?token=…&lang=fa`). */
  languages: ReadonlyArray<{ lang: Language; href: string }>;
  /** QR code of `subscription_url` (inline SVG), or null. */
  pageQrSvg: string | null;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"'`]/g, (c) => HTML_ESCAPES[c]!);
}

/** Only links we built ourselves: absolute http(s) or same-origin paths; anything else is shown as text. */
function isSafeHref(url: string): boolean {
  return /^https?:\/\//i.test(url) || (url.startsWith('/') && !url.startsWith('//'));
}

/** `{app}` / `{name}` in a step, filled with already-plain text (escaped with the rest). */
function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (m, k: string) => values[k] ?? m);
}

/** Ids for copy targets, unique within one page. */
class Ids {
  private n = 0;
  next(prefix: string): string {
    return `${prefix}${++this.n}`;
  }
}

function copyButton(lang: Language, targetId: string, what: string): string {
  const m = lang.messages;
  return `<button type="button" class="copy" data-copy-for="${targetId}" data-label="${escapeHtml(m.copy)}" data-copied="${escapeHtml(m.copied)}" data-failed="${escapeHtml(m.copyFailed)}"><span class="t">${escapeHtml(m.copy)}</span><span class="vh"> ${escapeHtml(what)}</span></button>`;
}

/** A label, a left-to-right value (passwords, keys and addresses never reorder in a right-to-left page) and its copy button. */
function valueRow(ctx: PageContext, ids: Ids, label: string, value: unknown): string {
  if (value === null || value === undefined || value === '') return '';
  const id = ids.next('v');
  return `<div class="row"><span class="label">${escapeHtml(label)}</span><span class="val"><code dir="ltr" id="${id}">${escapeHtml(value)}</code>${copyButton(ctx.lang, id, label)}</span></div>`;
}

function qrFigure(ctx: PageContext, svg: string | undefined | null, caption: string, kind: string, text: string): string {
  if (!svg) return '';
  // The SVG is node-qrcode's output for our own text: markup we made, not user data.
  // `data-qr-text` says what the code stands for, so a test can hold each code to it.
  // Folded: a code is for another device (a phone scanning a computer's screen); wide screens unfold them (SCRIPT).
  return `<details class="qr-box"><summary>${escapeHtml(ctx.lang.messages.showQr)}</summary><figure class="qr" data-qr="${escapeHtml(kind)}" data-qr-text="${escapeHtml(text)}"><div class="qr-img" role="img" aria-label="${escapeHtml(ctx.lang.messages.qrAlt(caption))}">${svg}</div><figcaption>${escapeHtml(caption)}</figcaption></figure></details>`;
}

const STATUS_CLASSES: Record<UserStatus, string> = { active: 's-ok', on_hold: 's-info', limited: 's-warn', expired: 's-bad', disabled: 's-off' };

function header(info: SubscriptionInfo, ctx: PageContext): string {
  const m = ctx.lang.messages;
  const label = m.status[info.status] ?? info.status;
  const switcher = ctx.languages
    .map(({ lang, href }) =>
      lang.code === ctx.lang.code
        ? `<span aria-current="true" lang="${escapeHtml(lang.code)}">${escapeHtml(lang.name)}</span>`
        : `<a href="${escapeHtml(href)}" lang="${escapeHtml(lang.code)}" hreflang="${escapeHtml(lang.code)}">${escapeHtml(lang.name)}</a>`,
    )
    .join(' ');
  return `<header><nav class="langs" aria-label="${escapeHtml(m.languageSwitch)}">${switcher}</nav>
<h1 dir="ltr">${escapeHtml(info.username)}</h1>
<p class="state"><span class="badge ${STATUS_CLASSES[info.status] ?? 's-off'}">${escapeHtml(label)}</span> <span class="online">${info.is_online ? `● ${escapeHtml(m.online)}` : `○ ${escapeHtml(m.offline)}`}</span></p></header>`;
}

/** A support contact as a link where its form is unambiguous (Telegram handle, http(s) URL, phone, e-mail), else text. */
export function contactHtml(contact: string): string {
  const text = `<bdi dir="ltr">${escapeHtml(contact)}</bdi>`;
  if (/^@[A-Za-z0-9_]{4,32}$/.test(contact)) return `<a href="https://t.me/${escapeHtml(contact.slice(1))}" rel="noopener noreferrer">${text}</a>`;
  if (/^https?:\/\/[^\s<>"'`]+$/i.test(contact)) {
    try {
      const url = new URL(contact);
      if (url.protocol === 'http:' || url.protocol === 'https:') return `<a href="${escapeHtml(url.href)}" rel="noopener noreferrer">${text}</a>`;
    } catch {
      // not a URL after all: shown as text
    }
  }
  if (/^\+?[0-9][0-9 ()-]{5,24}$/.test(contact)) return `<a href="tel:${escapeHtml(contact.replace(/[^0-9+]/g, ''))}">${text}</a>`;
  if (/^[^\s@<>"'`]+@[^\s@<>"'`]+\.[A-Za-z]{2,}$/.test(contact)) return `<a href="mailto:${escapeHtml(contact)}">${text}</a>`;
  return text;
}

function supportLine(info: SubscriptionInfo, ctx: PageContext): string {
  const m = ctx.lang.messages;
  if (!info.support_contact) return `<p class="support">${escapeHtml(m.noSupportContact)}</p>`;
  return `<p class="support">${escapeHtml(m.supportContact)}: ${contactHtml(info.support_contact)}</p>`;
}

function nextSteps(info: SubscriptionInfo, ctx: PageContext): string {
  if (info.status === 'active') return '';
  const step = ctx.lang.messages.nextSteps[info.status];
  if (!step) return '';
  return `<section class="notice ${STATUS_CLASSES[info.status]}" id="next-steps"><h2>${escapeHtml(step.title)}</h2><p>${escapeHtml(step.text)}</p>${supportLine(info, ctx)}</section>`;
}

function usagePercent(info: SubscriptionInfo, extras: SubscriptionPageExtras): number | null {
  if (extras.data_limit_bytes <= 0) return null;
  return Math.min(100, Math.max(0, (info.total_traffic_bytes / extras.data_limit_bytes) * 100));
}

function usageSection(info: SubscriptionInfo, extras: SubscriptionPageExtras, ctx: PageContext): string {
  const { lang } = ctx;
  const m = lang.messages;
  const used = formatBytes(lang, info.total_traffic_bytes);
  const detail = m.uploadDownload(formatBytes(lang, info.upload_bytes), formatBytes(lang, info.download_bytes));
  const percent = usagePercent(info, extras);
  if (percent === null) {
    return `<section id="usage"><h2>${escapeHtml(m.usage)}</h2><p class="big">${escapeHtml(m.usedUnlimited(used))}</p><p class="muted">${escapeHtml(detail)}</p></section>`;
  }
  const level = percent >= 100 ? 's-bad' : percent >= 80 ? 's-warn' : 's-ok';
  return `<section id="usage"><h2>${escapeHtml(m.usage)}</h2>
<p class="big">${escapeHtml(m.usedOf(used, formatLimit(lang, info.data_limit, info.data_limit_unit)))}</p>
<div class="bar" role="progressbar" aria-label="${escapeHtml(m.usageBarLabel)}" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${percent.toFixed(0)}"><i class="${level}"></i></div>
<p class="muted">${escapeHtml(m.percentUsed(formatNumber(lang, percent, 1)))} · ${escapeHtml(detail)}</p></section>`;
}

function expirySection(info: SubscriptionInfo, extras: SubscriptionPageExtras, ctx: PageContext): string {
  const { lang } = ctx;
  const m = lang.messages;
  let text: string;
  if (info.status === 'on_hold') {
    const days = extras.pending_activation_days;
    text = `${escapeHtml(m.startsAtFirstConnection)}${days ? ` (${escapeHtml(m.validForAfterStart(formatNumber(lang, days), days))})` : ''}`;
  } else if (!info.expiry_date) {
    text = escapeHtml(m.never);
  } else {
    const date = new Date(info.expiry_date);
    const left = info.days_left ?? 0;
    const shown = Number.isNaN(date.getTime()) ? escapeHtml(info.expiry_date) : `<time datetime="${escapeHtml(date.toISOString())}">${escapeHtml(lang.formatDate(date))}</time>`;
    const note = m.timeZoneNote ? ` <span class="muted">${escapeHtml(m.timeZoneNote)}</span>` : '';
    text = `${shown}${note} <span class="muted">(${escapeHtml(left > 0 ? m.daysLeft(formatNumber(lang, left), left) : m.expiredOn)})</span>`;
  }
  return `<section id="expiry"><h2>${escapeHtml(m.expiry)}</h2><p class="big">${text}</p></section>`;
}

function fieldLabel(ctx: PageContext, f: { key: string; label: string }): string {
  // Own keys only: a key such as `constructor` must not reach Object.prototype.
  const fields = ctx.lang.messages.fields;
  return Object.hasOwn(fields, f.key) ? fields[f.key]! : f.label;
}

function serverRows(card: ProtocolCard, ctx: PageContext, ids: Ids): string {
  const m = ctx.lang.messages;
  if (!card.servers.length) return `<p class="muted">${escapeHtml(m.noServers)}</p>`;
  const rows = card.servers.map((s) => {
    const id = ids.next('v');
    return `<li class="row"><span class="label">${escapeHtml(s.name)}</span><span class="val"><code dir="ltr" id="${id}">${escapeHtml(s.dial)}</code>${copyButton(ctx.lang, id, `${m.server} ${s.name}`)}</span></li>`;
  });
  return `<h3>${escapeHtml(m.servers)}</h3><ul class="servers">${rows.join('')}</ul>`;
}

function linkItems(card: ProtocolCard, how: ProtocolPresentation, ctx: PageContext, ids: Ids): string {
  const m = ctx.lang.messages;
  const app = how.apps[0]?.name ?? how.displayName;
  const items = (card.links ?? []).map((l) => {
    const download = isSafeHref(l.url)
      ? `<a class="button" href="${escapeHtml(l.url)}" download="${escapeHtml(l.file)}">${escapeHtml(m.download(l.file))}</a>`
      : `<code dir="ltr">${escapeHtml(l.url)}</code>`;
    const pins = (l.facts ?? []).map((f) => valueRow(ctx, ids, fieldLabel(ctx, f), f.value)).join('');
    let config = '';
    if (typeof l.config === 'string') {
      const id = ids.next('c');
      config = `<details class="config"><summary>${escapeHtml(m.config)}</summary><pre dir="ltr" id="${id}">${escapeHtml(l.config)}</pre>${copyButton(ctx.lang, id, `${m.config} ${l.file}`)}</details>`;
    }
    const qr =
      typeof l.config === 'string'
        ? qrFigure(ctx, l.qr_svg, m.qrOf.config(app), 'config', l.config)
        : isSafeHref(l.url)
          ? qrFigure(ctx, l.qr_svg, m.qrOf.link, 'link', l.url)
          : '';
    return `<li class="link"><h4>${escapeHtml(l.name)}</h4>${download}${pins}${config}${qr}</li>`;
  });
  return `<ul class="links">${items.join('')}</ul>`;
}

const PLATFORM_ORDER: readonly ClientPlatform[] = ['android', 'ios', 'windows', 'macos', 'linux'];

function setupSteps(how: ProtocolPresentation, ctx: PageContext): string {
  const m = ctx.lang.messages;
  const first = how.apps[0];
  const appName = first?.name ?? how.displayName;
  const steps = (m.steps[how.setup] ?? []).map((s) => `<li>${escapeHtml(fill(s, { app: appName, name: how.displayName }))}</li>`).join('');
  const apps = PLATFORM_ORDER.map((platform) => {
    const names = how.apps
      .filter((a) => a.platforms.includes(platform))
      .map((a) => {
        const name = a.builtin ? m.builtinApp(a.name) : a.name;
        return a.url ? `<a href="${escapeHtml(a.url)}" rel="noopener noreferrer">${escapeHtml(name)}</a>` : escapeHtml(name);
      });
    return names.length ? `<li><span class="label">${escapeHtml(m.platforms[platform])}</span> ${names.join(' · ')}</li>` : '';
  }).join('');
  return `<details class="setup" open><summary>${escapeHtml(m.howToConnect)}</summary><ol>${steps}</ol><h4>${escapeHtml(m.apps)}</h4><ul class="apps">${apps}</ul></details>`;
}

function protocolSection(info: SubscriptionInfo, card: ProtocolCard, how: ProtocolPresentation, ctx: PageContext, ids: Ids): string {
  const m = ctx.lang.messages;
  const credentials = 'username' in card ? `${valueRow(ctx, ids, m.username, card.username)}${valueRow(ctx, ids, m.password, card.password)}` : '';
  const extra = how.fields.map((f) => valueRow(ctx, ids, fieldLabel(ctx, f), card[f.key])).join('');
  // A protocol without a file to import is typed in by hand: its QR code opens this page on the device being set up.
  const body = card.links?.length
    ? `${serverRows(card, ctx, ids)}${linkItems(card, how, ctx, ids)}`
    : `${serverRows(card, ctx, ids)}${qrFigure(ctx, ctx.pageQrSvg, m.qrOf.page, 'page', info.subscription_url)}`;
  return `<section class="card" id="p-${escapeHtml(how.id)}" data-protocol="${escapeHtml(how.id)}"><h2>${escapeHtml(how.displayName)}</h2>${credentials}${extra}${body}${setupSteps(how, ctx)}</section>`;
}

function phoneSection(info: SubscriptionInfo, ctx: PageContext, ids: Ids): string {
  const m = ctx.lang.messages;
  return `<section id="this-page"><h2>${escapeHtml(m.thisPage)}</h2><p class="muted">${escapeHtml(m.thisPageHint)}</p>${valueRow(ctx, ids, m.subscriptionLink, info.subscription_url)}${qrFigure(ctx, ctx.pageQrSvg, m.qrOf.page, 'page', info.subscription_url)}<p class="muted">${escapeHtml(m.keepPrivate)}</p></section>`;
}

const STYLE = `
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Vazirmatn","DejaVu Sans",sans-serif;background:#f6f8fa;color:#1f2328}
main{max-width:720px;margin:0 auto;padding:16px 12px 32px}
header{display:flex;flex-wrap:wrap;align-items:center;gap:4px 12px}
header h1{font-size:22px;margin:0;word-break:break-all;flex:1 1 auto}
.langs{order:-1;flex-basis:100%;text-align:end;font-size:14px}
.langs a,.langs span{display:inline-block;padding:6px 10px;border-radius:6px}
.langs span{font-weight:600;background:#eaeef2}
.state{margin:0}
h2{font-size:17px;margin:0 0 10px}
h3{font-size:15px;margin:14px 0 6px}
h4{font-size:15px;margin:8px 0 6px}
section{background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:14px;margin-top:14px}
.badge{color:#fff;border-radius:999px;padding:3px 12px;font-size:14px;font-weight:600}
.s-ok{background:#1a7f37}.s-info{background:#0969da}.s-warn{background:#9a4000}.s-bad{background:#c2212c}.s-off{background:#57606a}
.notice{border-width:2px}
.notice.s-ok,.notice.s-info,.notice.s-warn,.notice.s-bad,.notice.s-off{background:#fff}
.notice.s-info{border-color:#0969da}.notice.s-warn{border-color:#9a4000}.notice.s-bad{border-color:#c2212c}.notice.s-off{border-color:#57606a}
.online{font-size:14px;color:#57606a}
.big{font-size:18px;margin:0 0 6px}
.muted{color:#57606a;font-size:14px}
.bar{height:12px;background:#eaeef2;border-radius:6px;overflow:hidden}
.bar>i{display:block;height:100%}
.row{display:grid;grid-template-columns:minmax(8em,max-content) minmax(0,1fr);align-items:center;gap:4px 10px;margin:8px 0}
.val{display:flex;align-items:center;gap:8px;min-width:0}
.val code{min-width:0}
.label{color:#57606a;font-size:14px}
@media (max-width:520px){.row{grid-template-columns:minmax(0,1fr)}}
code,pre{font:14px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px}
code{padding:3px 8px;word-break:break-all;unicode-bidi:isolate}
pre{padding:8px;white-space:pre-wrap;word-break:break-all;text-align:left;margin:8px 0}
ul{margin:6px 0 0;padding-inline-start:20px}
ul.servers,ul.links{list-style:none;padding:0}
li.link{border-top:1px solid #d0d7de;padding-top:8px;margin-top:8px}
ol{padding-inline-start:22px;margin:8px 0}
ol li{margin:4px 0}
a{color:#0550ae}
.button{display:inline-block;background:#0550ae;color:#fff;border-radius:8px;padding:9px 14px;text-decoration:none;font-weight:600;margin:4px 0}
button.copy{font:inherit;font-size:14px;min-height:36px;padding:4px 12px;border-radius:8px;border:1px solid #8c959f;background:#f6f8fa;color:#1f2328;cursor:pointer}
button.copy:focus-visible,.button:focus-visible,a:focus-visible,summary:focus-visible{outline:3px solid #0969da;outline-offset:2px}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
details{margin-top:10px}
summary{cursor:pointer;font-weight:600;padding:6px 0}
.qr{margin:10px 0;width:min(100%,280px)}
.qr-img{background:#fff;padding:6px;border-radius:6px;border:1px solid #d0d7de}
.qr svg{display:block;width:100%;height:auto}
figcaption{font-size:14px;color:#57606a;margin-top:4px}
.support{font-weight:600}
footer{margin-top:20px;text-align:center}
@media (prefers-color-scheme:dark){
body{background:#0d1117;color:#e6edf3}section,.notice.s-ok,.notice.s-info,.notice.s-warn,.notice.s-bad,.notice.s-off{background:#161b22;border-color:#30363d}
code,pre{background:#0d1117;border-color:#30363d}.bar{background:#30363d}a{color:#58a6ff}
.muted,.label,.online,figcaption{color:#9198a1}.langs span{background:#30363d}
button.copy{background:#21262d;color:#e6edf3;border-color:#6e7681}.button{background:#1f6feb;color:#fff}
}
`;

/** Copy buttons: the Clipboard API where the page is a secure context, else a selection and execCommand (plain-http panels). */
const SCRIPT = `
(function(){
  if(window.matchMedia&&window.matchMedia('(min-width: 700px)').matches){var q=document.querySelectorAll('details.qr-box');for(var i=0;i<q.length;i++)q[i].open=true;}
  function say(b,key){var t=b.querySelector('.t');if(!t)return;t.textContent=b.getAttribute('data-'+key);clearTimeout(b._t);b._t=setTimeout(function(){t.textContent=b.getAttribute('data-label');},2000);}
  function fallback(el){var r=document.createRange();r.selectNodeContents(el);var s=window.getSelection();s.removeAllRanges();s.addRange(r);var ok=false;try{ok=document.execCommand('copy');}catch(e){}return ok;}
  document.addEventListener('click',function(ev){
    var b=ev.target&&ev.target.closest?ev.target.closest('button[data-copy-for]'):null;if(!b)return;
    var el=document.getElementById(b.getAttribute('data-copy-for'));if(!el)return;var text=el.textContent;
    if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(text).then(function(){say(b,'copied');},function(){say(b,fallback(el)?'copied':'failed');});}
    else say(b,fallback(el)?'copied':'failed');
  });
})();
`;

/**
 * A page and the CSP hashes of its one stylesheet and (optional) script: the header allows
 * exactly these, so the same bytes can be served again (no per-answer nonce) and nothing
 * injected could run or restyle the page.
 */
export interface RenderedPage {
  html: string;
  styleHash: string;
  scriptHash: string | null;
}

const sha256Base64 = (text: string) => createHash('sha256').update(text, 'utf8').digest('base64');
const SCRIPT_HASH = sha256Base64(SCRIPT);

/** `Content-Security-Policy` of a rendered page. */
export function pageCsp(page: Pick<RenderedPage, 'styleHash' | 'scriptHash'>): string {
  const script = page.scriptHash ? `script-src 'sha256-${page.scriptHash}'; ` : '';
  return `default-src 'none'; ${script}style-src 'sha256-${page.styleHash}'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
}

function page(title: string, body: string, lang: Language, dynamicStyle = '', withScript = false): RenderedPage {
  const style = `${STYLE}${dynamicStyle}`;
  const html = `<!doctype html>
<html lang="${escapeHtml(lang.code)}" dir="${lang.dir}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<style>${style}</style>
</head>
<body>
<main>
${body}
</main>
${withScript ? `<script>${SCRIPT}</script>\n` : ''}</body>
</html>
`;
  return { html, styleHash: sha256Base64(style), scriptHash: withScript ? SCRIPT_HASH : null };
}

/** The whole subscription page: self-contained (inline CSS and one inline script allowed by their CSP hashes, no external assets). */
export function renderSubscriptionPage(info: SubscriptionInfo, extras: SubscriptionPageExtras, presentation: readonly ProtocolPresentation[], ctx: PageContext): RenderedPage {
  const m = ctx.lang.messages;
  const ids = new Ids();
  const shown = presentation.filter((how) => info.protocols[how.id]?.available);
  const cards = shown.map((how) => protocolSection(info, info.protocols[how.id]!, how, ctx, ids));
  const none = shown.length ? '' : `<section id="no-protocols"><p>${escapeHtml(m.noProtocols)}</p>${supportLine(info, ctx)}</section>`;
  const percent = usagePercent(info, extras);
  const body = `${header(info, ctx)}
${nextSteps(info, ctx)}
${usageSection(info, extras, ctx)}
${expirySection(info, extras, ctx)}
${cards.join('\n')}${none}
${phoneSection(info, ctx, ids)}
<footer>${info.status === 'active' ? supportLine(info, ctx) : ''}<p class="muted">${escapeHtml(m.keepPrivate)}</p></footer>`;
  // The bar's width lives in the hashed stylesheet: the CSP allows no style attributes.
  const dynamic = percent === null ? '' : `.bar>i{width:${percent.toFixed(1)}%}`;
  return page(m.pageTitle(info.username), body, ctx.lang, dynamic, true);
}

export type ErrorPageKind = 'not_found' | 'unavailable' | 'error';

/**
 * The answer to every wrong link (`not_found`: it must not reveal whether the user exists, so
 * it carries nothing about the request), a download whose plugin is down, or a failure.
 * `backHref` (only once the token checked out) links back to the subscription page.
 */
export function renderErrorPage(kind: ErrorPageKind, ctx: Pick<PageContext, 'lang'>, options: { backHref?: string; supportContact?: string | null } = {}): RenderedPage {
  const m = ctx.lang.messages;
  const [title, text] = kind === 'not_found' ? [m.notFoundTitle, m.notFoundText] : kind === 'unavailable' ? [m.unavailableTitle, m.unavailableText] : [m.errorTitle, m.errorText];
  const back = options.backHref && isSafeHref(options.backHref) ? `<p><a class="button" href="${escapeHtml(options.backHref)}">${escapeHtml(m.backToPage)}</a></p>` : '';
  const support = options.supportContact ? `<p class="support">${escapeHtml(m.supportContact)}: ${contactHtml(options.supportContact)}</p>` : '';
  return page(title, `<section class="notice s-off" id="error" data-error="${kind}"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p>${support}${back}</section>`, ctx.lang);
}
