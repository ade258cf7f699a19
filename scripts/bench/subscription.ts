import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { logger as rootLogger } from '../../core/logger';
import { ALL_PROTOCOLS, createSubscriptionFixture } from '../../test/helpers/subscription-fixture';
import { runLoad } from './load';
import { bench, median, progress } from './report';

/**
 * Subscription page figures, measured over HTTP in this one run against the same user, a
 * customer with all four protocols on five servers (main + 4 nodes; the plugins are the
 * scripted doubles of the browser tests, rendering configs with the real renderers):
 *   sub.page_vs_get_user       time per GET /sub/{u} (HTML, Persian, every QR code) ÷ time per GET /api/v1/users/{u}; goal ≤ 2
 *   sub.page_json_vs_get_user  the same for the page's JSON form
 *   sub.page_html_per_s        GET /sub/{u} HTML requests per second
 */
export async function runSubscriptionBench(): Promise<void> {
  const level = rootLogger.level;
  // stdout carries only BENCH lines; the harness logs through the root logger.
  rootLogger.level = 'warn';
  const f = await createSubscriptionFixture('sqlite', { nodes: 4 });
  let server: Server | undefined;
  try {
    await f.createUser({ username: 'bench_customer', data_limit: 50, expiry_days: 30, ...ALL_PROTOCOLS });
    const { path, token } = await f.subOf('bench_customer');
    const detail = (await f.h.http.get('/api/v1/users/bench_customer').set('X-API-KEY', f.h.adminKey)).body;
    const servers = ['openvpn_servers', 'l2tp_servers', 'cisco_servers', 'wg_servers'].map((k) => (detail[k] as unknown[]).length);
    if (servers.some((n) => n !== 5)) throw new Error(`expected 5 servers per protocol, got ${servers.join(', ')}`);
    server = f.h.app.listen(0, '127.0.0.1');
    await new Promise((r) => server!.once('listening', r));
    const port = (server.address() as AddressInfo).port;
    const pagePath = `${path}?token=${encodeURIComponent(token)}`;

    // As a phone's browser asks: HTML, Persian, compressed.
    const html = { Accept: 'text/html,application/xhtml+xml,*/*;q=0.8', 'Accept-Language': 'fa-IR,fa;q=0.9', 'Accept-Encoding': 'gzip, deflate, br' };
    const check = await fetch(`http://127.0.0.1:${port}${pagePath}`, { headers: { ...html, 'Accept-Encoding': 'identity' } });
    const text = await check.text();
    const qrCodes = (text.match(/<figure class="qr"/g) ?? []).length;
    if (check.status !== 200 || qrCodes < 16) throw new Error(`the page did not render as expected (HTTP ${check.status}, ${qrCodes} QR codes)`);

    const load = (p: string, headers: Record<string, string>, durationMs: number) => runLoad({ port, paths: [p], headers, concurrency: 8, durationMs });
    const getUser = (ms: number) => load('/api/v1/users/bench_customer', { 'X-API-KEY': f.h.adminKey }, ms);
    progress(`subscription page: ${qrCodes} QR codes, ${(text.length / 1024).toFixed(0)} KiB of HTML`);
    await getUser(800); // warm-up
    await load(pagePath, html, 800);
    const htmlRatios: number[] = [];
    const jsonRatios: number[] = [];
    const htmlRates: number[] = [];
    for (let round = 0; round < 5; round++) {
      const api = await getUser(1200);
      const page = await load(pagePath, html, 1200);
      const json = await load(pagePath, { Accept: 'application/json' }, 1200);
      if (api.errors || page.errors || json.errors) throw new Error(`errors under load: api ${api.errors}, page ${page.errors}, json ${json.errors}`);
      htmlRatios.push(api.perSecond / page.perSecond);
      jsonRatios.push(api.perSecond / json.perSecond);
      htmlRates.push(page.perSecond);
    }
    bench('sub.page_vs_get_user', median(htmlRatios), 'x');
    bench('sub.page_json_vs_get_user', median(jsonRatios), 'x');
    bench('sub.page_html_per_s', median(htmlRates), 'req/s');
  } finally {
    if (server) {
      server.closeAllConnections();
      await new Promise((r) => server!.close(r));
    }
    await f.h.close();
    rootLogger.level = level;
  }
}

if (require.main === module) {
  runSubscriptionBench().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
