/// <reference lib="dom" />
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import jsQR from 'jsqr';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { en } from '../../api/pages/i18n/en';
import { fa } from '../../api/pages/i18n/fa';
import type { Language } from '../../api/pages/i18n';
import { requirePrerequisite } from '../helpers/prereq';
import { createStatusUsers, createSubscriptionFixture, type SubscriptionFixture } from '../helpers/subscription-fixture';

// pngjs (node-qrcode's own PNG codec) ships no type declarations.
const { PNG } = require('pngjs') as { PNG: { sync: { read(png: Buffer): { width: number; height: number; data: Buffer } } } };

const CHROMIUM = '/usr/bin/chromium';
const AXE = require.resolve('axe-core/axe.min.js');
const SUPPORT = '@polygate_support';
/** Set to a directory (e.g. docs/screenshots) to write the screenshots the README shows. */
const SHOTS = process.env.POLYGATE_SUB_SCREENSHOTS;
/** Which of the 12 views are photographed (viewport-language-status), and which cards besides. */
const SHOT_SET = new Set(['phone-fa-active', 'phone-en-limited', 'phone-fa-expired', 'desktop-en-active']);
const CARD_SHOTS: Record<string, string> = { 'phone-fa-active': 'wireguard', 'desktop-en-active': 'l2tp' };

const VIEWPORTS = [
  { name: 'phone', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
  { name: 'desktop', viewport: { width: 1280, height: 900 }, isMobile: false, hasTouch: false, deviceScaleFactor: 1 },
] as const;
const LANGS: ReadonlyArray<{ lang: Language; header: string }> = [
  { lang: fa, header: 'fa-IR,fa;q=0.9,en;q=0.3' },
  { lang: en, header: 'en-US,en;q=0.9' },
];
const USERS = [
  { username: 'active_user', status: 'active' },
  { username: 'expired_user', status: 'expired' },
  { username: 'limited_user', status: 'limited' },
] as const;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * Decodes what Chromium drew: a screenshot of the element, read by jsQR (independent of the
 * encoder). A frame caught mid-layout on a loaded machine can fail to read, so the code is
 * photographed again (at device and at CSS scale) before it counts as unreadable.
 */
async function decodeShown(page: Page, selector: string, index: number): Promise<string | null> {
  const element = page.locator(selector).nth(index);
  await element.scrollIntoViewIfNeeded();
  for (const scale of ['device', 'css', 'device'] as const) {
    const png = PNG.sync.read(await element.screenshot({ scale, animations: 'disabled' }));
    const text = jsQR(new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length), png.width, png.height)?.data;
    if (text) return text;
  }
  return null;
}

/**
 * The subscription page in headless Chromium, as a customer opens it from a bot's link: at a
 * phone's 390×844 and at desktop width, in Persian and English (chosen from Accept-Language),
 * for an active, an expired and a limited user. The plugins are scripted TEST DOUBLES that
 * render configs with the real plugins' renderers; two servers run every protocol.
 */
describe('subscription page in headless Chromium', function () {
  this.timeout(180_000);
  let f: SubscriptionFixture;
  let browser: Browser | undefined;
  let origin: string;
  const json = new Map<string, Json>();
  const links = new Map<string, string>();

  before(async function () {
    requirePrerequisite(this, existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)`);
    f = await createSubscriptionFixture('sqlite', { nodes: 1 });
    await createStatusUsers(f);
    const set = await f.h.http.put('/api/v1/support_contact').set('X-API-KEY', f.h.adminKey).send({ support_contact: SUPPORT });
    expect(set.status, JSON.stringify(set.body)).to.equal(200);
    origin = await f.h.listen();
    for (const { username } of USERS) {
      const { path: p, token } = await f.subOf(username);
      links.set(username, `${origin}${p}?token=${encodeURIComponent(token)}`);
      const res = await f.h.http.get(p).query({ token }).set('Accept', 'application/json');
      expect(res.status).to.equal(200);
      json.set(username, res.body);
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // panel.example.test (the public URL) reaches this daemon: a plain-http panel, which browsers do not treat as a secure context.
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP panel.example.test 127.0.0.1'],
    });
    if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await f?.h.close();
  });

  for (const vp of VIEWPORTS) {
    for (const { lang, header } of LANGS) {
      describe(`${vp.name} ${vp.viewport.width}×${vp.viewport.height}, ${lang.code} (Accept-Language: ${header})`, () => {
        let context: BrowserContext;
        before(async () => {
          const { name: _n, ...options } = vp;
          context = await browser!.newContext({ ...options, locale: lang.code, extraHTTPHeaders: { 'Accept-Language': header } });
          await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
        });
        after(() => context?.close());

        for (const user of USERS) {
          it(`${user.status}: every credential present and copyable, every QR code decodes to its text, ${lang.dir} layout, no serious axe violation`, async () => {
            const data = json.get(user.username)!;
            const m = lang.messages;
            const page = await context.newPage();
            const problems: string[] = [];
            page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
            page.on('console', (msg) => {
              if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
            });
            const outside: string[] = [];
            page.on('request', (r) => {
              if (!r.url().startsWith(origin)) outside.push(r.url());
            });
            const response = await page.goto(links.get(user.username)!, { waitUntil: 'load' });
            expect(response?.status()).to.equal(200);
            const csp = response!.headers()['content-security-policy']!;
            expect(csp).to.match(/^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/]{43}='; style-src 'sha256-[A-Za-z0-9+/]{43}='; img-src data:/);
            expect(csp).to.not.contain('unsafe');

            // Language and direction, from Accept-Language alone.
            expect(await page.getAttribute('html', 'lang')).to.equal(lang.code);
            expect(await page.getAttribute('html', 'dir')).to.equal(lang.dir);
            expect(await page.evaluate(() => getComputedStyle(document.body).direction)).to.equal(lang.dir);
            expect((await page.locator('.badge').textContent())?.trim()).to.equal(m.status[user.status]);

            // Dates: the Persian calendar for Persian, ISO for English.
            const expiry = new Date(data.expiry_date);
            const shownDate = (await page.locator('#expiry time').textContent())?.trim();
            if (lang.code === 'fa') {
              expect(shownDate).to.equal(new Intl.DateTimeFormat('fa-IR-u-ca-persian', { dateStyle: 'long', timeStyle: 'short', timeZone: 'Asia/Tehran' }).format(expiry));
              expect(shownDate).to.match(/[۰-۹]/).and.match(/۱۴۰[0-9۰-۹]/);
            } else {
              expect(shownDate).to.equal(`${expiry.toISOString().slice(0, 16).replace('T', ' ')} UTC`);
            }

            // What to do next, with the support contact as a link.
            const notice = page.locator('#next-steps');
            if (user.status === 'active') {
              expect(await notice.count()).to.equal(0);
              expect(await page.locator('footer .support a').getAttribute('href')).to.equal('https://t.me/polygate_support');
            } else {
              const steps = m.nextSteps[user.status];
              expect(await notice.isVisible()).to.equal(true);
              expect((await notice.locator('h2').textContent())?.trim()).to.equal(steps.title);
              expect(await notice.locator('.support a').getAttribute('href')).to.equal('https://t.me/polygate_support');
              expect((await notice.locator('.support a').textContent())?.trim()).to.equal(SUPPORT);
            }

            // Every running protocol has a card; each value the JSON gives is on it and copies exactly.
            const running = Object.entries(data.protocols as Record<string, Json>).filter(([, c]) => c.available);
            expect(running.map(([id]) => id)).to.deep.equal(['openvpn', 'l2tp', 'cisco', 'wireguard']);
            expect(await page.locator('section.card').count()).to.equal(running.length);
            for (const [id, card] of running) {
              const section = page.locator(`section.card[data-protocol="${id}"]`);
              expect(await section.isVisible(), `${id} card`).to.equal(true);
              const values: string[] = [card.username, card.password, card.psk, ...card.servers.map((s: Json) => s.dial), ...(card.links ?? []).flatMap((l: Json) => (l.facts ?? []).map((fact: Json) => fact.value))].filter(
                (v): v is string => typeof v === 'string' && v !== '',
              );
              if (id !== 'wireguard') expect(values, `${id} has a username and a password`).to.include.members([card.username, card.password]);
              if (id === 'l2tp') expect(values).to.include(card.psk);
              if (id === 'cisco') expect(values).to.include(f.pin);
              if (id === 'l2tp') expect(values).to.include('vpn.panel.example.test');
              for (const value of new Set(values)) {
                const codes = section.locator('code').filter({ hasText: new RegExp(`^${value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) });
                const n = await codes.count();
                expect(n, `${id}: ${value} is shown`).to.be.greaterThan(0);
                for (let i = 0; i < n; i++) {
                  const code = codes.nth(i);
                  expect(await code.getAttribute('dir'), `${id}: ${value} reads left to right`).to.equal('ltr');
                  const button = section.locator(`button[data-copy-for="${await code.getAttribute('id')}"]`);
                  await page.evaluate(() => navigator.clipboard.writeText(''));
                  await button.click();
                  expect(await page.evaluate(() => navigator.clipboard.readText()), `${id}: copy ${value}`).to.equal(value);
                  expect((await button.locator('.t').textContent())?.trim()).to.equal(m.copied);
                }
              }
              // A scannable config is on the page in full and copies exactly too.
              const configs = ((card.links ?? []) as Json[]).filter((l) => typeof l.config === 'string').map((l) => l.config as string);
              const boxes = section.locator('details.config');
              expect(await boxes.count(), `${id}: configs on the page`).to.equal(configs.length);
              for (let i = 0; i < configs.length; i++) {
                await boxes.nth(i).locator('summary').click();
                expect(await boxes.nth(i).locator('pre').textContent()).to.equal(configs[i]);
                await boxes.nth(i).locator('button.copy').click();
                expect(await page.evaluate(() => navigator.clipboard.readText())).to.equal(configs[i]);
              }
              expect((await section.locator('details.setup ol li').count()) > 0, `${id}: setup steps`).to.equal(true);
              expect(await section.locator('details.setup .apps li').count(), `${id}: apps per platform`).to.be.greaterThan(0);
            }

            // Every QR code, as drawn, decodes to exactly what it stands for.
            const expected: string[] = [];
            for (const [, card] of running) {
              for (const link of (card.links ?? []) as Json[]) expected.push(typeof link.config === 'string' ? link.config : link.url);
              if (!card.links?.length) expected.push(data.subscription_url);
            }
            expected.push(data.subscription_url); // "open this page on your phone"
            await page.evaluate(() => document.querySelectorAll('details.qr-box').forEach((d) => ((d as HTMLDetailsElement).open = true)));
            const figures = page.locator('figure.qr');
            expect(await figures.count()).to.equal(expected.length);
            const decoded: string[] = [];
            for (let i = 0; i < expected.length; i++) {
              const text = await decodeShown(page, 'figure.qr .qr-img', i);
              expect(text, `QR code ${i} decodes`).to.be.a('string');
              expect(text, `QR code ${i} is what its figure says it is`).to.equal(await figures.nth(i).getAttribute('data-qr-text'));
              decoded.push(text!);
            }
            expect(decoded.sort()).to.deep.equal([...expected].sort());

            // Fits a phone: nothing wider than the viewport.
            expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'no horizontal scrolling').to.equal(true);

            // Accessibility: axe-core in the page (evaluated through the DevTools protocol, the CSP stays as served).
            await page.evaluate(readFileSync(AXE, 'utf8'));
            const violations = (await page.evaluate(async () => {
              const r = await (window as unknown as { axe: { run(o: unknown): Promise<{ violations: Array<{ id: string; impact: string; nodes: unknown[] }> }> } }).axe.run({ resultTypes: ['violations'] });
              return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
            })) as Array<{ id: string; impact: string }>;
            expect(violations.filter((v) => v.impact === 'serious' || v.impact === 'critical'), JSON.stringify(violations)).to.deep.equal([]);

            expect(outside, 'requests that left the daemon').to.deep.equal([]);
            expect(problems, 'errors in the page (a CSP violation shows here)').to.deep.equal([]);
            const shot = `${vp.name}-${lang.code}-${user.status}`;
            if (SHOTS && SHOT_SET.has(shot)) {
              // As the customer first sees it: codes folded on a phone, unfolded on a wide screen; configs folded.
              await page.evaluate((open) => {
                document.querySelectorAll('details.qr-box').forEach((d) => ((d as HTMLDetailsElement).open = open));
                document.querySelectorAll('details.config').forEach((d) => ((d as HTMLDetailsElement).open = false));
                document.querySelectorAll('button.copy .t').forEach((t) => (t.textContent = (t.parentElement as HTMLElement).dataset.label ?? ''));
                window.scrollTo(0, 0);
              }, vp.name === 'desktop');
              await page.screenshot({ path: path.join(SHOTS, `subscription-${shot}.png`) });
              const card = CARD_SHOTS[shot];
              if (card) {
                if (vp.name === 'phone') await page.locator(`section.card[data-protocol="${card}"] details.qr-box`).first().evaluate((d) => ((d as HTMLDetailsElement).open = true));
                await page.locator(`section.card[data-protocol="${card}"]`).screenshot({ path: path.join(SHOTS, `subscription-${shot}-${card}.png`) });
              }
            }
            await page.close();
          });
        }
      });
    }
  }

  describe('language switch, error pages and protocols that do not run', () => {
    let context: BrowserContext;
    before(async () => {
      context = await browser!.newContext({ viewport: { width: 390, height: 844 }, locale: 'fa', extraHTTPHeaders: { 'Accept-Language': 'fa' } });
    });
    after(() => context?.close());

    it('the visible switch changes the language and direction and keeps the token', async () => {
      const page = await context.newPage();
      await page.goto(links.get('active_user')!);
      expect(await page.getAttribute('html', 'dir')).to.equal('rtl');
      await page.locator('nav.langs a[hreflang="en"]').click();
      await page.waitForLoadState('load');
      expect(await page.getAttribute('html', 'lang')).to.equal('en');
      expect(await page.getAttribute('html', 'dir')).to.equal('ltr');
      expect(new URL(page.url()).searchParams.get('token')).to.equal(new URL(links.get('active_user')!).searchParams.get('token'));
      expect((await page.locator('#usage h2').textContent())?.trim()).to.equal(en.messages.usage);
      await page.close();
    });

    it('dark mode (prefers-color-scheme: dark) keeps every text readable: no serious axe violation', async () => {
      const dark = await browser!.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark', extraHTTPHeaders: { 'Accept-Language': 'fa' } });
      try {
        for (const user of ['active_user', 'limited_user']) {
          const page = await dark.newPage();
          await page.goto(links.get(user)!);
          expect(await page.evaluate(() => getComputedStyle(document.body).backgroundColor)).to.equal('rgb(13, 17, 23)');
          await page.evaluate(readFileSync(AXE, 'utf8'));
          const serious = await page.evaluate(async () => {
            const r = await (window as unknown as { axe: { run(): Promise<{ violations: Array<{ id: string; impact: string }> }> } }).axe.run();
            return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id);
          });
          expect(serious, user).to.deep.equal([]);
          await page.close();
        }
      } finally {
        await dark.close();
      }
    });

    it('on a plain-http panel (no Clipboard API) the copy buttons still copy, by selection', async () => {
      const insecure = await browser!.newContext({ viewport: { width: 390, height: 844 } });
      await insecure.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
      try {
        const page = await insecure.newPage();
        const port = new URL(origin).port;
        const link = new URL(links.get('active_user')!);
        await page.goto(`http://panel.example.test:${port}${link.pathname}${link.search}`);
        expect(await page.evaluate(() => window.isSecureContext), 'a plain-http origin').to.equal(false);
        const password = json.get('active_user')!.protocols.l2tp.password as string;
        const code = page.locator('section.card[data-protocol="l2tp"] code', { hasText: password }).first();
        await page.locator(`button[data-copy-for="${await code.getAttribute('id')}"]`).click();
        expect((await page.locator(`button[data-copy-for="${await code.getAttribute('id')}"] .t`).textContent())?.trim()).to.equal(en.messages.copied);
        // Read back where the Clipboard API exists: the browser's clipboard is one.
        const reader = await insecure.newPage();
        await reader.goto(`${origin}/healthz`);
        expect(await reader.evaluate(() => navigator.clipboard.readText())).to.equal(password);
      } finally {
        await insecure.close();
      }
    });

    it('unknown user and wrong token: the same friendly localized 404 page, no trace of the user, no serious axe violation', async () => {
      const page = await context.newPage();
      const token = new URL(links.get('active_user')!).searchParams.get('token')!;
      const bodies: string[] = [];
      for (const url of [`${origin}/sub/active_user?token=wrong-${token.slice(6)}`, `${origin}/sub/nobody_at_all?token=${token}`, `${origin}/sub/active_user`]) {
        const res = await page.goto(url);
        expect(res?.status(), url).to.equal(404);
        expect(res!.headers()['content-type']).to.match(/^text\/html/);
        expect(await page.getAttribute('html', 'dir')).to.equal('rtl');
        expect((await page.locator('h1').textContent())?.trim()).to.equal(fa.messages.notFoundTitle);
        bodies.push(await page.locator('main').innerHTML());
      }
      expect(new Set(bodies).size, 'identical pages').to.equal(1);
      expect(bodies[0]).to.not.contain('active_user').and.not.contain('nobody_at_all');
      await page.evaluate(readFileSync(AXE, 'utf8'));
      const serious = await page.evaluate(async () => {
        const r = await (window as unknown as { axe: { run(): Promise<{ violations: Array<{ id: string; impact: string }> }> } }).axe.run();
        return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id);
      });
      expect(serious).to.deep.equal([]);
      await page.close();
    });

    it('a profile whose plugin is down: a localized 503 page with the support contact and a way back, never JSON', async () => {
      const page = await context.newPage();
      const link = (json.get('active_user')!.protocols.openvpn.links as Json[])[0]!;
      f.plugins.openvpn.available = { available: false, reason: 'openvpn is not installed' };
      await f.h.core.plugins.refreshAvailability();
      try {
        const url = new URL(link.url);
        const res = await page.goto(`${origin}${url.pathname}${url.search}`);
        expect(res?.status()).to.equal(503);
        expect(res!.headers()['content-type']).to.match(/^text\/html/);
        expect((await page.locator('h1').textContent())?.trim()).to.equal(fa.messages.unavailableTitle);
        expect(await page.locator('.support a').getAttribute('href')).to.equal('https://t.me/polygate_support');
        await page.locator('a.button').click();
        await page.waitForLoadState('load');
        expect(new URL(page.url()).pathname).to.equal('/sub/active_user');
        // With the plugin down its card is gone; the others stay.
        expect(await page.locator('section.card[data-protocol="openvpn"]').count()).to.equal(0);
        expect(await page.locator('section.card').count()).to.equal(3);
      } finally {
        f.plugins.openvpn.available = { available: true };
        await f.h.core.plugins.refreshAvailability();
      }
      await page.close();
    });
  });
});
