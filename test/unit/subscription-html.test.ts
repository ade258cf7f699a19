import { expect } from 'chai';
import {
  escapeHtml,
  formatBytes,
  renderNotFoundPage,
  renderSubscriptionPage,
  type SubscriptionInfo,
  type SubscriptionPageExtras,
} from '../../api/pages/subscription-html';
import { PROTOCOL_PRESENTATION } from '../../api/pages/subscription';

const render = (i: SubscriptionInfo, e: SubscriptionPageExtras) => renderSubscriptionPage(i, e, PROTOCOL_PRESENTATION);

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
    protocols: {
      openvpn: { enabled: true, username: 'alice', password: 'ovpn-pass', servers: [], links: [{ name: 'main_udp', file: 'main_udp.ovpn', url: 'http://panel.test/download/alice/main_udp.ovpn?token=t' }] },
      l2tp: { enabled: true, username: 'alice', password: 'l2tp-pass', psk: 'the-psk', servers: [{ name: 'Main Server', address: 'vpn.test', port: null }] },
      cisco: { enabled: false, username: 'alice', password: null, servers: [] },
      wireguard: { enabled: false, address: null, public_key: null, servers: [] },
    },
    ...overrides,
  };
}
const extras = (o: Partial<SubscriptionPageExtras> = {}): SubscriptionPageExtras => ({ data_limit_bytes: 10 * 1024 ** 3, pending_activation_days: null, ...o });

describe('subscription page renderer (pure)', () => {
  it('escapes & < > " \' and ` so text cannot leave an element or an attribute', () => {
    expect(escapeHtml(HOSTILE)).to.equal(
      '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;&quot;&amp;&#96;&lt;img src=x onerror=alert(1)&gt;',
    );
  });

  it('escapes every dynamic value: no markup from data survives anywhere on the page', () => {
    const server = { name: HOSTILE, address: HOSTILE, port: 443 };
    const html = render(
      info({
        username: HOSTILE,
        data_limit_unit: HOSTILE as 'GB',
        expiry_date: HOSTILE,
        protocols: {
          openvpn: { enabled: true, username: HOSTILE, password: HOSTILE, servers: [server], links: [{ name: HOSTILE, file: HOSTILE, url: `http://x/${HOSTILE}` }] },
          l2tp: { enabled: true, username: HOSTILE, password: HOSTILE, psk: HOSTILE, servers: [server] },
          cisco: { enabled: true, username: HOSTILE, password: HOSTILE, servers: [server] },
          wireguard: { enabled: true, address: HOSTILE, public_key: HOSTILE, servers: [server] },
        },
      }),
      extras(),
    );
    expect(html).to.not.contain('<script');
    expect(html).to.not.contain('<img');
    expect(html).to.not.match(/onerror=alert\(1\)>/);
    expect(html).to.contain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    // Every attribute value is double-quoted, and no quote from the data reaches one unescaped.
    for (const attr of html.match(/\s[a-z-]+="[^"]*"/g) ?? []) expect(attr).to.not.contain('<');
  });

  it('shows a link only for http(s) or same-origin URLs; anything else is inert text', () => {
    const html = render(
      info({ protocols: { ...info().protocols, openvpn: { enabled: true, servers: [], links: [{ name: 'evil', file: 'evil.ovpn', url: 'javascript:alert(1)' }] } } }),
      extras(),
    );
    expect(html).to.not.contain('href="javascript:');
    expect(html).to.contain('<code>javascript:alert(1)</code>');
  });

  it('draws a usage bar against the limit, or says "unlimited"', () => {
    const limited = render(info(), extras());
    expect(limited).to.contain('role="progressbar"');
    expect(limited).to.contain('aria-valuenow="20"');
    expect(limited).to.contain('of 10 GB');
    const unlimited = render(info({ data_limit: 0 }), extras({ data_limit_bytes: 0 }));
    expect(unlimited).to.not.contain('role="progressbar"');
    expect(unlimited).to.contain('of unlimited');
  });

  it('words the expiry as date + days left, "Never", or "Starts at first connection" for on_hold', () => {
    expect(render(info(), extras())).to.contain('2026-07-01 12:00 UTC').and.contain('30 days left');
    expect(render(info({ expiry_date: null, days_left: null }), extras())).to.match(/<p class="big">Never<\/p>/);
    const onHold = render(info({ status: 'on_hold', expiry_date: null, days_left: null }), extras({ pending_activation_days: 30 }));
    expect(onHold).to.contain('Starts at first connection (then valid for 30 days)');
    expect(onHold).to.contain('On hold');
  });

  it('lists only enabled protocols, each with its credentials', () => {
    const html = render(info(), extras());
    expect(html).to.contain('<h2>OpenVPN</h2>').and.contain('<h2>L2TP/IPsec</h2>');
    expect(html).to.contain('href="http://panel.test/download/alice/main_udp.ovpn?token=t"');
    expect(html).to.contain('<code>l2tp-pass</code>').and.contain('<code>the-psk</code>');
    // The OpenVPN profile asks for the user's password too: the page shows it.
    expect(html).to.contain('<code>ovpn-pass</code>');
    expect(html).to.not.contain('Cisco AnyConnect').and.not.contain('WireGuard');
  });

  it('is self-contained: inline style, no script, no external resource', () => {
    for (const html of [render(info(), extras()), renderNotFoundPage()]) {
      expect(html).to.not.match(/<script|<link|<iframe|<img|src=|@import|url\(/i);
      expect(html).to.match(/^<!doctype html>/);
    }
  });

  it('formats byte counts in the panel units (powers of 1024)', () => {
    expect(formatBytes(0)).to.equal('0 B');
    expect(formatBytes(1536)).to.equal('1.50 KB');
    expect(formatBytes(10 * 1024 ** 3)).to.equal('10.0 GB');
    expect(formatBytes(512 * 1024 ** 4)).to.equal('512 TB');
  });
});
