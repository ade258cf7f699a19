import { expect } from 'chai';
import { User, UsageDaily } from '../../core/db';
import { MAIN_ADMIN } from '../../core/principal';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

forEachDatabase((kind) => {
  describe(`monitoring: /stats/traffic, /stats/system, /metrics [${kind}]`, function () {
    this.timeout(30_000);
    let h: Harness;
    let ovpn: ScriptedPlugin;
    let wg: ScriptedPlugin;
    let resellerKey: string;
    let otherResellerKey: string;

    before(async () => {
      h = await createHarness(kind, { POLYGATE_METRICS_TOKEN: METRICS_TOKEN });
      const r1 = await h.services.subAdmins.create(MAIN_ADMIN, { username: 'res1', password: 'reseller-password-1' });
      const r2 = await h.services.subAdmins.create(MAIN_ADMIN, { username: 'res2', password: 'reseller-password-2' });
      resellerKey = r1.api_key;
      otherResellerKey = r2.api_key;
      await h.services.users.create(MAIN_ADMIN, { username: 'alice', sub_admin_id: r1.id, max_clients: 5 });
      await h.services.users.create(MAIN_ADMIN, { username: 'bob', max_clients: 5 });
      ovpn = await addScriptedPlugin(h.core.plugins, 'openvpn', 'main');
      wg = await addScriptedPlugin(h.core.plugins, 'wireguard', 'node_1');
      ovpn.set({ key: 'a1', username: 'alice', rx: 100, tx: 1000 }, { key: 'b1', username: 'bob', rx: 5, tx: 50 });
      wg.set({ key: 'a2', username: 'alice', rx: 20, tx: 200, connectedAt: 0 });
      await h.core.accounting.tick();
      // History outside the default 30-day window (today is 2026-06-01 on the manual clock).
      const alice = (await User.findOne({ where: { username: 'alice' }, raw: true }))!;
      await UsageDaily.create({ user_id: alice.id, server_id: 'main', protocol: 'openvpn', day: '2026-04-15', rx: 7, tx: 70 });
    });
    after(() => h.close());

    const get = (path: string, key?: string) => {
      const req = h.http.get(path);
      return key === undefined ? req : req.set('X-API-KEY', key);
    };

    it('GET /api/v1/stats/traffic (main admin): totals per protocol, server and user over the last 30 days, plus live connections', async () => {
      const res = await get('/api/v1/stats/traffic', h.adminKey);
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({
        success: true,
        days: 30,
        from: '2026-05-03',
        to: '2026-06-01',
        live_connections: 3,
        totals: { upload_bytes: 125, download_bytes: 1250, total_bytes: 1375 },
        by_protocol: [
          { protocol: 'openvpn', upload_bytes: 105, download_bytes: 1050, total_bytes: 1155 },
          { protocol: 'wireguard', upload_bytes: 20, download_bytes: 200, total_bytes: 220 },
        ],
        by_server: [
          { server_id: 'main', upload_bytes: 105, download_bytes: 1050, total_bytes: 1155 },
          { server_id: 'node_1', upload_bytes: 20, download_bytes: 200, total_bytes: 220 },
        ],
        by_user: [
          { username: 'alice', upload_bytes: 120, download_bytes: 1200, total_bytes: 1320, active_connections: 2 },
          { username: 'bob', upload_bytes: 5, download_bytes: 50, total_bytes: 55, active_connections: 1 },
        ],
      });
    });

    it('?days widens or narrows the window (from the daily history)', async () => {
      let res = await get('/api/v1/stats/traffic?days=60', h.adminKey);
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ days: 60, from: '2026-04-03', to: '2026-06-01' });
      expect(res.body.totals).to.deep.equal({ upload_bytes: 132, download_bytes: 1320, total_bytes: 1452 });
      res = await get('/api/v1/stats/traffic?days=1', h.adminKey);
      expect(res.body).to.include({ days: 1, from: '2026-06-01', to: '2026-06-01' });
      expect(res.body.totals.total_bytes).to.equal(1375);
    });

    it('a sub-admin sees its own users only, and only their live connections', async () => {
      const res = await get('/api/v1/stats/traffic', resellerKey);
      expect(res.status).to.equal(200);
      expect(res.body.live_connections).to.equal(2);
      expect(res.body.totals).to.deep.equal({ upload_bytes: 120, download_bytes: 1200, total_bytes: 1320 });
      expect(res.body.by_user.map((u: { username: string }) => u.username)).to.deep.equal(['alice']);
      const other = await get('/api/v1/stats/traffic', otherResellerKey);
      expect(other.body).to.deep.include({ live_connections: 0, by_user: [], by_protocol: [], by_server: [] });
      expect(other.body.totals).to.deep.equal({ upload_bytes: 0, download_bytes: 0, total_bytes: 0 });
    });

    it('a bad window is a 400 naming the field', async () => {
      let res = await get('/api/v1/stats/traffic?days=abc', h.adminKey);
      expect(res.status).to.equal(400);
      expect(res.body).to.deep.equal({ success: false, message: "Field 'days' must be a number, not a string." });
      res = await get('/api/v1/stats/traffic?days=0', h.adminKey);
      expect(res.status).to.equal(400);
      expect(res.body).to.deep.equal({ success: false, message: "Field 'days' must be a whole number from 1 to 3650." });
    });

    it('the same figures over tRPC', async () => {
      // The harness types its caller loosely; the router's own type is exact.
      const caller = h.caller(h.adminKey) as unknown as { stats: { traffic(input: { days?: number }): Promise<{ totals: { total_bytes: number } }> } };
      const out = await caller.stats.traffic({ days: 30 });
      expect(out.totals.total_bytes).to.equal(1375);
    });

    it('keys: none is 401 "API key is missing", unknown is 401 "Invalid or inactive API key"', async () => {
      for (const path of ['/api/v1/stats/traffic', '/api/v1/stats/system']) {
        let res = await get(path);
        expect(res.status).to.equal(401);
        expect(res.body).to.deep.equal({ success: false, message: 'API key is missing' });
        res = await get(path, 'INVALID_KEY');
        expect(res.status).to.equal(401);
        expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
      }
    });

    it('GET /api/v1/stats/system (main admin): CPU, memory, disks, network rates and uptime', async () => {
      const res = await get('/api/v1/stats/system', h.adminKey);
      expect(res.status).to.equal(200);
      expect(res.body.success).to.equal(true);
      expect(res.body.cpu.cores).to.be.greaterThan(0);
      expect(res.body.memory.total_bytes).to.be.greaterThan(0);
      expect(res.body.memory.used_bytes).to.be.at.most(res.body.memory.total_bytes);
      expect(res.body.disks).to.be.an('array');
      expect(res.body.network).to.have.keys(['rx_bytes_per_sec', 'tx_bytes_per_sec', 'interfaces']);
      expect(res.body.uptime_seconds).to.be.greaterThan(0);
      expect(Date.parse(res.body.sampled_at)).to.not.be.NaN;
    });

    it('GET /api/v1/stats/system refuses a sub-admin key: 403 "Permission denied: Main admin API key required."', async () => {
      const res = await get('/api/v1/stats/system', resellerKey);
      expect(res.status).to.equal(403);
      expect(res.body).to.deep.equal({ success: false, message: 'Permission denied: Main admin API key required.' });
    });

    it('GET /metrics with the main admin key: Prometheus text with bytes, sessions, users, tick histogram and backend gauge', async () => {
      const res = await get('/metrics', h.adminKey);
      expect(res.status).to.equal(200);
      expect(res.headers['content-type']).to.match(/^text\/plain/);
      const text = res.text;
      expect(text).to.include('polygate_traffic_bytes_total{protocol="openvpn",server="main",direction="rx"} 105');
      expect(text).to.include('polygate_traffic_bytes_total{protocol="wireguard",server="node_1",direction="tx"} 200');
      expect(text).to.include('polygate_sessions{protocol="openvpn",server="main"} 2');
      expect(text).to.include('polygate_sessions{protocol="wireguard",server="node_1"} 1');
      expect(text).to.include('polygate_users{status="active"} 2');
      expect(text).to.match(/polygate_accounting_tick_duration_seconds_count 1\b/);
      expect(text).to.match(/polygate_accounting_native [01]\n/);
      expect(text).to.include('polygate_plugin_available{protocol="openvpn",server="main"} 1');
    });

    it('GET /metrics with `Authorization: Bearer <metrics token>`', async () => {
      const res = await h.http.get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);
      expect(res.status).to.equal(200);
      expect(res.text).to.include('polygate_sessions');
    });

    it('GET /metrics refuses no credentials (401), a wrong token or key (401) and a sub-admin key (403)', async () => {
      let res = await h.http.get('/metrics');
      expect(res.status).to.equal(401);
      expect(res.body).to.deep.equal({ success: false, message: 'API key is missing' });
      res = await h.http.get('/metrics').set('Authorization', 'Bearer wrong-token-wrong-token');
      expect(res.status).to.equal(401);
      res = await get('/metrics', 'INVALID_KEY');
      expect(res.status).to.equal(401);
      expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
      res = await get('/metrics', resellerKey);
      expect(res.status).to.equal(403);
      expect(res.body).to.deep.equal({ success: false, message: 'Permission denied: Main admin API key required.' });
    });
  });
});
