import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import request from 'supertest';
import { createApp } from '../../api/server';
import { bootstrapCore, type Core } from '../../core/bootstrap';
import { ManualClock } from '../../core/clock';
import { loadConfig } from '../../core/config';
import { NodeRecord } from '../../core/db';
import { MAIN_ADMIN } from '../../core/principal';
import { randomKey } from '../../core/secrets';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';
import { createPostgresDatabase, forEachDatabase, postgresTestUrl, type DatabaseKind } from '../helpers/harness';
import { requirePrerequisite } from '../helpers/prereq';

const GiB = 1024 ** 3;

interface Panel {
  core: Core;
  http: ReturnType<typeof request>;
  adminKey: string;
  close(): Promise<void>;
}

/**
 * A daemon core as `npm start` builds it (data dir on disk, so Node's process metrics are on
 * the page too, which the in-memory test harness leaves out), with its HTTP app.
 */
async function startPanel(kind: DatabaseKind, env: Record<string, string> = {}): Promise<Panel> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polygate-metrics-'));
  let databaseUrl = `sqlite:${path.join(dir, 'polygate.sqlite')}`;
  let drop = async () => {};
  if (kind === 'postgres') {
    const created = await createPostgresDatabase(postgresTestUrl!);
    databaseUrl = created.url;
    drop = created.drop;
  }
  const adminKey = randomKey(32);
  const config = loadConfig({
    POLYGATE_DATA_DIR: dir,
    POLYGATE_DATABASE_URL: databaseUrl,
    POLYGATE_ADMIN_API_KEY: adminKey,
    POLYGATE_FIREWALL: 'off',
    POLYGATE_RESELLER_LISTENERS: 'off',
    ...env,
  });
  const core = await bootstrapCore(config, { clock: new ManualClock(new Date('2026-06-01T12:00:00Z')) });
  return {
    core,
    http: request(createApp(core.services)),
    adminKey,
    async close() {
      await core.close();
      await drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The samples of a Prometheus text page: `name{labels}` → value. */
function samples(page: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of page.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\S+?(?:\{.*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

function families(page: string): string[] {
  return [...page.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
}

/** Resellers, users, a node and sessions on two servers; answers the node's server id. */
async function populate(core: Core): Promise<{ nodeServer: string; main: ScriptedPlugin; node: ScriptedPlugin }> {
  const s = core.services;
  const r1 = await s.subAdmins.create(MAIN_ADMIN, { username: 'res1', password: 'reseller-password-1', max_users_limit: 10, total_usage_quota_gb: 2 });
  const r2 = await s.subAdmins.create(MAIN_ADMIN, { username: 'res2', password: 'reseller-password-2' });
  await s.subAdmins.create(MAIN_ADMIN, { username: 'res3', password: 'reseller-password-3' });
  await s.users.create(MAIN_ADMIN, { username: 'alice', sub_admin_id: r1.id, max_clients: 5 });
  await s.users.create(MAIN_ADMIN, { username: 'carol', sub_admin_id: r1.id, max_clients: 5 });
  await s.users.create(MAIN_ADMIN, { username: 'dave', sub_admin_id: r2.id, max_clients: 5 });
  await s.users.create(MAIN_ADMIN, { username: 'bob', max_clients: 5 });
  // A node row as provisioning leaves it (provisioning itself needs SSH, which this suite does not run).
  const nodeRow = await NodeRecord.create({ name: 'fra-1', ip_address: '203.0.113.7', status: 'active' });
  const nodeServer = `node_${nodeRow.id}`;
  const main = await addScriptedPlugin(core.plugins, 'openvpn', 'main');
  const node = await addScriptedPlugin(core.plugins, 'wireguard', nodeServer);
  main.set({ key: 'a1', username: 'alice', rx: 100, tx: 1000 }, { key: 'c1', username: 'carol', rx: 7, tx: 70 }, { key: 'b1', username: 'bob', rx: 5, tx: 50 });
  node.set({ key: 'd1', username: 'dave', rx: 20, tx: 200 });
  await core.accounting.tick();
  return { nodeServer, main, node };
}

forEachDatabase((kind) => {
  describe(`/metrics: one prefix, promtool-clean, per reseller and per node, per user on request [${kind}]`, function () {
    this.timeout(60_000);
    let p: Panel;
    let nodeServer: string;
    let main: ScriptedPlugin;
    let node: ScriptedPlugin;
    before(async () => {
      p = await startPanel(kind);
      ({ nodeServer, main, node } = await populate(p.core));
    });
    after(() => p?.close());

    const page = async () => {
      const res = await p.http.get('/metrics').set('X-API-KEY', p.adminKey);
      expect(res.status).to.equal(200);
      return res.text;
    };

    it('`promtool check metrics` finds no problem in the page', async function () {
      const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
      requirePrerequisite(this, !probe.error && probe.status === 0, 'promtool is not installed (Debian package prometheus)');
      const text = await page();
      const checked = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(`${checked.stdout}${checked.stderr}`.trim(), 'promtool output').to.equal('');
      expect(checked.status).to.equal(0);
    });

    it('every family carries the one polygate_ prefix, Node process metrics included', async () => {
      const names = families(await page());
      expect(names, 'process metrics are on the page').to.include('polygate_process_cpu_seconds_total');
      expect(names).to.include('polygate_nodejs_heap_size_used_bytes');
      for (const name of names) {
        expect(name, name).to.match(/^polygate_/);
        expect(name, name).not.to.match(/^polygate_(process_process|nodejs_nodejs|polygate)_/);
      }
    });

    it('per reseller: users, limits, quota and the traffic accounting committed', async () => {
      const m = samples(await page());
      expect(m.get('polygate_reseller_users{reseller="res1"}')).to.equal(2);
      expect(m.get('polygate_reseller_users{reseller="res2"}')).to.equal(1);
      expect(m.get('polygate_reseller_users{reseller="res3"}')).to.equal(0);
      expect(m.get('polygate_reseller_users_limit{reseller="res1"}')).to.equal(10);
      expect(m.has('polygate_reseller_users_limit{reseller="res2"}'), 'no limit, no series').to.equal(false);
      expect(m.get('polygate_reseller_traffic_quota_bytes{reseller="res1"}')).to.equal(2 * GiB);
      expect(m.has('polygate_reseller_traffic_quota_bytes{reseller="res2"}')).to.equal(false);
      expect(m.get('polygate_reseller_traffic_bytes_total{reseller="res1"}')).to.equal(100 + 1000 + 7 + 70);
      expect(m.get('polygate_reseller_traffic_bytes_total{reseller="res2"}')).to.equal(20 + 200);
      expect(m.get('polygate_reseller_traffic_bytes_total{reseller="res3"}')).to.equal(0);
    });

    it('per node: one status series per status (1 for the current one) and the node traffic', async () => {
      const m = samples(await page());
      const labels = (status: string) => `polygate_node_status{server="${nodeServer}",node="fra-1",status="${status}"}`;
      expect(m.get(labels('active'))).to.equal(1);
      for (const status of ['installing', 'error', 'deleting', 'offline']) expect(m.get(labels(status)), status).to.equal(0);
      expect(m.get(`polygate_node_traffic_bytes_total{server="${nodeServer}",node="fra-1"}`)).to.equal(220);
      await NodeRecord.update({ status: 'offline' }, { where: { id: Number(nodeServer.slice('node_'.length)) } });
      const after = samples(await page());
      expect(after.get(labels('offline'))).to.equal(1);
      expect(after.get(labels('active'))).to.equal(0);
    });

    it('the series follow new usage (read at scrape time, not frozen at start)', async () => {
      main.set({ key: 'a1', username: 'alice', rx: 150, tx: 1500 }, { key: 'c1', username: 'carol', rx: 7, tx: 70 }, { key: 'b1', username: 'bob', rx: 5, tx: 50 });
      node.set({ key: 'd1', username: 'dave', rx: 30, tx: 300 });
      await p.core.accounting.tick();
      const m = samples(await page());
      expect(m.get('polygate_reseller_traffic_bytes_total{reseller="res1"}')).to.equal(150 + 1500 + 7 + 70);
      expect(m.get(`polygate_node_traffic_bytes_total{server="${nodeServer}",node="fra-1"}`)).to.equal(330);
      await p.core.services.users.create(MAIN_ADMIN, { username: 'erin', sub_admin_id: (await p.core.services.subAdmins.list(MAIN_ADMIN)).find((r) => r.username === 'res3')!.id, max_clients: 1 });
      expect(samples(await page()).get('polygate_reseller_users{reseller="res3"}')).to.equal(1);
    });

    it('no per-user series unless the operator asks for them', async () => {
      const text = await page();
      expect(text).not.to.include('polygate_user_');
      expect(text).not.to.match(/username="/);
    });

    describe('POLYGATE_METRICS_PER_USER=on', () => {
      let q: Panel;
      before(async () => {
        q = await startPanel(kind, { POLYGATE_METRICS_PER_USER: 'on' });
        await populate(q.core);
      });
      after(() => q?.close());

      it('adds one series per user and direction with its usage counters, still promtool-clean', async function () {
        const res = await q.http.get('/metrics').set('X-API-KEY', q.adminKey);
        expect(res.status).to.equal(200);
        const m = samples(res.text);
        expect(m.get('polygate_user_traffic_bytes_total{username="alice",direction="rx"}')).to.equal(100);
        expect(m.get('polygate_user_traffic_bytes_total{username="alice",direction="tx"}')).to.equal(1000);
        expect(m.get('polygate_user_traffic_bytes_total{username="dave",direction="tx"}')).to.equal(200);
        expect(m.get('polygate_user_traffic_bytes_total{username="bob",direction="rx"}')).to.equal(5);
        const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
        requirePrerequisite(this, !probe.error && probe.status === 0, 'promtool is not installed (Debian package prometheus)');
        const checked = spawnSync('promtool', ['check', 'metrics'], { input: res.text, encoding: 'utf8' });
        expect(`${checked.stdout}${checked.stderr}`.trim()).to.equal('');
      });
    });
  });
});
