import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { expect } from 'chai';
import { chromium, type Browser } from 'playwright-core';
import { listRestRoutes } from '../../api/rest';
import { createHarness, type Harness } from '../helpers/harness';
import { requirePrerequisite } from '../helpers/prereq';

const CHROMIUM = '/usr/bin/chromium';

/**
 * The docs page in a real browser: Swagger UI must load from the daemon alone (offline
 * installs, strict networks) and render the generated document's operations.
 */
describe('API docs page in headless Chromium', function () {
  this.timeout(120_000);
  let h: Harness;
  let server: Server;
  let browser: Browser | undefined;
  let origin: string;

  before(async function () {
    requirePrerequisite(this, existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)`);
    h = await createHarness('sqlite');
    server = await new Promise<Server>((resolve, reject) => {
      const s = h.app.listen(0, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
    });
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  after(async () => {
    await browser?.close();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await h?.close();
  });

  it('renders the operations of every domain and loads nothing from outside 127.0.0.1', async () => {
    const context = await browser!.newContext();
    const page = await context.newPage();
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));

    const response = await page.goto(`${origin}/docs/`, { waitUntil: 'load', timeout: 30_000 });
    expect(response?.status(), 'GET /docs/').to.equal(200);
    await page.waitForSelector('.opblock-summary-path', { timeout: 30_000 });
    // Let late requests (validator badges, fonts) show themselves before judging the list.
    await page.waitForLoadState('networkidle', { timeout: 15_000 }).catch(() => undefined);

    const operations = [
      ...new Set(
        await page.$$eval('.opblock', (blocks) =>
          blocks.map((b) => {
            const method = b.querySelector('.opblock-summary-method')?.textContent?.trim().toUpperCase() ?? '';
            const p = b.querySelector('.opblock-summary-path');
            return `${method} ${p?.getAttribute('data-path') ?? p?.textContent?.trim() ?? ''}`;
          }),
        ),
      ),
    ];
    const paths = operations.map((o) => o.slice(o.indexOf(' ') + 1));
    for (const expected of ['/users/list_all', '/sub_admins', '/nodes', '/public/ports', '/health']) {
      expect(paths, `Swagger UI lists ${expected}`).to.include(expected);
    }
    const notRendered = listRestRoutes()
      .map((r) => `${r.method} ${r.path}`)
      .filter((op) => !operations.includes(op));
    expect(notRendered, 'REST routes missing from the rendered page').to.deep.equal([]);
    expect(await page.locator('.information-container .title').first().textContent()).to.contain('polygate API');

    const outside = requested.filter((url) => {
      const u = new URL(url);
      return !(u.protocol === 'data:' || u.protocol === 'blob:' || u.hostname === '127.0.0.1');
    });
    expect(outside, 'requests that left 127.0.0.1').to.deep.equal([]);
    expect(pageErrors, 'uncaught errors in the page').to.deep.equal([]);
    console.log(`  (docs page: ${operations.length} operations rendered, ${requested.length} requests, all to 127.0.0.1)`);
    await context.close();
  });
});
