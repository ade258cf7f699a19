import { createHash } from 'node:crypto';
import { expect } from 'chai';
import express from 'express';
import request, { type Response } from 'supertest';
import { mountPublicPages } from '../../api/pages';
import { DomainError } from '../../core/errors';
import { SubAdmin, User } from '../../core/db';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

/** JSON and files run nothing; HTML pages run and apply only their own script and stylesheet, by hash. */
const CSP_NO_SCRIPT = "default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const CSP_PAGE = /^default-src 'none'; (?:script-src 'sha256-([A-Za-z0-9+/]{43}=)'; )?style-src 'sha256-([A-Za-z0-9+/]{43}=)'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'$/;
const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('base64');
const HOSTILE = `<script>alert("pwn")</script>'"&<img src=x onerror=alert(1)>`;
const JSON_NOT_FOUND = { success: false, message: 'Not found' };
const PROFILES_UNAVAILABLE = 'OpenVPN profiles are not available: the OpenVPN plugin is not running on this server.';

/** `/sub/alice?token=…` → { path: '/sub/alice', token }. */
function splitSubUrl(url: string): { path: string; token: string } {
  const u = new URL(url);
  return { path: u.pathname, token: u.searchParams.get('token') ?? '' };
}

function expectPrivateHeaders(res: Response): void {
  const csp = res.headers['content-security-policy'];
  if (/^text\/html/.test(res.headers['content-type'] ?? '')) {
    const allowed = CSP_PAGE.exec(csp);
    expect(allowed, csp).to.not.equal(null);
    // The header allows exactly the page's one stylesheet and (if any) one script; nothing is loaded from anywhere.
    const scripts = [...res.text.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => sha256(m[1]!));
    const styles = [...res.text.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => sha256(m[1]!));
    expect(scripts).to.deep.equal(allowed![1] ? [allowed![1]] : []);
    expect(styles).to.deep.equal([allowed![2]]);
    expect(res.text).to.not.match(/<link |\ssrc=|\sstyle="|\son[a-z]+=|<script [^>]|<style [^>]/);
  } else {
    expect(csp).to.equal(CSP_NO_SCRIPT);
  }
  expect(res.headers['cache-control']).to.equal('no-store');
  expect(res.headers['referrer-policy']).to.equal('no-referrer');
}

/**
 * The harness's scripted OpenVPN plugin renders the profiles (no daemon runs): `renderedBy`
 * lists (username, endpoint) of every profile it rendered, and `setRunning` turns it into an
 * unavailable plugin, as when `openvpn` is not installed.
 */
class FakeProfileSource {
  constructor(private readonly h: Harness) {}
  private get plugin() {
    return this.h.plugins.openvpn!;
  }
  get calls(): Array<[string, string]> {
    return this.plugin.rendered.map((r) => [r.user.username, r.endpoints.map((e) => `${e.host}:${e.port}/${e.protocol}`).join(',')]);
  }
  set failWith(error: Error | undefined) {
    this.plugin.renderFailure = error;
  }
}
async function setProfileSource(h: Harness, source: FakeProfileSource | undefined): Promise<void> {
  const plugin = h.plugins.openvpn!;
  plugin.rendered.length = 0;
  plugin.renderFailure = undefined;
  plugin.available = source ? { available: true } : { available: false, reason: 'openvpn is not installed' };
  await h.core.plugins.refreshAvailability();
}

forEachDatabase((kind) => {
  describe(`subscription page and profile downloads [${kind}]`, () => {
    let h: Harness;
    const admin = (req: ReturnType<Harness['http']['get']>) => req.set('X-API-KEY', h.adminKey);

    async function createUser(body: Record<string, unknown>): Promise<void> {
      const res = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send(body);
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
    }
    async function subUrlOf(username: string): Promise<{ path: string; token: string }> {
      const res = await admin(h.http.get(`/api/v1/users/${username}/sub`));
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      return splitSubUrl(res.body.sub_url);
    }
    const getSub = (path: string, token: string | undefined, accept = 'application/json') =>
      h.http.get(path).query(token === undefined ? {} : { token }).set('Accept', accept);

    before(async () => {
      h = await createHarness(kind);
      await createUser({
        username: 'alice',
        data_limit: 10,
        data_limit_unit: 'GB',
        expiry_days: 30,
        enable_l2tp: true,
        l2tp_password: 'alice-l2tp-pass',
        enable_cisco: true,
        cisco_password: 'alice-cisco-pass',
        notes: 'paid until July',
      });
      await createUser({ username: 'bob' });
      await createUser({ username: 'carol', activation_type: 'flexible_days', pending_activation_days: 30 });
      await createUser({ username: 'dave', enable_openvpn: false });
    });
    after(() => h.close());

    it('JSON: status, usage, expiry and every enabled protocol with its credentials', async () => {
      const { path, token } = await subUrlOf('alice');
      expect(path).to.equal('/sub/alice');
      const res = await getSub(path, token);
      expect(res.status).to.equal(200);
      expect(res.headers['content-type']).to.match(/^application\/json/);
      expectPrivateHeaders(res);
      const b = res.body;
      expect(Object.keys(b).sort()).to.deep.equal(
        [
          'success', 'username', 'status', 'is_active', 'is_online', 'data_limit', 'data_limit_unit', 'upload_bytes',
          'download_bytes', 'total_traffic_bytes', 'expiry_date', 'days_left', 'protocols', 'subscription_url', 'support_contact',
        ].sort(),
      );
      expect(b).to.deep.include({
        success: true,
        username: 'alice',
        status: 'active',
        is_active: true,
        is_online: false,
        data_limit: 10,
        data_limit_unit: 'GB',
        upload_bytes: 0,
        download_bytes: 0,
        total_traffic_bytes: 0,
        days_left: 30,
      });
      const detail = (await admin(h.http.get('/api/v1/users/alice'))).body;
      expect(new Date(b.expiry_date).getTime()).to.equal(new Date(detail.expiry_date).getTime());
      expect(new Date(b.expiry_date).getTime()).to.equal(h.clock.now().getTime() + 30 * 86_400_000);

      const psk = (await admin(h.http.get('/api/v1/server_settings'))).body.settings.ipsec_psk;
      expect(psk).to.be.a('string').and.not.equal('');
      expect(b.protocols.l2tp).to.deep.include({ enabled: true, username: 'alice', password: 'alice-l2tp-pass', psk });
      expect(b.protocols.cisco).to.deep.include({ enabled: true, username: 'alice', password: 'alice-cisco-pass' });
      expect(b.protocols.l2tp.servers).to.be.an('array').that.is.not.empty;
      expect(b.protocols.cisco.servers).to.be.an('array').that.is.not.empty;
      expect(b.protocols.wireguard).to.deep.equal({ enabled: false, available: false, address: null, public_key: null, servers: [] });
      expect(b.subscription_url).to.equal(`http://panel.example.test:8080/sub/alice?token=${token}`);
      expect(b.support_contact).to.equal(null);
      // What a customer types: the host alone where ports are fixed, an https URL for the TLS one.
      expect(b.protocols.l2tp.servers[0]).to.deep.equal({ name: 'Main Server', address: 'panel.example.test', port: 500, dial: 'panel.example.test' });
      expect(b.protocols.cisco.servers[0].dial).to.equal('https://panel.example.test');
      expect(b.protocols.openvpn.servers[0].dial).to.equal('panel.example.test:1194');
      for (const id of ['openvpn', 'l2tp', 'cisco']) expect(b.protocols[id].available, id).to.equal(true);

      // One download link per all_ovpn_links entry, each carrying the token.
      const links = (await admin(h.http.get('/api/v1/users/alice/all_ovpn_links'))).body.links as Array<{ name: string }>;
      expect(b.protocols.openvpn.enabled).to.equal(true);
      expect(b.protocols.openvpn.links.map((l: { name: string }) => l.name)).to.deep.equal(links.map((l) => l.name));
      expect(b.protocols.openvpn.links.map((l: { name: string }) => l.name)).to.include('main_udp');
      for (const link of b.protocols.openvpn.links as Array<{ name: string; url: string }>) {
        const u = new URL(link.url);
        expect(u.pathname).to.equal(`/download/alice/${link.name}.ovpn`);
        expect(u.searchParams.get('token')).to.equal(token);
      }
    });

    it('JSON: a disabled protocol shows no credentials (bob has only OpenVPN)', async () => {
      const { path, token } = await subUrlOf('bob');
      const b = (await getSub(path, token)).body;
      expect(b.protocols.openvpn.enabled).to.equal(true);
      expect(b.protocols.l2tp).to.deep.equal({ enabled: false, available: false, username: 'bob', password: null, psk: null, servers: [] });
      expect(b.protocols.cisco).to.deep.equal({ enabled: false, available: false, username: 'bob', password: null, servers: [] });
      expect(b).to.deep.include({ data_limit: 0, expiry_date: null, days_left: null });
    });

    it('HTML (a browser, or curl with */*): status badge, usage bar, expiry and the protocols, with the private headers', async () => {
      const { path, token } = await subUrlOf('alice');
      for (const accept of ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', '*/*']) {
        const res = await getSub(path, token, accept);
        expect(res.status).to.equal(200);
        expect(res.headers['content-type']).to.match(/^text\/html; charset=utf-8/);
        expectPrivateHeaders(res);
        const html = res.text;
        expect(html).to.match(/^<!doctype html>/);
        expect(html).to.contain('<h1 dir="ltr">alice</h1>').and.contain('>Active</span>');
        expect(html).to.contain('<html lang="en" dir="ltr">');
        expect(html).to.contain('role="progressbar"').and.contain('of 10 GB');
        expect(html).to.contain('30 days left');
        expect(html).to.contain(`href="http://panel.example.test:8080/download/alice/main_udp.ovpn?token=${token}"`);
        expect(html).to.match(/<code dir="ltr" id="v\d+">alice-l2tp-pass<\/code>/).and.match(/<code dir="ltr" id="v\d+">alice-cisco-pass<\/code>/);
        expect(html).to.not.contain('paid until July'); // the admin's notes are not the customer's business
        expect(html.match(/<script\b/g) ?? [], 'one inline script (the copy buttons)').to.have.length(1);
      }
    });

    it('HTML: "unlimited" and "Never" for a user without limit or expiry; "Starts at first connection" for on_hold', async () => {
      const bob = await subUrlOf('bob');
      const html = (await getSub(bob.path, bob.token, 'text/html')).text;
      expect(html).to.contain('of unlimited').and.match(/<p class="big">Never<\/p>/);

      const carol = await subUrlOf('carol');
      const json = (await getSub(carol.path, carol.token)).body;
      expect(json).to.deep.include({ status: 'on_hold', expiry_date: null, days_left: null });
      const page = (await getSub(carol.path, carol.token, 'text/html')).text;
      expect(page).to.contain('>On hold</span>').and.contain('Starts at first connection (then valid for 30 days)');
    });

    it('every value on the page is HTML-escaped (hostile notes and passwords written straight into the database)', async () => {
      await createUser({ username: 'mallory', enable_l2tp: true, enable_cisco: true });
      await admin(h.http.put('/api/v1/users/mallory')).send({ notes: HOSTILE });
      // Straight to the row: the users service may refuse such passwords, the page must not depend on that.
      await User.update({ l2tp_password: HOSTILE, cisco_password: HOSTILE, notes: HOSTILE }, { where: { username: 'mallory' } });
      const { path, token } = await subUrlOf('mallory');
      const res = await getSub(path, token, 'text/html');
      expect(res.status).to.equal(200);
      expect(res.text).to.not.contain('<script>alert').and.not.contain('<img');
      expect(res.text.match(/<script\b/g), 'only the page\'s own script').to.have.length(1);
      expect(res.text).to.contain('>&lt;script&gt;alert(&quot;pwn&quot;)&lt;/script&gt;&#39;&quot;&amp;&lt;img src=x onerror=alert(1)&gt;</code>');
      const json = (await getSub(path, token)).body;
      expect(json.protocols.l2tp.password).to.equal(HOSTILE);
    });

    it('a wrong, empty, missing, repeated or other user\'s token, and an unknown user, are the same 404 (JSON and HTML)', async () => {
      const alice = await subUrlOf('alice');
      const bob = await subUrlOf('bob');
      const variants: Array<[string, string, Record<string, string | string[]>]> = [
        ['wrong token', alice.path, { token: 'not-the-token' }],
        ['empty token', alice.path, { token: '' }],
        ['missing token', alice.path, {}],
        ['repeated token', alice.path, { token: [alice.token, alice.token] }],
        ["bob's token on alice", alice.path, { token: bob.token }],
        ['unknown user', '/sub/nobody_here', { token: alice.token }],
        ['unknown user, no token', '/sub/nobody_here', {}],
        ['invalid user name', '/sub/..%2F..%2Fetc', { token: alice.token }],
      ];
      let html: string | undefined;
      for (const [label, path, query] of variants) {
        const asJson = await h.http.get(path).query(query).set('Accept', 'application/json');
        expect(asJson.status, label).to.equal(404);
        expect(asJson.body, label).to.deep.equal(JSON_NOT_FOUND);
        expectPrivateHeaders(asJson);
        const asHtml = await h.http.get(path).query(query).set('Accept', 'text/html');
        expect(asHtml.status, label).to.equal(404);
        expect(asHtml.headers['content-type'], label).to.match(/^text\/html/);
        expectPrivateHeaders(asHtml);
        html ??= asHtml.text;
        expect(asHtml.text, `${label}: same page as every other wrong link`).to.equal(html);
      }
      expect(html).to.contain('This link does not work').and.not.contain('alice');
    });

    it('an unknown user costs the same database work as a wrong token (the token is checked either way)', async () => {
      const alice = await subUrlOf('alice');
      // Sequelize reads `options.logging` per query; its typings do not expose `options`.
      const sequelize = h.core.ctx.db.sequelize as unknown as { options: { logging: unknown } };
      const countQueries = async (path: string, token: string) => {
        let n = 0;
        const previous = sequelize.options.logging;
        sequelize.options.logging = () => {
          n++;
        };
        try {
          expect((await getSub(path, token)).status).to.equal(404);
        } finally {
          sequelize.options.logging = previous;
        }
        return n;
      };
      const wrongToken = await countQueries(alice.path, 'x'.repeat(alice.token.length));
      const unknownUser = await countQueries('/sub/nobody_here', 'x'.repeat(alice.token.length));
      const missingToken = await countQueries(alice.path, '');
      expect(wrongToken, 'queries for a wrong token').to.be.greaterThan(0);
      expect(unknownUser, 'queries for an unknown user').to.equal(wrongToken);
      expect(missingToken, 'queries for a missing token').to.equal(wrongToken);
    });

    it('revoke invalidates the old token at once; the new one works', async () => {
      await createUser({ username: 'erin' });
      const old = await subUrlOf('erin');
      expect((await getSub(old.path, old.token)).status).to.equal(200);
      const revoke = await admin(h.http.post('/api/v1/users/erin/revoke'));
      expect(revoke.status, JSON.stringify(revoke.body)).to.equal(200);
      const fresh = splitSubUrl(revoke.body.new_subscription_url);
      expect(fresh.token).to.not.equal(old.token);

      const stale = await getSub(old.path, old.token);
      expect(stale.status).to.equal(404);
      expect(stale.body).to.deep.equal(JSON_NOT_FOUND);
      expect((await h.http.get(`/download/erin/main_udp.ovpn`).query({ token: old.token })).status).to.equal(404);

      const ok = await getSub(fresh.path, fresh.token);
      expect(ok.status).to.equal(200);
      expect(ok.body.username).to.equal('erin');
      expect((await subUrlOf('erin')).token).to.equal(fresh.token);
    });

    it("a reseller's subscription listener (scope { subAdminId }) serves only that reseller's users", async () => {
      const reseller = await admin(h.http.post('/api/v1/sub_admins')).send({ username: 'shop_one', password: 'shop-one-password' });
      expect(reseller.status, JSON.stringify(reseller.body)).to.equal(200);
      const key = reseller.body.sub_admin.api_key as string;
      expect((await h.http.post('/api/v1/users').set('X-API-KEY', key).send({ username: 'shop_user' })).status).to.equal(200);
      const shopUser = await subUrlOf('shop_user');
      const alice = await subUrlOf('alice');

      const app = express();
      mountPublicPages(app, h.services, { subAdminId: reseller.body.sub_admin.id });
      const listener = request(app);
      expect((await listener.get(shopUser.path).query({ token: shopUser.token }).set('Accept', 'application/json')).status).to.equal(200);
      const foreign = await listener.get(alice.path).query({ token: alice.token }).set('Accept', 'application/json');
      expect(foreign.status).to.equal(404);
      expect(foreign.body).to.deep.equal(JSON_NOT_FOUND);
      expect((await listener.get('/download/alice/main_udp.ovpn').query({ token: alice.token })).status).to.equal(404);
      // The main port serves everyone with a valid token.
      expect((await getSub(shopUser.path, shopUser.token)).status).to.equal(200);
    });

    it('language: Accept-Language by quality, ?lang= wins, anything else is English; Persian is right to left', async () => {
      const { path, token } = await subUrlOf('alice');
      const page = (headers: Record<string, string>, lang?: string) =>
        h.http.get(path).query(lang === undefined ? { token } : { token, lang }).set({ Accept: 'text/html', ...headers });
      const cases: Array<[string, Record<string, string>, string | undefined, 'en' | 'fa']> = [
        ['no header', {}, undefined, 'en'],
        ['Persian browser', { 'Accept-Language': 'fa-IR,fa;q=0.9,en-US;q=0.8' }, undefined, 'fa'],
        ['English preferred over Persian', { 'Accept-Language': 'de;q=1, en;q=0.8, fa;q=0.5' }, undefined, 'en'],
        ['Persian preferred by quality', { 'Accept-Language': 'en;q=0.2, fa;q=0.7' }, undefined, 'fa'],
        ['switch to English', { 'Accept-Language': 'fa' }, 'en', 'en'],
        ['switch to Persian', { 'Accept-Language': 'en' }, 'fa', 'fa'],
        ['unknown lang ignored', { 'Accept-Language': 'fa' }, '<script>', 'fa'],
      ];
      for (const [label, headers, lang, want] of cases) {
        const res = await page(headers, lang);
        expect(res.status, label).to.equal(200);
        expect(res.text, label).to.contain(want === 'fa' ? '<html lang="fa" dir="rtl">' : '<html lang="en" dir="ltr">');
        expect(res.headers.vary, label).to.match(/Accept-Language/);
      }
      const persian = (await page({ 'Accept-Language': 'fa' })).text;
      expect(persian).to.contain('>فعال</span>');
      // Persian digits and units, the Persian calendar (alice expires 2026-07-01 12:00 UTC = 10 Tir 1405, 15:30 Tehran).
      expect(persian).to.contain('۱۰ تیر ۱۴۰۵').and.contain('گیگابایت').and.contain('۳۰ روز مانده');
      expect(persian).to.contain(`href="?token=${encodeURIComponent(token)}&amp;lang=en"`);
      expect(persian).to.not.contain('<script>alert');
    });

    it('support contact: the reseller\'s own on its customers\' pages, else the global one; escaped wherever it is shown', async () => {
      const key = async () => {
        const res = await admin(h.http.post('/api/v1/sub_admins')).send({ username: 'shop_contact', password: 'shop-contact-password' });
        expect(res.status, JSON.stringify(res.body)).to.equal(200);
        return res.body.sub_admin as { id: number; api_key: string };
      };
      const shop = await key();
      expect((await h.http.post('/api/v1/users').set('X-API-KEY', shop.api_key).send({ username: 'shop_customer', expiry_days: 1 })).status).to.equal(200);
      const shopUser = await subUrlOf('shop_customer');
      const alice = await subUrlOf('alice');
      expect((await getSub(shopUser.path, shopUser.token)).body.support_contact).to.equal(null);

      expect((await admin(h.http.put('/api/v1/support_contact')).send({ support_contact: '@global_help' })).status).to.equal(200);
      expect((await getSub(shopUser.path, shopUser.token)).body.support_contact, 'falls back to the global one').to.equal('@global_help');
      expect((await h.http.put('/api/v1/support_contact').set('X-API-KEY', shop.api_key).send({ support_contact: 'https://t.me/shop_bot' })).status).to.equal(200);
      expect((await getSub(shopUser.path, shopUser.token)).body.support_contact).to.equal('https://t.me/shop_bot');
      expect((await getSub(alice.path, alice.token)).body.support_contact, "the main admin's users keep the global one").to.equal('@global_help');
      const html = (await getSub(alice.path, alice.token, 'text/html')).text;
      expect(html).to.contain('<a href="https://t.me/global_help" rel="noopener noreferrer"><bdi dir="ltr">@global_help</bdi></a>');

      // Written straight into the row, past the API's validation: the page must not depend on it.
      await SubAdmin.update({ support_contact: HOSTILE }, { where: { id: shop.id } });
      const hostile = await getSub(shopUser.path, shopUser.token, 'text/html');
      expect(hostile.status).to.equal(200);
      expect(hostile.text).to.not.contain('<script>alert').and.not.contain('<img src=x');
      expect(hostile.text).to.contain('&lt;script&gt;alert(&quot;pwn&quot;)&lt;/script&gt;');
      await admin(h.http.put('/api/v1/support_contact')).send({ support_contact: null });
    });

    it('only protocols whose plugin runs get a card (JSON: available false, no servers)', async () => {
      const { path, token } = await subUrlOf('alice');
      expect((await getSub(path, token, 'text/html')).text).to.contain('data-protocol="l2tp"');
      const l2tp = h.plugins.l2tp!;
      l2tp.available = { available: false, reason: 'xl2tpd is not installed' };
      await h.core.plugins.refreshAvailability();
      try {
        const card = (await getSub(path, token)).body.protocols.l2tp;
        expect(card).to.include({ enabled: true, available: false });
        expect(card.servers).to.deep.equal([]);
        const html = (await getSub(path, token, 'text/html')).text;
        expect(html).to.not.contain('data-protocol="l2tp"').and.not.contain('alice-l2tp-pass');
        expect(html).to.contain('data-protocol="cisco"');
      } finally {
        l2tp.available = { available: true };
        await h.core.plugins.refreshAvailability();
      }
    });

    it('a repeated request is answered from memory only while nothing it shows changed (writes, the clock, plugins)', async () => {
      await createUser({ username: 'repeat_user', data_limit: 5, expiry_days: 3 });
      const { path, token } = await subUrlOf('repeat_user');
      const first = await getSub(path, token);
      expect((await getSub(path, token)).body, 'same answer again').to.deep.equal(first.body);
      expect(first.body.days_left).to.equal(3);
      expect((await admin(h.http.put('/api/v1/users/repeat_user')).send({ data_limit: 7 })).status).to.equal(200);
      expect((await getSub(path, token)).body.data_limit, 'after a write').to.equal(7);
      h.clock.advance(86_400_000);
      expect((await getSub(path, token)).body.days_left, 'a day later').to.equal(2);
      h.clock.advance(2 * 86_400_000 + 1);
      const expired = (await getSub(path, token)).body;
      expect(expired).to.include({ status: 'expired', days_left: 0 });
      expect((await getSub(path, token, 'text/html')).text).to.contain('Your subscription has ended');
      h.clock.set(new Date('2026-06-01T12:00:00Z'));
    });

    it('a browser asking for gzip gets the page compressed, byte for byte the same page', async () => {
      const { path, token } = await subUrlOf('alice');
      const raw = await h.http.get(path).query({ token }).set({ Accept: 'text/html', 'Accept-Encoding': 'identity' });
      expect(raw.headers['content-encoding']).to.equal(undefined);
      const zipped = await h.http
        .get(path)
        .query({ token })
        .set({ Accept: 'text/html', 'Accept-Encoding': 'gzip' })
        .buffer(true)
        .parse((r, cb) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => cb(null, Buffer.concat(chunks)));
        });
      expect(zipped.headers['content-encoding']).to.equal('gzip');
      expect(Number(zipped.headers['content-length'])).to.be.lessThan(Buffer.byteLength(raw.text) / 2);
      expect(zipped.headers['content-security-policy']).to.equal(raw.headers['content-security-policy']);
      expect(zipped.text ?? (zipped.body as Buffer).toString()).to.equal(raw.text);
    });

    describe('GET /download/{username}/{name}.ovpn', () => {
      afterEach(() => setProfileSource(h, new FakeProfileSource(h)));

      it('without the OpenVPN plugin: 503 naming the reason (only after the token and the name check out)', async () => {
        await setProfileSource(h, undefined);
        const { token } = await subUrlOf('alice');
        const res = await h.http.get('/download/alice/main_udp.ovpn').query({ token });
        expect(res.status).to.equal(503);
        expect(res.body).to.deep.equal({ success: false, message: PROFILES_UNAVAILABLE });
        expectPrivateHeaders(res);
      });

      it('a browser gets a localized HTML page instead (503 with a way back; 404 the same as the page\'s), never JSON', async () => {
        await setProfileSource(h, undefined);
        const { token } = await subUrlOf('alice');
        const res = await h.http.get('/download/alice/main_udp.ovpn').query({ token }).set({ Accept: 'text/html,*/*;q=0.8', 'Accept-Language': 'fa' });
        expect(res.status).to.equal(503);
        expect(res.headers['content-type']).to.match(/^text\/html/);
        expectPrivateHeaders(res);
        expect(res.text).to.contain('<html lang="fa" dir="rtl">').and.contain('این دانلود فعلاً در دسترس نیست');
        expect(res.text).to.contain(`href="/sub/alice?token=${token}"`);
        const wrong = await h.http.get('/download/alice/main_udp.ovpn').query({ token: 'nope' }).set({ Accept: 'text/html' });
        const unknown = await h.http.get('/download/nobody_here/main_udp.ovpn').query({ token }).set({ Accept: 'text/html' });
        const page404 = await h.http.get('/sub/nobody_here').query({ token }).set({ Accept: 'text/html' });
        for (const r of [wrong, unknown]) {
          expect(r.status).to.equal(404);
          expect(r.text).to.equal(page404.text);
        }
      });

      it('wrong or missing token, unknown user, a name the user may not use, or OpenVPN disabled: the same 404', async () => {
        const alice = await subUrlOf('alice');
        const bob = await subUrlOf('bob');
        const dave = await subUrlOf('dave');
        const fake = new FakeProfileSource(h);
        await setProfileSource(h, fake);
        const cases: Array<[string, string, Record<string, string>]> = [
          ['wrong token', '/download/alice/main_udp.ovpn', { token: 'nope' }],
          ['missing token', '/download/alice/main_udp.ovpn', {}],
          ["bob's token", '/download/alice/main_udp.ovpn', { token: bob.token }],
          ['unknown user', '/download/nobody_here/main_udp.ovpn', { token: alice.token }],
          ['unknown endpoint', '/download/alice/node_99_udp.ovpn', { token: alice.token }],
          ['not an .ovpn name', '/download/alice/main_udp', { token: alice.token }],
          ['path tricks', '/download/alice/..%2Fmain_udp.ovpn', { token: alice.token }],
          ['OpenVPN disabled for the user', '/download/dave/main_udp.ovpn', { token: dave.token }],
        ];
        for (const [label, path, query] of cases) {
          const res = await h.http.get(path).query(query).set('Accept', 'application/json');
          expect(res.status, label).to.equal(404);
          expect(res.body, label).to.deep.equal(JSON_NOT_FOUND);
        }
        expect(fake.calls, 'the renderer is never reached on a wrong link').to.deep.equal([]);
      });

      it('with a profile source: the .ovpn as an attachment, rendered for that user and endpoint', async () => {
        const { token } = await subUrlOf('alice');
        const fake = new FakeProfileSource(h);
        await setProfileSource(h, fake);
        const res = await h.http.get('/download/alice/main_udp.ovpn').query({ token }).buffer(true).parse((r, cb) => {
          let data = '';
          r.setEncoding('utf8');
          r.on('data', (c: string) => (data += c));
          r.on('end', () => cb(null, data));
        });
        expect(res.status).to.equal(200);
        expect(res.headers['content-type']).to.equal('application/x-openvpn-profile');
        expect(res.headers['content-disposition']).to.equal('attachment; filename="main_udp.ovpn"');
        expectPrivateHeaders(res);
        expect(res.body).to.equal('# openvpn config of alice\nremote panel.example.test 1194 udp\n');
        expect(fake.calls).to.deep.equal([['alice', 'panel.example.test:1194/udp']]);

        // Every link the subscription page offers downloads.
        const links = (await getSub('/sub/alice', token)).body.protocols.openvpn.links as Array<{ url: string }>;
        for (const link of links) {
          const u = new URL(link.url);
          expect((await h.http.get(`${u.pathname}${u.search}`)).status, link.url).to.equal(200);
        }
      });

      it("a renderer's domain error keeps its status and message; anything else is the generic 500", async () => {
        const { token } = await subUrlOf('alice');
        const fake = new FakeProfileSource(h);
        await setProfileSource(h, fake);
        fake.failWith = new DomainError('unavailable', 'Certificate generation is still running; try again in a minute.');
        let res = await h.http.get('/download/alice/main_udp.ovpn').query({ token });
        expect(res.status).to.equal(503);
        expect(res.body).to.deep.equal({ success: false, message: 'Certificate generation is still running; try again in a minute.' });
        fake.failWith = new Error('disk on fire at /etc/openvpn/pki');
        res = await h.http.get('/download/alice/main_udp.ovpn').query({ token });
        expect(res.status).to.equal(500);
        expect(res.body).to.deep.equal({ success: false, message: 'An internal error occurred.' });
      });
    });
  });
});
