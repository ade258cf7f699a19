import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { LocalHost } from '../../core/hosts/local-host';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import type { WireGuardPlugin } from '../../plugins/wireguard';
import { parseDump } from '../../plugins/wireguard/dump';
import { startWgClient, type WgTestClient } from '../fixtures/wireguard/wg-client';
import { createHarness, type Harness } from '../helpers/harness';
import { asText } from '../helpers/http';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, ping, until, vpnLabMissing } from '../helpers/vpn-lab';

/*
 * polygate with real WireGuard, end to end through the REST API. The daemon's wireguard-go runs
 * in a server namespace (10.99.91.1, the public host of the configs); each client is a
 * wireguard-go in its own namespace, configured only from the .conf the subscription page links
 * to. The test ticks accounting itself; the reconciler applies every change to the interface.
 */
const SERVER_IP = '10.99.91.1';
const TUNNEL_SERVER = '10.66.0.1';
const POOL = '10.66.0.0/16';

describe('WireGuard end to end (REST API → real wireguard-go in namespaces)', function () {
  this.timeout(180_000);
  const lab = new NetLab();
  let h: Harness;
  let protocols: RunningProtocols | undefined;
  let srv: LocalHost;
  const hosts: LocalHost[] = [];
  const clients: WgTestClient[] = [];

  const api = () => ({
    get: (p: string) => h.http.get(`/api/v1${p}`).set('X-API-KEY', h.adminKey),
    post: (p: string, body: object = {}) => h.http.post(`/api/v1${p}`).set('X-API-KEY', h.adminKey).send(body),
    del: (p: string) => h.http.delete(`/api/v1${p}`).set('X-API-KEY', h.adminKey),
  });
  const wg = () => h.core.plugins.get('wireguard', 'main')!.raw as WireGuardPlugin;
  const tick = () => h.core.accounting.tick();
  const idle = () => protocols!.reconciler.idle();

  async function createUser(body: Record<string, unknown>): Promise<string> {
    const res = await api().post('/users', { enable_wg1: true, ...body });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    await idle();
    return res.body.created_users[0] as string;
  }

  async function detail(username: string) {
    const res = await api().get(`/users/${username}`);
    expect(res.status).to.equal(200);
    return res.body;
  }


  /** The config, reached only the way a customer reaches it: subscription page JSON → its .conf link. */
  async function download(username: string, subUrl?: string): Promise<string> {
    const sub = new URL(subUrl ?? (await api().get(`/users/${username}/sub`)).body.sub_url);
    const page = await h.http.get(sub.pathname + sub.search).set('Accept', 'application/json');
    expect(page.status, JSON.stringify(page.body)).to.equal(200);
    const links = page.body.protocols?.wireguard?.links as Array<{ url: string }> | undefined;
    expect(links, JSON.stringify(page.body.protocols)).to.be.an('array').with.length.greaterThan(0);
    const url = new URL(links![0]!.url);
    expect(url.pathname).to.match(/\.conf$/);
    const res = await asText(h.http.get(url.pathname + url.search));
    expect(res.status, String(res.body)).to.equal(200);
    expect(res.headers['content-type']).to.match(/^text\/plain/);
    return res.body as string;
  }

  async function connect(slot: number, config: string): Promise<WgTestClient> {
    const client = await startWgClient(lab, hosts[slot]!, `wgk${randomBytes(3).toString('hex')}`, config, POOL);
    clients.push(client);
    return client;
  }

  const reachable = (slot: number, count = 3) => ping(hosts[slot]!, TUNNEL_SERVER, count);

  /** The server's own dump line of a user's peer, or undefined when it has no peer. */
  async function serverPeer(username: string) {
    const key = (await detail(username)).wg_public_key as string;
    const r = await srv.run(['wg', 'show', wg().describe()[0]!.name, 'dump']);
    return parseDump(r.stdout).peers.find((p) => p.publicKey === key);
  }

  async function offline(username: string): Promise<void> {
    await until(async () => {
      await tick();
      return !(await detail(username)).is_online;
    }, `${username} to be offline`, 20_000, 300);
  }

  before(async function () {
    const missing = vpnLabMissing([['wg', '--version'], ['wireguard-go', '--version']]);
    requirePrerequisite(this, missing === null, missing ?? '');
    srv = await lab.addNamespace('wgsrv');
    for (let i = 0; i < 3; i++) {
      hosts.push(await lab.addNamespace(`wgc${i}`));
      lab.link('wgsrv', i === 0 ? SERVER_IP : `10.99.${91 + i}.1`, `wgc${i}`, `10.99.${91 + i}.2`);
      if (i > 0) lab.route(`wgc${i}`, '10.99.91.0/24', `10.99.${91 + i}.1`);
    }
    h = await createHarness('sqlite', { POLYGATE_DATA_DIR: `${lab.dir}/data`, POLYGATE_PUBLIC_HOST: SERVER_IP }, { protocols: 'none' });
    protocols = await startProtocols(h.core, {
      host: srv,
      plugins: ['wireguard'],
      pluginConfig: { wireguard: { interfacePrefix: `wge${lab.suffix}`, restartInitialMs: 200, persistentKeepalive: 5 } },
      reconciler: { debounceMs: 50 },
    });
    const plugin = h.core.plugins.get('wireguard', 'main');
    expect(plugin?.state, plugin?.reason).to.equal('available');
  });

  after(async () => {
    for (const c of clients) await c.stop().catch(() => undefined);
    await protocols?.stop({ stopDaemons: true });
    await h?.close();
    await lab.cleanup();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.stop();
  });

  it('a user created with enable_wg1 downloads its config from the subscription page, connects, pings, and is accounted within 2 % of the client’s own counters', async () => {
    await createUser({ username: 'alice' });
    const config = await download('alice');
    expect(config).to.match(/^Endpoint = 10\.99\.91\.1:51820$/m).and.match(/^PresharedKey = /m).and.match(/^AllowedIPs = 0\.0\.0\.0\/0, ::\/0$/m);
    const client = await connect(0, config);
    expect(await reachable(0)).to.equal(true);
    expect(await ping(hosts[0]!, TUNNEL_SERVER, 300, 1000, 0.005)).to.equal(true);
    await tick();
    const online = await detail('alice');
    expect(online.is_online).to.equal(true);
    expect(online.active_connections).to.equal(1);
    const own = await client.counters();
    await tick();
    const d = await detail('alice');
    expect(own.tx).to.be.greaterThan(300_000);
    expect(d.upload_bytes, 'upload vs the client’s tx').to.be.closeTo(own.tx, own.tx * 0.02);
    expect(d.download_bytes, 'download vs the client’s rx').to.be.closeTo(own.rx, own.rx * 0.02);
  });

  it('toggle removes the peer (the tunnel stops) and re-enabling brings it back; bytes of both periods counted once', async () => {
    await createUser({ username: 'bob' });
    const client = await connect(0, await download('bob'));
    expect(await ping(hosts[0]!, TUNNEL_SERVER, 100, 1000, 0.005)).to.equal(true);
    await tick();
    expect((await api().post('/users/bob/toggle')).body.is_active).to.equal(false);
    await idle();
    expect(await serverPeer('bob'), 'the peer is gone at once').to.equal(undefined);
    expect(await reachable(0, 2)).to.equal(false);
    await offline('bob');
    await api().post('/users/bob/toggle');
    await idle();
    expect(await serverPeer('bob')).to.not.equal(undefined);
    // The client still holds keys the server forgot; it re-handshakes within ~15 s.
    await until(() => reachable(0, 1), 'the tunnel to work again', 40_000, 200);
    expect(await ping(hosts[0]!, TUNNEL_SERVER, 100, 1000, 0.005)).to.equal(true);
    const own = await client.counters();
    await tick();
    const d = await detail('bob');
    expect(d.is_online).to.equal(true);
    expect(d.upload_bytes, 'upload vs the client’s tx').to.be.closeTo(own.tx, own.tx * 0.02);
    expect(d.download_bytes, 'download vs the client’s rx').to.be.closeTo(own.rx, own.rx * 0.02);
  });

  it('a small data limit cuts within one tick of crossing it', async () => {
    await createUser({ username: 'dave', data_limit: 1, data_limit_unit: 'MB' });
    await connect(1, await download('dave'));
    expect(await reachable(1)).to.equal(true);
    await tick();
    expect((await detail('dave')).status).to.equal('active');
    await ping(hosts[1]!, TUNNEL_SERVER, 500, 1300, 0.002);
    await tick();
    await idle();
    const over = await detail('dave');
    expect(over.status).to.equal('limited');
    expect(over.total_traffic_bytes).to.be.greaterThan(1024 * 1024);
    expect(await serverPeer('dave'), 'peer removed after that one tick').to.equal(undefined);
    expect(await reachable(1, 2)).to.equal(false);
  });

  it('an expiry passing while connected cuts the peer', async () => {
    await createUser({ username: 'erin', expiry_days: 1 });
    await connect(2, await download('erin'));
    expect(await reachable(2)).to.equal(true);
    await tick();
    expect((await detail('erin')).is_online).to.equal(true);
    h.clock.advance(2 * 86_400_000);
    await tick();
    await idle();
    expect((await detail('erin')).status).to.equal('expired');
    expect(await serverPeer('erin')).to.equal(undefined);
    expect(await reachable(2, 2)).to.equal(false);
  });

  it('revoke: the old config stops working and a newly downloaded one works', async () => {
    await createUser({ username: 'frank' });
    const oldConfig = await download('frank');
    await connect(0, oldConfig);
    expect(await reachable(0)).to.equal(true);
    const revoked = await api().post('/users/frank/revoke');
    expect(revoked.status).to.equal(200);
    // The new key reaches the interface once core has applied the renewed material.
    await until(async () => (await idle(), (await serverPeer('frank')) !== undefined), 'the new key on the interface', 20_000, 100);
    expect(await reachable(0, 2), 'old config').to.equal(false);
    await clients.pop()!.stop();
    const fresh = await download('frank', revoked.body.new_subscription_url);
    expect(fresh).to.not.equal(oldConfig);
    expect(/^PrivateKey = (.*)$/m.exec(fresh)?.[1]).to.not.equal(/^PrivateKey = (.*)$/m.exec(oldConfig)?.[1]);
    expect(/^PresharedKey = (.*)$/m.exec(fresh)?.[1], 'a new preshared key').to.not.equal(/^PresharedKey = (.*)$/m.exec(oldConfig)?.[1]);
    await connect(0, fresh);
    expect(await reachable(0)).to.equal(true);
  });

  it('wireguard-go killed mid-traffic is restarted by the plugin; no byte is lost or counted twice', async () => {
    await createUser({ username: 'gina' });
    const client = await connect(0, await download('gina'));
    expect(await reachable(0)).to.equal(true);
    const flood = hosts[0]!.spawn(['ping', '-n', '-q', '-i', '0.01', '-s', '1000', '-w', '60', TUNNEL_SERVER]);
    lab.track(flood);
    await new Promise((r) => setTimeout(r, 3000));
    const before = wg().describe()[0]!;
    // Kill right after a tick: only what flowed between the plugin's read and the kill dies
    // with the process (a few ms of traffic); the rest must survive the restart exactly.
    await tick();
    process.kill(before.pid!, 'SIGKILL');
    const counted = await detail('gina');
    await until(() => {
      const now = wg().describe()[0];
      return !!now?.ready && now.pid !== before.pid;
    }, 'wireguard-go to be restarted and configured', 30_000);
    expect(wg().describe()[0]!.scope, 'a new interface run is a new scope').to.not.equal(before.scope);
    await until(() => reachable(0, 1), 'the client to get through again', 40_000, 200);
    await new Promise((r) => setTimeout(r, 2000));
    flood.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 300));
    const second = (await serverPeer('gina'))!;
    const own = await client.counters();
    await tick();
    await tick();
    const d = await detail('gina');
    expect(second.rx, 'the new run carried traffic').to.be.greaterThan(50_000);
    // Before the kill + the new run's own counters, nothing more or less (a keepalive of slack).
    expect(d.upload_bytes, 'upload = counted before the kill + second run').to.be.closeTo(counted.upload_bytes + second.rx, 200);
    expect(d.download_bytes, 'download = counted before the kill + second run').to.be.closeTo(counted.download_bytes + second.tx, 200);
    // Everything the client received came from one of the runs: counted once, within 2 %.
    expect(d.download_bytes, 'download vs the client’s rx').to.be.closeTo(own.rx, own.rx * 0.02);
  });

  it('two connected users are undisturbed while a third user is added and removed', async () => {
    await createUser({ username: 'hank' });
    await createUser({ username: 'ivy' });
    await connect(0, await download('hank'));
    await connect(1, await download('ivy'));
    expect(await reachable(0)).to.equal(true);
    expect(await reachable(1)).to.equal(true);
    const before = [(await serverPeer('hank'))!, (await serverPeer('ivy'))!];
    const pings = [0, 1].map((slot) => hosts[slot]!.run(['ping', '-n', '-q', '-c', '200', '-i', '0.02', '-W', '1', TUNNEL_SERVER], { timeoutMs: 60_000 }));
    await new Promise((r) => setTimeout(r, 500));
    await createUser({ username: 'jack' });
    expect(await serverPeer('jack')).to.not.equal(undefined);
    expect((await api().del('/users/jack')).status).to.equal(200);
    await idle();
    const results = await Promise.all(pings);
    for (const r of results) expect(r.stdout, 'no packet lost').to.match(/ 0% packet loss/);
    const after = [(await serverPeer('hank'))!, (await serverPeer('ivy'))!];
    for (const [i, p] of after.entries()) {
      expect(p.rx, 'counters kept growing: the peer was never re-created').to.be.greaterThan(before[i]!.rx);
      expect(p.latestHandshake, 'no new handshake was needed').to.equal(before[i]!.latestHandshake);
    }
  });
});
