import { expect } from 'chai';
import type { InferCreationAttributes } from 'sequelize';
import { AccountingEngine } from '../../core/accounting/engine';
import { PluginRegistry } from '../../core/plugin/registry';
import { NodeRecord, SubAdmin, User, UsageDaily, UserUsage } from '../../core/db';
import { MAIN_ADMIN } from '../../core/principal';
import { hashPassword } from '../../core/secrets';
import { GiB } from '../../core/services/user-status';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';
import { createHarness, forEachDatabase, type DatabaseKind, type Harness } from '../helpers/harness';
import { insertUserRow } from '../helpers/user-rows';
import type { SessionPoll } from '../../core/plugin/types';

/** OpenVPN `status 3` text with these CLIENT_LIST rows: [client id, user, rx, tx]. */
function status3(rows: Array<[string, string, number, number]>): string {
  return [
    'TITLE\tOpenVPN 2.6.9 x86_64-pc-linux-gnu',
    'TIME\t2026-06-01 12:00:00\t1780315200',
    'HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher',
    ...rows.map(([id, user, rx, tx]) => `CLIENT_LIST\t${user}\t198.51.100.7:5000\t10.8.0.2\t\t${rx}\t${tx}\t2026-06-01 11:00:00\t1700000000\t${user}\t${id}\t0\tAES-256-GCM`),
    'END',
    '',
  ].join('\n');
}

/**
 * The accounting engine and enforcement, driven by scripted plugins (test doubles for the VPN
 * daemons) on a real database. Every expectation is an exact byte count.
 */

/** User attributes, plus usage counters to start from (stored in user_usage). */
type UserAttrs = Partial<InferCreationAttributes<User>> & { upload_bytes?: number; download_bytes?: number };

async function mkUser(username: string, attrs: UserAttrs = {}): Promise<User> {
  return insertUserRow({
    username,
    data_limit_bytes: 0,
    max_clients: 10,
    enable_openvpn: true,
    enable_l2tp: true,
    enable_cisco: true,
    enable_wg: true,
    ...attrs,
  });
}

/** Sets these users' usage counters (creating their user_usage rows as needed). */
async function setUsage(usernames: string[], upload_bytes: number, download_bytes: number): Promise<void> {
  for (const u of await User.findAll({ where: { username: usernames }, attributes: ['id'], raw: true })) {
    await UserUsage.upsert({ user_id: u.id, upload_bytes, download_bytes });
  }
}

async function mkReseller(username: string, attrs: Partial<InferCreationAttributes<SubAdmin>> = {}): Promise<SubAdmin> {
  return SubAdmin.create({
    username,
    password_hash: hashPassword('reseller-password'),
    subscription_port: null,
    panel_port: null,
    max_users_limit: null,
    total_usage_quota_gb: null,
    notes: null,
    ...attrs,
  } as InferCreationAttributes<SubAdmin>);
}

async function usage(username: string): Promise<{ up: number; down: number }> {
  const u = await User.findOne({ where: { username }, raw: true });
  if (!u) throw new Error(`no user ${username}`);
  const c = await UserUsage.findByPk(u.id);
  return { up: c?.upload_bytes ?? 0, down: c?.download_bytes ?? 0 };
}

async function daily(username: string): Promise<Array<{ server_id: string; protocol: string; day: string; rx: number; tx: number }>> {
  const u = await User.findOne({ where: { username }, raw: true });
  const rows = await UsageDaily.findAll({ where: { user_id: u!.id }, raw: true, order: [['day', 'ASC'], ['server_id', 'ASC'], ['protocol', 'ASC']] });
  return rows.map((r) => ({ server_id: r.server_id, protocol: r.protocol, day: r.day, rx: Number(r.rx), tx: Number(r.tx) }));
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function suite(kind: DatabaseKind) {
  describe(`accounting engine [${kind}]`, function () {
    this.timeout(30_000);
    let h: Harness;
    let ovpn: ScriptedPlugin;
    const tick = () => h.core.accounting.tick();

    beforeEach(async () => {
      h = await createHarness(kind);
      ovpn = await addScriptedPlugin(h.core.plugins, 'openvpn', 'main');
    });
    afterEach(() => h.close());

    it('counts exact deltas through growth, a counter reset and a reconnect under the same key', async () => {
      await mkUser('alice');
      ovpn.set({ key: 'c1', username: 'alice', rx: 100, tx: 1000 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 100, down: 1000 });
      ovpn.set({ key: 'c1', username: 'alice', rx: 250, tx: 1500 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 250, down: 1500 });
      ovpn.set({ key: 'c1', username: 'alice', rx: 30, tx: 40 }); // daemon restarted its counters
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 280, down: 1540 });
      ovpn.set({ key: 'c1', username: 'alice', rx: 10, tx: 20, connectedAt: 1_700_000_500 }); // new connection, same id
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 290, down: 1560 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 290, down: 1560 });
      expect(await daily('alice')).to.deep.equal([{ server_id: 'main', protocol: 'openvpn', day: '2026-06-01', rx: 290, tx: 1560 }]);
    });

    it('a session that ends between ticks loses nothing: the disconnect event brings its final counters', async () => {
      await mkUser('alice');
      ovpn.set({ key: 'c1', username: 'alice', rx: 100, tx: 100 });
      await tick();
      ovpn.end('c1', { rx: 200, tx: 300 });
      expect(h.core.ctx.live.connectionsOf('alice'), 'the live view drops it at once').to.equal(0);
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 200, down: 300 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 200, down: 300 });
    });

    it('a disconnect reported while the listing still shows the session (stale status) is counted once', async () => {
      await mkUser('alice');
      ovpn.set({ key: 'c1', username: 'alice', rx: 100, tx: 100 });
      await tick();
      ovpn.set({ key: 'c1', username: 'alice', rx: 150, tx: 150 });
      ovpn.end('c1', { rx: 200, tx: 210 }, { stale: true }); // status file lags behind the event
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 200, down: 210 });
      await tick();
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 200, down: 210 });
      expect(h.core.ctx.live.connectionsOf('alice')).to.equal(0);
      ovpn.drop('c1');
      await tick();
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 200, down: 210 });
    });

    it('a session that began and ended between two polls is counted whole, and a repeated event adds nothing', async () => {
      await mkUser('alice');
      ovpn.reportEnded({ key: 'short', username: 'alice', rx: 70, tx: 80 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 70, down: 80 });
      ovpn.reportEnded({ key: 'short', username: 'alice', rx: 70, tx: 80 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 70, down: 80 });
    });

    it('a vanished session followed by a late disconnect event counts only the bytes after the last poll', async () => {
      await mkUser('alice');
      ovpn.set({ key: 'c1', username: 'alice', rx: 100, tx: 100 });
      await tick();
      ovpn.drop('c1');
      const r = await tick();
      expect(r.vanished).to.equal(1);
      expect(await usage('alice')).to.deep.equal({ up: 100, down: 100 });
      ovpn.reportEnded({ key: 'c1', username: 'alice', rx: 130, tx: 160 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 130, down: 160 });
      ovpn.reportEnded({ key: 'c1', username: 'alice', rx: 130, tx: 160 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 130, down: 160 });
    });

    it('a session missing from one poll and listed again is not counted twice', async () => {
      await mkUser('alice');
      ovpn.set({ key: 'c1', username: 'alice', rx: 100, tx: 100 });
      await tick();
      ovpn.drop('c1');
      await tick();
      ovpn.set({ key: 'c1', username: 'alice', rx: 150, tx: 170 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 150, down: 170 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 150, down: 170 });
    });

    it('a node outage keeps its sessions online and counts every byte once the node answers again', async () => {
      await mkUser('alice');
      await NodeRecord.create({ name: 'Node A', ip_address: '192.0.2.1', ssh_secret: null, communication_method: null, status_message: null } as InferCreationAttributes<NodeRecord>);
      const node = (await NodeRecord.findOne({ raw: true }))!;
      const wg = await addScriptedPlugin(h.core.plugins, 'wireguard', `node_${node.id}`);
      wg.set({ key: 'peer1', username: 'alice', rx: 100, tx: 100, connectedAt: 0 });
      await tick();
      wg.failPolls(2);
      wg.set({ key: 'peer1', username: 'alice', rx: 500, tx: 600, connectedAt: 0 });
      const failed = await tick();
      expect(failed.failed.map((f) => f.source)).to.deep.equal([`wireguard@node_${node.id}`]);
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 100, down: 100 });
      expect(h.core.ctx.live.connectionsOf('alice')).to.equal(1);
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 500, down: 600 });
      const n = (await NodeRecord.findByPk(node.id, { raw: true }))!;
      expect(Number(n.total_traffic_bytes)).to.equal(1100);
    });

    it('several servers and protocols: user, reseller and node totals and the daily history add up exactly', async () => {
      const reseller = await mkReseller('res1');
      await mkUser('alice', { sub_admin_id: reseller.id });
      await mkUser('bob');
      const node = await NodeRecord.create({ name: 'Node A', ip_address: '192.0.2.1', ssh_secret: null, communication_method: null, status_message: null } as InferCreationAttributes<NodeRecord>);
      const nodeId = `node_${node.id}`;
      const cisco = await addScriptedPlugin(h.core.plugins, 'cisco', 'main', { text: { format: 'ocserv-json', scope: 'ocserv' } });
      const wg = await addScriptedPlugin(h.core.plugins, 'wireguard', nodeId);
      const l2tp = await addScriptedPlugin(h.core.plugins, 'l2tp', nodeId);
      const nodeOvpn = await addScriptedPlugin(h.core.plugins, 'openvpn', nodeId, { text: { format: 'openvpn-status3', scope: 'udp1194' } });
      ovpn.set({ key: 'o1', username: 'alice', rx: 10, tx: 20 }, { key: 'o2', username: 'bob', rx: 1, tx: 2 });
      cisco.set({ key: '7', username: 'alice', rx: 100, tx: 200 });
      wg.set({ key: 'w1', username: 'alice', rx: 1000, tx: 2000, connectedAt: 0 });
      l2tp.set({ key: 'ppp0', username: 'bob', rx: 5, tx: 6 });
      nodeOvpn.set({ key: '3', username: 'alice', rx: 7, tx: 8 });
      await tick();
      ovpn.set({ key: 'o1', username: 'alice', rx: 15, tx: 25 });
      cisco.end('7', { rx: 150, tx: 260 });
      nodeOvpn.end('3', { rx: 9, tx: 10 });
      wg.set({ key: 'w1', username: 'alice', rx: 1500, tx: 2500, connectedAt: 0 });
      await tick();
      // alice: openvpn@main 15/25, cisco@main 150/260, wireguard@node 1500/2500, openvpn@node 9/10
      expect(await usage('alice')).to.deep.equal({ up: 15 + 150 + 1500 + 9, down: 25 + 260 + 2500 + 10 });
      expect(await usage('bob')).to.deep.equal({ up: 6, down: 8 });
      expect(await daily('alice')).to.deep.equal([
        { server_id: 'main', protocol: 'cisco', day: '2026-06-01', rx: 150, tx: 260 },
        { server_id: 'main', protocol: 'openvpn', day: '2026-06-01', rx: 15, tx: 25 },
        { server_id: nodeId, protocol: 'openvpn', day: '2026-06-01', rx: 9, tx: 10 },
        { server_id: nodeId, protocol: 'wireguard', day: '2026-06-01', rx: 1500, tx: 2500 },
      ]);
      expect(await daily('bob')).to.deep.equal([
        { server_id: 'main', protocol: 'openvpn', day: '2026-06-01', rx: 1, tx: 2 },
        { server_id: nodeId, protocol: 'l2tp', day: '2026-06-01', rx: 5, tx: 6 },
      ]);
      const r = (await SubAdmin.findByPk(reseller.id, { raw: true }))!;
      expect(Number(r.used_traffic_bytes)).to.equal(15 + 150 + 1500 + 9 + 25 + 260 + 2500 + 10);
      const n = (await NodeRecord.findByPk(node.id, { raw: true }))!;
      expect(Number(n.total_traffic_bytes)).to.equal(1500 + 2500 + 9 + 10 + 5 + 6);
      expect(h.core.ctx.live.connectionsOf('alice')).to.equal(2);
      expect(h.core.ctx.live.totalConnections()).to.equal(4);
    });

    it('a plugin with several daemons answers one text per daemon; an added daemon counts from zero, a removed one\'s sessions vanish, nothing counts twice', async () => {
      await mkUser('alice');
      await mkUser('bob');
      const vpn = await addScriptedPlugin(h.core.plugins, 'openvpn', 'node_5', { text: { format: 'openvpn-status3', scope: 'node_5:1194udp' } });
      vpn.set({ key: '11', username: 'alice', rx: 100, tx: 1000 }, { key: '12', username: 'bob', rx: 10, tx: 20 });
      await tick();
      // A second daemon (443/tcp): the plugin answers a text per daemon.
      const two = (udp: string, tcp: string): SessionPoll => ({ kind: 'status-text', format: 'openvpn-status3', texts: [{ scope: 'node_5:1194udp', text: udp }, { scope: 'node_5:443tcp', text: tcp }] });
      vpn.replay(two(status3([['11', 'alice', 150, 1100], ['12', 'bob', 10, 20]]), status3([['1', 'alice', 5, 5]])));
      let r = await tick();
      expect(r.vanished).to.equal(0);
      expect(await usage('alice')).to.deep.equal({ up: 155, down: 1105 });
      expect(h.core.ctx.live.connectionsOf('alice')).to.equal(2);
      // bob's session ends with its final counters, reported by key `<scope>:<id>`.
      vpn.reportEnded({ key: '12', username: 'bob', rx: 15, tx: 25 });
      vpn.replay(two(status3([['11', 'alice', 160, 1200]]), status3([['1', 'alice', 7, 9]])));
      r = await tick();
      expect(await usage('bob')).to.deep.equal({ up: 15, down: 25 });
      expect(await usage('alice')).to.deep.equal({ up: 167, down: 1209 });
      // The 443/tcp daemon is removed without reporting its session: it vanishes, nothing more is counted.
      vpn.set({ key: '11', username: 'alice', rx: 160, tx: 1200 }).drop('12');
      r = await tick();
      expect(r.vanished, 'the session of the removed daemon').to.equal(1);
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 167, down: 1209 });
      expect(await usage('bob')).to.deep.equal({ up: 15, down: 25 });
      expect(h.core.ctx.live.connectionsOf('alice')).to.equal(1);
    });

    it('a status-text poll with a truncated daemon text makes nobody of that daemon vanish', async () => {
      await mkUser('alice');
      const vpn = await addScriptedPlugin(h.core.plugins, 'openvpn', 'node_6', { text: { format: 'openvpn-status3', scope: 'node_6:1194udp' } });
      vpn.set({ key: '3', username: 'alice', rx: 10, tx: 10 });
      await tick();
      vpn.replay({ kind: 'status-text', format: 'openvpn-status3', texts: [{ scope: 'node_6:1194udp', text: status3([]).replace('END\n', '') }] });
      const r = await tick();
      expect(r.vanished).to.equal(0);
      vpn.set({ key: '3', username: 'alice', rx: 30, tx: 40 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 30, down: 40 });
    });

    it('the history is split by UTC day', async () => {
      await mkUser('alice');
      h.clock.set('2026-06-01T23:59:00Z');
      ovpn.set({ key: 'c1', username: 'alice', rx: 100, tx: 100 });
      await tick();
      h.clock.set('2026-06-02T00:01:00Z');
      ovpn.set({ key: 'c1', username: 'alice', rx: 160, tx: 190 });
      await tick();
      expect(await daily('alice')).to.deep.equal([
        { server_id: 'main', protocol: 'openvpn', day: '2026-06-01', rx: 100, tx: 100 },
        { server_id: 'main', protocol: 'openvpn', day: '2026-06-02', rx: 60, tx: 90 },
      ]);
    });

    it('a plugin that fails or answers malformed data is isolated: the others are counted', async () => {
      await mkUser('alice');
      await mkUser('bob');
      const broken = await addScriptedPlugin(h.core.plugins, 'l2tp', 'main');
      broken.replay({ kind: 'sessions', sessions: [{ sessionKey: 'x', username: 'bob', protocol: 'l2tp', serverId: 'main', remoteAddress: '', connectedAt: 0, rxBytes: -5, txBytes: 1 }] });
      ovpn.set({ key: 'c1', username: 'alice', rx: 10, tx: 10 });
      const r = await tick();
      expect(r.failed.map((f) => f.source)).to.deep.equal(['l2tp@main']);
      expect(await usage('alice')).to.deep.equal({ up: 10, down: 10 });
      expect(await usage('bob')).to.deep.equal({ up: 0, down: 0 });
      expect(h.core.ctx.status.snapshot()['plugin:l2tp@main']?.state).to.equal('degraded');
    });

    it('a plugin that cannot load is reported unavailable and ticks go on without it', async () => {
      const entry = await h.core.plugins.load('no-such-plugin', { serverId: 'main', host: ovpn.ctx.host });
      expect(entry.state).to.equal('unavailable');
      expect(entry.reason).to.match(/could not be loaded/);
      await mkUser('alice');
      ovpn.set({ key: 'c1', username: 'alice', rx: 1, tx: 2 });
      await tick();
      expect(await usage('alice')).to.deep.equal({ up: 1, down: 2 });
    });

    it('after a restart, sessions still alive continue from their recorded counters', async () => {
      await mkUser('alice');
      ovpn.set({ key: 'c1', username: 'alice', rx: 100, tx: 100 });
      await tick();
      // A second engine on the same database stands in for the restarted daemon.
      await h.core.accounting.stop();
      const registry = new PluginRegistry(h.core.ctx, h.core.pki);
      const restarted = new AccountingEngine(h.core.ctx, registry);
      await restarted.init();
      const again = await addScriptedPlugin(registry, 'openvpn', 'main');
      again.set({ key: 'c1', username: 'alice', rx: 180, tx: 120 });
      await restarted.tick();
      expect(await usage('alice')).to.deep.equal({ up: 180, down: 120 });
      await restarted.stop();
    });

    it('usage that crosses the data limit flips the user to limited, announces it as usage.committed (not users.changed: one enforcement pass), and cuts every session', async () => {
      await mkUser('alice', { data_limit_bytes: 1000 });
      const events: Array<{ usernames: string[]; statusChanged: string[] }> = [];
      const userEvents: string[][] = [];
      h.core.ctx.events.on('usage.committed', (e) => events.push(e));
      h.core.ctx.events.on('users.changed', ({ usernames }) => userEvents.push(usernames));
      const wg = await addScriptedPlugin(h.core.plugins, 'wireguard', 'main');
      ovpn.set({ key: 'c1', username: 'alice', rx: 100, tx: 100 });
      wg.set({ key: 'w1', username: 'alice', rx: 100, tx: 100, connectedAt: 0 });
      let r = await tick();
      expect(r.statusChanged).to.deep.equal([]);
      expect(events).to.deep.equal([{ usernames: ['alice'], statusChanged: [] }]);
      expect(ovpn.disconnects).to.deep.equal([]);
      ovpn.set({ key: 'c1', username: 'alice', rx: 400, tx: 400 });
      r = await tick();
      expect(r.statusChanged).to.deep.equal(['alice']);
      expect(events.at(-1)).to.deep.equal({ usernames: ['alice'], statusChanged: ['alice'] });
      expect(userEvents, 'the tick does not announce users.changed, so it does not re-enforce on its own event').to.deep.equal([]);
      expect(ovpn.disconnects).to.deep.equal([{ username: 'alice' }]);
      expect(wg.disconnects).to.deep.equal([{ username: 'alice' }]);
      expect((await h.core.accounting.authorize({ username: 'alice', protocol: 'openvpn', serverId: 'main' })).allowed).to.equal(false);
      r = await tick();
      expect(r.enforcement?.confirmed).to.equal(2);
      expect(h.core.accounting.enforcer.pendingCuts()).to.deep.equal([]);
      expect(await usage('alice')).to.deep.equal({ up: 500, down: 500 });
    });

    it('disabling a user (toggle) cuts its sessions at once, without waiting for a tick', async () => {
      await h.services.users.create(MAIN_ADMIN, { username: 'alice' });
      ovpn.set({ key: 'c1', username: 'alice', rx: 1, tx: 1 });
      await tick();
      await h.services.users.toggle(MAIN_ADMIN, 'alice');
      await waitFor('the cut', () => ovpn.disconnects.length === 1);
      expect(ovpn.disconnects).to.deep.equal([{ username: 'alice' }]);
      const r = await tick();
      expect(r.enforcement?.confirmed).to.equal(1);
      expect(h.core.ctx.live.connectionsOf('alice')).to.equal(0);
    });

    it('an expiry passing is enforced by the next tick (manual clock)', async () => {
      await mkUser('alice', { expiry_date: new Date('2026-06-01T13:00:00Z') });
      ovpn.set({ key: 'c1', username: 'alice', rx: 1, tx: 1 });
      await tick();
      expect(ovpn.disconnects).to.deep.equal([]);
      h.clock.set('2026-06-01T13:00:01Z');
      const r = await tick();
      expect(r.enforcement?.decisions.map((d) => [d.username, d.reason])).to.deep.equal([['alice', 'expired']]);
      expect(ovpn.disconnects).to.deep.equal([{ username: 'alice' }]);
    });

    it('a reseller over its quota loses every session of every one of its users; other users keep theirs', async () => {
      const reseller = await mkReseller('res1', { total_usage_quota_gb: 1, used_traffic_bytes: GiB - 1000 });
      await mkUser('alice', { sub_admin_id: reseller.id });
      await mkUser('carol', { sub_admin_id: reseller.id });
      await mkUser('dave', { sub_admin_id: reseller.id });
      await mkUser('bob');
      const cisco = await addScriptedPlugin(h.core.plugins, 'cisco', 'node_9');
      ovpn.set({ key: 'a', username: 'alice', rx: 100, tx: 100 }, { key: 'b', username: 'bob', rx: 5000, tx: 5000 });
      cisco.set({ key: 'c', username: 'carol', rx: 100, tx: 100 });
      let r = await tick();
      expect(ovpn.disconnects).to.deep.equal([]);
      ovpn.set({ key: 'a', username: 'alice', rx: 400, tx: 400 });
      r = await tick();
      expect(r.statusChanged, 'every user of the reseller, online or not').to.deep.equal(['alice', 'carol', 'dave']);
      expect(ovpn.disconnects).to.deep.equal([{ username: 'alice' }]);
      expect(cisco.disconnects).to.deep.equal([{ username: 'carol' }]);
      expect(h.core.ctx.live.connectionsOf('bob')).to.equal(1);
      const row = (await SubAdmin.findByPk(reseller.id, { raw: true }))!;
      expect(Number(row.used_traffic_bytes)).to.equal(GiB - 1000 + 1000);
    });

    it('deactivating a reseller cuts its users at once', async () => {
      const created = await h.services.subAdmins.create(MAIN_ADMIN, { username: 'res1', password: 'reseller-password-1' });
      await mkUser('alice', { sub_admin_id: created.id });
      await mkUser('bob');
      ovpn.set({ key: 'a', username: 'alice', rx: 1, tx: 1 }, { key: 'b', username: 'bob', rx: 1, tx: 1 });
      await tick();
      await h.services.subAdmins.update(MAIN_ADMIN, created.id, { is_active: false });
      await waitFor('the cut', () => ovpn.disconnects.length === 1);
      expect(ovpn.disconnects).to.deep.equal([{ username: 'alice' }]);
      await tick();
      expect(h.core.ctx.live.connectionsOf('alice')).to.equal(0);
      expect(h.core.ctx.live.connectionsOf('bob')).to.equal(1);
    });

    it('a deleted user\'s sessions are cut', async () => {
      await h.services.users.create(MAIN_ADMIN, { username: 'alice' });
      ovpn.set({ key: 'a', username: 'alice', rx: 1, tx: 1 });
      await tick();
      await h.services.users.delete(MAIN_ADMIN, 'alice');
      await waitFor('the cut', () => ovpn.disconnects.length === 1);
      expect(ovpn.disconnects).to.deep.equal([{ username: 'alice' }]);
    });

    it('max_clients counts across protocols and servers: authorize refuses one more, and a slipped-through newest session is cut', async () => {
      await mkUser('alice', { max_clients: 2 });
      const wg = await addScriptedPlugin(h.core.plugins, 'wireguard', 'node_1');
      ovpn.set({ key: 'o1', username: 'alice', rx: 1, tx: 1, connectedAt: 1_700_000_000 });
      wg.set({ key: 'w1', username: 'alice', rx: 1, tx: 1, connectedAt: 1_700_000_100 });
      await tick();
      await tick(); // listed by two polls: settled
      expect(await ovpn.authorize('alice')).to.deep.equal({ allowed: false, reason: 'max_clients (2) reached' });
      // A third connection the daemon let in anyway (e.g. two logins at the same instant).
      ovpn.set({ key: 'o2', username: 'alice', rx: 1, tx: 1, connectedAt: 1_700_000_200 });
      let r = await tick();
      expect(r.enforcement?.decisions, 'seen once, it may still be a login being refused').to.deep.equal([]);
      r = await tick();
      expect(r.enforcement?.decisions.map((d) => [d.kind, d.reason, d.connections.map((c) => c.key)])).to.deep.equal([
        ['cut_sessions', 'max_clients', ['openvpn@main/o2']],
      ]);
      expect(ovpn.disconnects).to.deep.equal([{ sessionKey: 'o2' }]);
      expect(wg.disconnects).to.deep.equal([]);
      await tick();
      expect(h.core.ctx.live.connectionsOf('alice')).to.equal(2);
      expect(h.core.accounting.enforcer.pendingCuts()).to.deep.equal([]);
    });

    it('two logins at the same instant cannot both take the last slot; the slot frees when polls never show it', async () => {
      await mkUser('alice', { max_clients: 1 });
      expect(await ovpn.authorize('alice')).to.deep.equal({ allowed: true });
      expect(await ovpn.authorize('alice')).to.deep.equal({ allowed: false, reason: 'max_clients (1) reached' });
      await tick();
      expect((await ovpn.authorize('alice')).allowed, 'one poll may simply be too early').to.equal(false);
      await tick(); // two polls without it: that login failed
      expect(await ovpn.authorize('alice')).to.deep.equal({ allowed: true });
    });

    it('a refused login listed by one poll does not count towards max_clients (no legitimate session is cut)', async () => {
      await mkUser('alice', { max_clients: 1 });
      expect(await ovpn.authorize('alice')).to.deep.equal({ allowed: true });
      ovpn.set({ key: 'ok', username: 'alice', rx: 10, tx: 10, connectedAt: 1_700_000_000 });
      await tick();
      // The status listing also shows a second login while it is being refused…
      ovpn.set({ key: 'refused', username: 'alice', rx: 1, tx: 1, connectedAt: 1_700_000_100 });
      let r = await tick();
      expect(r.enforcement?.decisions).to.deep.equal([]);
      ovpn.drop('refused'); // …and it is gone by the next poll.
      r = await tick();
      expect(r.enforcement?.decisions).to.deep.equal([]);
      expect(ovpn.disconnects).to.deep.equal([]);
    });

    it('authorize checks the user, its protocols, servers and password', async () => {
      await mkUser('alice', { enable_l2tp: false, cisco_password: 'Secret-1', nodes: JSON.stringify(['main']) });
      const ask = (protocol: 'openvpn' | 'l2tp' | 'cisco', serverId = 'main', password?: string) =>
        h.core.accounting.authorize({ username: 'alice', protocol, serverId, password });
      expect(await h.core.accounting.authorize({ username: 'nobody', protocol: 'openvpn', serverId: 'main' })).to.deep.equal({ allowed: false, reason: 'unknown user' });
      expect(await ask('l2tp')).to.deep.equal({ allowed: false, reason: 'l2tp is not enabled for this user' });
      expect(await ask('openvpn', 'node_1')).to.deep.equal({ allowed: false, reason: 'server node_1 is not allowed for this user' });
      expect(await ask('cisco', 'main', 'wrong')).to.deep.equal({ allowed: false, reason: 'invalid credentials' });
      expect(await ask('cisco', 'main', 'Secret-1')).to.deep.equal({ allowed: true });
    });

    it('a flexible_days user turns on_hold → active at its first session, expiring pending_activation_days later', async () => {
      await mkUser('alice', { activation_type: 'flexible_days', pending_activation_days: 10 });
      expect(await ovpn.authorize('alice')).to.deep.equal({ allowed: true });
      h.clock.set('2026-06-03T08:00:00Z');
      ovpn.set({ key: 'c1', username: 'alice', rx: 1, tx: 1 });
      const r = await tick();
      expect(r.statusChanged).to.deep.equal(['alice']);
      const u = (await User.findOne({ where: { username: 'alice' } }))!;
      expect(u.first_connection_at?.toISOString()).to.equal('2026-06-03T08:00:00.000Z');
      expect(u.expiry_date?.toISOString()).to.equal('2026-06-13T08:00:00.000Z');
      expect(ovpn.disconnects).to.deep.equal([]);
      h.clock.set('2026-06-13T08:00:01Z');
      await tick();
      expect(ovpn.disconnects).to.deep.equal([{ username: 'alice' }]);
    });

    it('periodic reset (day, month): usage is zeroed when the period since the last reset has passed, and a limited user is back', async () => {
      await mkUser('alice', { data_limit_bytes: 1000, data_limit_reset_strategy: 'day', last_traffic_reset_at: new Date('2026-06-01T12:00:00Z') });
      await mkUser('bob', { data_limit_reset_strategy: 'month', last_traffic_reset_at: new Date('2026-01-31T00:00:00Z') });
      await mkUser('carol', { data_limit_reset_strategy: 'no_reset', upload_bytes: 5, download_bytes: 5 });
      await setUsage(['alice', 'bob'], 700, 700);
      let r = await tick();
      expect(r.resetUsers, 'bob: Jan 31 + 1 month = Feb 28, long past').to.deep.equal(['bob']);
      expect(await usage('alice')).to.deep.equal({ up: 700, down: 700 });
      expect((await ovpn.authorize('alice')).allowed).to.equal(false);
      h.clock.set('2026-06-02T12:00:00Z');
      r = await tick();
      expect(r.resetUsers).to.deep.equal(['alice']);
      expect(r.statusChanged).to.deep.equal(['alice']);
      expect(await usage('alice')).to.deep.equal({ up: 0, down: 0 });
      expect(await usage('carol')).to.deep.equal({ up: 5, down: 5 });
      const u = (await User.findOne({ where: { username: 'alice' } }))!;
      expect(u.last_traffic_reset_at?.toISOString()).to.equal('2026-06-02T12:00:00.000Z');
      expect(await ovpn.authorize('alice')).to.deep.equal({ allowed: true });
      h.clock.set('2026-06-03T11:59:00Z');
      r = await tick();
      expect(r.resetUsers).to.deep.equal([]);
    });

    it('a cut session still present on the next poll is cut again and logged, until it is gone', async () => {
      await mkUser('alice');
      ovpn.set({ key: 'c1', username: 'alice', rx: 1, tx: 1 });
      await tick();
      ovpn.honorDisconnect = false;
      await h.services.users.toggle(MAIN_ADMIN, 'alice');
      await waitFor('the cut', () => ovpn.disconnects.length === 1);
      let r = await tick();
      expect(r.enforcement).to.include({ persisting: 1, sent: 1, confirmed: 0 });
      expect(h.core.accounting.enforcer.pendingCuts()).to.deep.equal([{ username: 'alice', sourceId: 'openvpn@main', reason: 'disabled', attempts: 2, sessionKey: undefined }]);
      r = await tick();
      expect(r.enforcement).to.include({ persisting: 1 });
      expect(ovpn.disconnects).to.have.length(3);
      expect(ovpn.disconnects.every((d) => 'username' in d && d.username === 'alice')).to.equal(true);
      ovpn.honorDisconnect = true;
      r = await tick(); // retried, and this time the daemon obeys
      expect(r.enforcement).to.include({ persisting: 1 });
      r = await tick();
      expect(r.enforcement).to.include({ confirmed: 1, persisting: 0, sent: 0 });
      expect(h.core.accounting.enforcer.pendingCuts()).to.deep.equal([]);
      const metrics = await h.core.accounting.metrics.registry.getSingleMetricAsString('polygate_enforcement_persisting_total');
      expect(metrics).to.match(/polygate_enforcement_persisting_total 3/);
    });

    it('reset_traffic re-enables exactly the users that were off only because of their limit', async () => {
      const now = new Date('2026-06-01T12:00:00Z');
      await mkUser('limited', { data_limit_bytes: 100, upload_bytes: 100 });
      await mkUser('limited_and_disabled', { data_limit_bytes: 100, upload_bytes: 100, is_active: false });
      await mkUser('limited_and_expired', { data_limit_bytes: 100, upload_bytes: 100, expiry_date: new Date(now.getTime() - 1000) });
      const results: Record<string, boolean> = {};
      for (const name of ['limited', 'limited_and_disabled', 'limited_and_expired']) {
        results[name] = (await h.services.users.resetTraffic(MAIN_ADMIN, name)).user_re_enabled;
      }
      expect(results).to.deep.equal({ limited: true, limited_and_disabled: false, limited_and_expired: false });
      expect(await ovpn.authorize('limited')).to.deep.equal({ allowed: true });
      expect(await ovpn.authorize('limited_and_disabled')).to.deep.equal({ allowed: false, reason: 'user is disabled' });
      expect(await ovpn.authorize('limited_and_expired')).to.deep.equal({ allowed: false, reason: 'user is expired' });
    });

    it('a reseller\'s reset_usage re-enables exactly the users that were off only because of its quota', async () => {
      const created = await h.services.subAdmins.create(MAIN_ADMIN, { username: 'res1', password: 'reseller-password-1', total_usage_quota_gb: 1 });
      await SubAdmin.update({ used_traffic_bytes: 2 * GiB }, { where: { id: created.id } });
      await mkUser('quota_only', { sub_admin_id: created.id });
      await mkUser('also_disabled', { sub_admin_id: created.id, is_active: false });
      await mkUser('also_over_own_limit', { sub_admin_id: created.id, data_limit_bytes: 10, download_bytes: 10 });
      for (const name of ['quota_only', 'also_disabled', 'also_over_own_limit']) expect((await ovpn.authorize(name)).allowed, name).to.equal(false);
      const { reEnabled } = await h.services.subAdmins.resetUsage(MAIN_ADMIN, created.id);
      expect(reEnabled).to.equal(1);
      expect(await ovpn.authorize('quota_only')).to.deep.equal({ allowed: true });
      expect(await ovpn.authorize('also_disabled')).to.deep.equal({ allowed: false, reason: 'user is disabled' });
      expect(await ovpn.authorize('also_over_own_limit')).to.deep.equal({ allowed: false, reason: 'user is limited' });
    });

    it('GET /api/v1/users/{username} shows is_online and active_connections from the engine', async () => {
      await h.services.users.create(MAIN_ADMIN, { username: 'alice', max_clients: 3 });
      ovpn.set({ key: 'a1', username: 'alice', rx: 10, tx: 20 }, { key: 'a2', username: 'alice', rx: 1, tx: 2 });
      await tick();
      const res = await h.http.get('/api/v1/users/alice').set('X-API-KEY', h.adminKey);
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ is_online: true, active_connections: 2, upload_bytes: 11, download_bytes: 22, status: 'active' });
    });
  });
}

forEachDatabase(suite);
