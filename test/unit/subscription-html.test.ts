import { createHash } from 'node:crypto';
import { expect } from 'chai';
import { formatBytes, LANGUAGES, pickLanguage, type Language } from '../../api/pages/i18n';
import { en } from '../../api/pages/i18n/en';
import { fa } from '../../api/pages/i18n/fa';
import { PROTOCOL_PRESENTATION } from '../../api/pages/subscription';
import {
  contactHtml,
  escapeHtml,
  pageCsp,
  renderErrorPage,
  renderSubscriptionPage,
  type PageContext,
  type SubscriptionInfo,
  type SubscriptionPageExtras,
} from '../../api/pages/subscription-html';

const ctxOf = (lang: Language = en): PageContext => ({
  lang,
  languages: LANGUAGES.map((l) => ({ lang: l, href: `?token=t&lang=${l.code}` })),
  pageQrSvg: '<svg data-test="page-qr"></svg>',
});
const render = (i: SubscriptionInfo, e: SubscriptionPageExtras, lang?: Language) => renderSubscriptionPage(i, e, PROTOCOL_PRESENTATION, ctxOf(lang)).html;

const HOSTILE = `<script>alert("x")</script>'"&\`<img src=x onerror=alert(1)>`;

function info(overrides: Partial<SubscriptionInfo> = {}): SubscriptionInfo {
  return {
    username: 'alice',
    status: 'active',
    is_active: true,
    is_online: false,
    data_limit: 10,
    data_limit_unit: 'GB',
    upload_bytes: 1024 ** 3,
    download_bytes: 1024 ** 3,
    total_traffic_bytes: 2 * 1024 ** 3,
    expiry_date: '2026-07-01T12:00:00.000Z',
    days_left: 30,
    subscription_url: 'http://panel.test/sub/alice?token=t',
    support_contact: null,
    protocols: {
      openvpn: {
        enabled: true,
        available: true,
        username: 'alice',
        password: 'ovpn-pass',
        servers: [{ name: 'Main Server', address: 'vpn.test', port: 1194, dial: 'vpn.test:1194' }],
        links: [{ name: 'main_udp', file: 'main_udp.ovpn', url: 'http://panel.test/download/alice/main_udp.ovpn?token=t' }],
      },
      l2tp: { enabled: true, available: true, username: 'alice', password: 'l2tp-pass', psk: 'the-psk', servers: [{ name: 'Main Server', address: 'vpn.test', port: 500, dial: 'vpn.test' }] },
      cisco: { enabled: false, available: false, username: 'alice', password: null, servers: [] },
      wireguard: { enabled: true, available: false, address: null, public_key: null, servers: [] },
    },
    ...overrides,
  };
}
const extras = (o: Partial<SubscriptionPageExtras> = {}): SubscriptionPageExtras => ({ data_limit_bytes: 10 * 1024 ** 3, pending_activation_days: null, ...o });

describe('subscription page renderer (pure)', () => {
  it('escapes & < > " \' and ` so text cannot leave an element or an attribute', () => {
    expect(escapeHtml(HOSTILE)).to.equal('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;&quot;&amp;&#96;&lt;img src=x onerror=alert(1)&gt;');
  });

  it('escapes every dynamic value: no markup from data survives anywhere on the page, in either language', () => {
    const server = { name: HOSTILE, address: HOSTILE, port: 443, dial: HOSTILE };
    for (const lang of LANGUAGES) {
      const html = render(
        info({
          username: HOSTILE,
          data_limit_unit: HOSTILE as 'GB',
          expiry_date: HOSTILE,
          subscription_url: HOSTILE,
          support_contact: HOSTILE,
          status: 'expired',
          protocols: {
            openvpn: { enabled: true, available: true, username: HOSTILE, password: HOSTILE, servers: [server], links: [{ name: HOSTILE, file: HOSTILE, url: `http://x/${HOSTILE}` }] },
            l2tp: { enabled: true, available: true, username: HOSTILE, password: HOSTILE, psk: HOSTILE, servers: [server] },
            cisco: { enabled: true, available: true, username: HOSTILE, password: HOSTILE, servers: [server], links: [{ name: 'c', file: 'c.conf', url: '/d/c.conf', facts: [{ key: 'certificate_pin', label: HOSTILE, value: HOSTILE }, { key: HOSTILE, label: HOSTILE, value: HOSTILE }] }] },
            wireguard: { enabled: true, available: true, address: HOSTILE, public_key: HOSTILE, servers: [server], links: [{ name: 'w', file: 'w.conf', url: '/d/w.conf', config: HOSTILE }] },
          },
        }),
        extras(),
        lang,
      );
      // The page's one script is ours (allowed by its hash); no markup from data gets in.
      expect(html.match(/<script/g), lang.code).to.have.length(1);
      expect(html).to.not.contain('<img');
      expect(html).to.not.match(/onerror=alert\(1\)>/);
      expect(html).to.contain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
      for (const attr of html.match(/\s[a-z-]+="[^"]*"/g) ?? []) expect(attr).to.not.contain('<');
    }
  });

  it('shows a link only for http(s) or same-origin URLs; anything else is inert text', () => {
    const html = render(
      info({ protocols: { ...info().protocols, openvpn: { enabled: true, available: true, servers: [], links: [{ name: 'evil', file: 'evil.ovpn', url: 'javascript:alert(1)' }] } } }),
      extras(),
    );
    expect(html).to.not.contain('href="javascript:');
    expect(html).to.contain('>javascript:alert(1)</code>');
  });

  it('draws a usage bar against the limit (its width in the nonce\'d stylesheet, not a style attribute), or says "unlimited"', () => {
    const limited = render(info(), extras());
    expect(limited).to.contain('role="progressbar"').and.contain('aria-valuenow="20"').and.contain('of 10 GB');
    expect(limited).to.contain('.bar>i{width:20.0%}').and.not.contain('style="');
    const unlimited = render(info({ data_limit: 0 }), extras({ data_limit_bytes: 0 }));
    expect(unlimited).to.not.contain('role="progressbar"');
    expect(unlimited).to.contain('of unlimited');
  });

  it('words the expiry per language: ISO UTC in English, the Persian calendar in Tehran time in Persian', () => {
    expect(render(info(), extras())).to.contain('2026-07-01 12:00 UTC').and.contain('30 days left');
    expect(render(info(), extras(), fa)).to.contain('۱۰ تیر ۱۴۰۵').and.contain('۳۰ روز مانده').and.contain('به وقت تهران');
    expect(render(info({ expiry_date: null, days_left: null }), extras())).to.match(/<p class="big">Never<\/p>/);
    const onHold = render(info({ status: 'on_hold', expiry_date: null, days_left: null }), extras({ pending_activation_days: 30 }));
    expect(onHold).to.contain('Starts at first connection (then valid for 30 days)').and.contain('On hold');
  });

  it('next steps for every state but active, with the support contact', () => {
    for (const status of ['expired', 'limited', 'disabled', 'on_hold'] as const) {
      for (const lang of LANGUAGES) {
        const html = render(info({ status, support_contact: '@help_desk' }), extras(), lang);
        expect(html, `${status} ${lang.code}`).to.contain(`<h2>${escapeHtml(lang.messages.nextSteps[status].title)}</h2>`);
        expect(html).to.contain('href="https://t.me/help_desk"');
      }
    }
    expect(render(info({ support_contact: '@help_desk' }), extras())).to.not.contain('id="next-steps"');
    expect(render(info({ status: 'expired' }), extras())).to.contain(en.messages.noSupportContact);
  });

  it('lists only available protocols, each with its credentials, setup steps and apps', () => {
    const html = render(info(), extras());
    expect(html).to.contain('<h2>OpenVPN</h2>').and.contain('<h2>L2TP/IPsec</h2>');
    expect(html).to.contain('href="http://panel.test/download/alice/main_udp.ovpn?token=t"');
    expect(html).to.match(/>l2tp-pass<\/code>/).and.match(/>the-psk<\/code>/).and.match(/>ovpn-pass<\/code>/);
    expect(html).to.not.contain('Cisco AnyConnect').and.not.contain('<h2>WireGuard</h2>'); // off, and enabled but not running
    expect(html).to.contain('OpenVPN Connect').and.contain('Built-in VPN settings (type L2TP/IPsec PSK)');
    // A protocol typed in by hand gets the page's own QR code, for the device being set up.
    expect(html).to.contain('data-qr="page" data-qr-text="http://panel.test/sub/alice?token=t"');
  });

  it('is self-contained: inline style and script, allowed by their hashes in the CSP, nothing external; right to left in Persian', () => {
    const pages = [
      renderSubscriptionPage(info(), extras(), PROTOCOL_PRESENTATION, ctxOf()),
      renderSubscriptionPage(info(), extras(), PROTOCOL_PRESENTATION, ctxOf(fa)),
      renderErrorPage('not_found', ctxOf()),
      renderErrorPage('unavailable', ctxOf(fa)),
    ];
    const sha256 = (t: string) => createHash('sha256').update(t, 'utf8').digest('base64');
    for (const page of pages) {
      expect(page.html).to.not.match(/<link|<iframe|<img|src=|@import|url\(|style="/i);
      expect(page.html).to.match(/^<!doctype html>/);
      expect([...page.html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => sha256(m[1]!))).to.deep.equal([page.styleHash]);
      expect([...page.html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => sha256(m[1]!))).to.deep.equal(page.scriptHash ? [page.scriptHash] : []);
      expect(pageCsp(page)).to.contain(`style-src 'sha256-${page.styleHash}'`).and.not.contain('unsafe');
    }
    expect(pages[2]!.scriptHash, 'error pages run nothing').to.equal(null);
    expect(pages[1]!.html).to.contain('<html lang="fa" dir="rtl">');
    expect(pages[3]!.html).to.contain('<html lang="fa" dir="rtl">').and.contain(fa.messages.unavailableTitle);
  });

  it('every language has every message (a missing one would show "undefined")', () => {
    const keysOf = (o: object, prefix = ''): string[] =>
      Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) ? keysOf(v, `${prefix}${k}.`) : [`${prefix}${k}`]));
    const want = keysOf(en.messages).sort();
    for (const lang of LANGUAGES) expect(keysOf(lang.messages).sort(), lang.code).to.deep.equal(want);
    for (const lang of LANGUAGES) for (const status of ['expired', 'limited'] as const) expect(render(info({ status }), extras(), lang)).to.not.match(/undefined|\[object/);
  });

  it('formats byte counts in the language\'s units and digits (powers of 1024)', () => {
    expect(formatBytes(en, 0)).to.equal('0 B');
    expect(formatBytes(en, 1536)).to.equal('1.50 KB');
    expect(formatBytes(en, 10 * 1024 ** 3)).to.equal('10.0 GB');
    expect(formatBytes(en, 512 * 1024 ** 4)).to.equal('512 TB');
    expect(formatBytes(fa, 1536)).to.equal('۱٫۵۰ کیلوبایت');
  });

  it('picks the language from ?lang=, else Accept-Language by quality, else English', () => {
    expect(pickLanguage(undefined, undefined).code).to.equal('en');
    expect(pickLanguage(undefined, 'fa-IR,fa;q=0.9').code).to.equal('fa');
    expect(pickLanguage(undefined, 'en;q=0.3, fa;q=0.6').code).to.equal('fa');
    expect(pickLanguage(undefined, 'fa;q=0, en;q=0.1').code).to.equal('en');
    expect(pickLanguage('en', 'fa').code).to.equal('en');
    expect(pickLanguage(['fa'], 'en').code).to.equal('en');
  });

  it('links a support contact only where its form is unambiguous', () => {
    expect(contactHtml('@shop_help')).to.equal('<a href="https://t.me/shop_help" rel="noopener noreferrer"><bdi dir="ltr">@shop_help</bdi></a>');
    expect(contactHtml('https://example.com/help?a=1&b=2')).to.contain('href="https://example.com/help?a=1&amp;b=2"');
    expect(contactHtml('+98 912 000 0000')).to.contain('href="tel:+989120000000"');
    expect(contactHtml('help@example.com')).to.contain('href="mailto:help@example.com"');
    expect(contactHtml('javascript:alert(1)')).to.equal('<bdi dir="ltr">javascript:alert(1)</bdi>');
    expect(contactHtml('پشتیبانی ۲۴ ساعته')).to.not.contain('<a');
  });
});
