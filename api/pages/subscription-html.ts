import type { UserStatus } from '../../core/services/user-status';

/**
 * The subscription page as pure functions: data in, HTML out. No I/O, no clock, no request,
 * so every branch (and the escaping of every value) is testable without a server.
 */

export interface SubscriptionServer {
  name: string;
  address: string | null;
  port: number | null;
}

export interface ConfigLink {
  name: string;
  /** File name of the download, e.g. `main_udp.ovpn`. */
  file: string;
  url: string;
  /** For configs a client app imports by scanning: the config itself, and its QR code (inline SVG, HTML only). */
  config?: string;
  qr_svg?: string;
}

/**
 * One protocol as the customer sees it. `username`/`password` only for protocols that log in
 * with one, `links` only where a client config can be downloaded; the protocol table's
 * customer fields (the PSK, a public key…) sit beside them under their own keys.
 */
export interface ProtocolCard {
  enabled: boolean;
  username?: string;
  password?: string | null;
  servers: SubscriptionServer[];
  links?: ConfigLink[];
  [customerField: string]: unknown;
}

/** How a card is titled and labelled (from the protocol table). */
export interface ProtocolPresentation {
  id: string;
  displayName: string;
  fields: ReadonlyArray<{ key: string; label: string }>;
}

/** What `/sub/{username}` tells a user about itself; the JSON answer is `{success: true, ...this}`. */
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

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"'`]/g, (c) => HTML_ESCAPES[c]!);
}

/** Only links we built ourselves: absolute http(s) or same-origin paths; anything else is shown as text. */
function isSafeHref(url: string): boolean {
  return /^https?:\/\//i.test(url) || (url.startsWith('/') && !url.startsWith('//'));
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];

/** Bytes with the panel's units (powers of 1024, as `data_limit_unit` counts them). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes <= 0) return '0 B';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** `2026-07-01 12:00 UTC`; an unreadable date is shown as given (escaped by the caller). */
export function formatDate(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

const STATUS_LABELS: Record<UserStatus, { label: string; color: string }> = {
  active: { label: 'Active', color: '#1a7f37' },
  on_hold: { label: 'On hold', color: '#0969da' },
  limited: { label: 'Data limit reached', color: '#bc4c00' },
  expired: { label: 'Expired', color: '#cf222e' },
  disabled: { label: 'Disabled', color: '#57606a' },
};

function statusBadge(status: UserStatus): string {
  const known = STATUS_LABELS[status] ?? { label: status, color: '#57606a' };
  return `<span class="badge" style="background:${known.color}">${escapeHtml(known.label)}</span>`;
}

function usageSection(info: SubscriptionInfo, extras: SubscriptionPageExtras): string {
  const used = info.total_traffic_bytes;
  const usedText = `Upload ${escapeHtml(formatBytes(info.upload_bytes))} · Download ${escapeHtml(formatBytes(info.download_bytes))}`;
  if (extras.data_limit_bytes <= 0) {
    return `<section><h2>Usage</h2>
<p class="big">${escapeHtml(formatBytes(used))} used <span class="muted">of unlimited</span></p>
<p class="muted">${usedText}</p></section>`;
  }
  const percent = Math.min(100, Math.max(0, (used / extras.data_limit_bytes) * 100));
  const barColor = percent >= 100 ? '#cf222e' : percent >= 80 ? '#bc4c00' : '#1a7f37';
  return `<section><h2>Usage</h2>
<p class="big">${escapeHtml(formatBytes(used))} used <span class="muted">of ${escapeHtml(`${info.data_limit} ${info.data_limit_unit}`)}</span></p>
<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${percent.toFixed(0)}"><div style="width:${percent.toFixed(1)}%;background:${barColor}"></div></div>
<p class="muted">${percent.toFixed(1)}% · ${usedText}</p></section>`;
}

function expirySection(info: SubscriptionInfo, extras: SubscriptionPageExtras): string {
  let text: string;
  if (info.status === 'on_hold') {
    const days = extras.pending_activation_days;
    text = `Starts at first connection${days ? ` (then valid for ${escapeHtml(days)} day${days === 1 ? '' : 's'})` : ''}`;
  } else if (!info.expiry_date) {
    text = 'Never';
  } else {
    const left = info.days_left ?? 0;
    const leftText = left > 0 ? `${escapeHtml(left)} day${left === 1 ? '' : 's'} left` : 'expired';
    text = `${escapeHtml(formatDate(info.expiry_date))} <span class="muted">(${leftText})</span>`;
  }
  return `<section><h2>Expiry</h2><p class="big">${text}</p></section>`;
}

function field(label: string, value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === '') return '';
  return `<div class="field"><span class="label">${escapeHtml(label)}</span><code>${escapeHtml(value)}</code></div>`;
}

function serverList(servers: SubscriptionServer[]): string {
  if (!servers.length) return '<p class="muted">No servers are assigned to you for this protocol yet.</p>';
  const rows = servers
    .map((s) => `<li>${escapeHtml(s.name)}${s.address ? ` — <code>${escapeHtml(s.address)}${s.port ? `:${escapeHtml(s.port)}` : ''}</code>` : ''}</li>`)
    .join('');
  return `<ul class="servers">${rows}</ul>`;
}

function linkList(card: ProtocolCard, displayName: string): string {
  const links = card.links ?? [];
  if (!links.length) return `<p class="muted">No ${escapeHtml(displayName)} server is assigned to you yet.</p>`;
  return `<p class="muted">Download a profile and import it into a ${escapeHtml(displayName)} client${links.some((l) => l.qr_svg) ? ', or scan its QR code with the app' : ''}.</p><ul class="links">${links
    .map((l) => {
      const link = isSafeHref(l.url) ? `<a href="${escapeHtml(l.url)}" download="${escapeHtml(l.file)}">${escapeHtml(l.file)}</a>` : `<code>${escapeHtml(l.url)}</code>`;
      // The SVG is node-qrcode's output for our own text: markup we made, not user data.
      const qr = l.qr_svg ? `<figure class="qr" role="img" aria-label="${escapeHtml(`QR code of ${l.file}`)}">${l.qr_svg}</figure>` : '';
      return `<li>${link}${qr}</li>`;
    })
    .join('')}</ul>`;
}

function protocolSection(card: ProtocolCard, how: ProtocolPresentation): string {
  const credentials = 'username' in card ? `${field('Username', card.username)}${field('Password', card.password)}` : '';
  const extra = how.fields.map((f) => field(f.label, card[f.key] as string | null)).join('');
  const body = card.links ? linkList(card, how.displayName) : serverList(card.servers);
  return `<section><h2>${escapeHtml(how.displayName)}</h2>${credentials}${extra}${body}</section>`;
}

const STYLE = `
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f6f8fa;color:#1f2328}
main{max-width:680px;margin:0 auto;padding:24px 16px}
header{display:flex;align-items:center;justify-content:space-between;gap:12px;flex-wrap:wrap}
h1{font-size:22px;margin:0;word-break:break-all}
h2{font-size:15px;margin:0 0 8px;color:#57606a;text-transform:uppercase;letter-spacing:.04em}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;margin-top:16px}
.badge{color:#fff;border-radius:999px;padding:3px 12px;font-size:13px;font-weight:600}
.online{font-size:13px;color:#57606a}
.big{font-size:18px;margin:0 0 6px}
.muted{color:#57606a;font-size:13px}
.bar{height:10px;background:#eaeef2;border-radius:5px;overflow:hidden}
.bar>div{height:100%}
.field{display:flex;gap:8px;align-items:baseline;margin:4px 0;flex-wrap:wrap}
.label{min-width:160px;color:#57606a}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f8fa;border:1px solid #d0d7de;border-radius:4px;padding:1px 6px;word-break:break-all}
ul{margin:6px 0 0;padding-left:20px}
a{color:#0969da}
footer{margin-top:24px;text-align:center}
.qr{margin:8px 0;max-width:260px;background:#fff;padding:4px;border-radius:4px}
.qr svg{display:block;width:100%;height:auto}
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}section{background:#161b22;border-color:#30363d}code{background:#0d1117;border-color:#30363d}.bar{background:#30363d}a{color:#4493f8}}
`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

/** The whole subscription page: self-contained (inline CSS, no scripts, no external assets). */
export function renderSubscriptionPage(info: SubscriptionInfo, extras: SubscriptionPageExtras, presentation: readonly ProtocolPresentation[]): string {
  const enabled = presentation.filter((how) => info.protocols[how.id]?.enabled);
  const sections = [usageSection(info, extras), expirySection(info, extras), ...enabled.map((how) => protocolSection(info.protocols[how.id]!, how))];
  const anyProtocol = enabled.length > 0;
  const body = `<header><h1>${escapeHtml(info.username)}</h1><div>${statusBadge(info.status)} <span class="online">${info.is_online ? '● online' : '○ offline'}</span></div></header>
${sections.join('\n')}
${anyProtocol ? '' : '<section><p class="muted">No protocol is enabled for this account.</p></section>'}
<footer class="muted">Keep this link private: it is the key to your account.</footer>`;
  return page(`${info.username} — subscription`, body);
}

/** The answer to every wrong link: it must not reveal whether the user exists. */
export function renderNotFoundPage(): string {
  return page('Not found', '<section><h1>Not found</h1></section>');
}
