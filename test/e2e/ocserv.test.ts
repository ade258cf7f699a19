import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import type { LocalHost } from '../../core/hosts/local-host';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import type { OcservPlugin } from '../../plugins/ocserv';
import { startOcClient, type OcTestClient } from '../fixtures/ocserv/oc-client';
import { createHarness, type Harness } from '../helpers/harness';
import { asText } from '../helpers/http';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, startOpenVpnClient, until, vpnLabMissing, type OpenVpnTestClient } from '../helpers/vpn-lab';

/*
 * polygate with real ocserv, end to end through the REST API. ocserv runs in a server
 * namespace (10.99.97.1, the public host); the openconnect client in its own namespace is
 * configured only from what the subscription page serves (its `protocols.cisco` links: the
 * profile with the server, user and certificate pin) plus the password the page shows. A second
 * client namespace (10.99.98.2, routed) holds a second device of the same customer, and the
 * daemon's OpenVPN runs beside ocserv so that max_clients is proven across protocols.
 */
const SERVER_IP = '10.99.97.1';
const POOL = '10.12.0.0/16';
const TUNNEL_SERVER = '10.12.0.1';

describe('Cisco AnyConnect end to end (REST API → real ocserv + openconnect in namespaces)', function () {
  this.timeout(180_000);
  const lab = new NetLab();
  let h: Harness;
  let protocols: RunningProtocols | undefined;
  let srv: LocalHost;
  let second: LocalHost;
  const clients: OcTestClient[] = [];
  const ovpnClients: OpenVpnTestClient[] = [];

  const api = () => ({
    get: (p: string) => h.http.get(`/api/v1${p}`).set('X-API-KEY', h.adminKey),
    post: (p: string, body: object = {}) => h.http.post(`/api/v1${p}`).set('X-API-KEY', h.adminKey).send(body),
    delete: (p: string) => h.http.delete(`/api/v1${p}`).set('X-API-KEY', h.adminKey),
  });
  const tick = () => h.core.accounting.tick();
  const idle = () => protocols!.reconciler.idle();
  const detail = async (u: string) => (await api().get(`/users/${u}`)).body;

  async function createUser(body: Record<string, unknown>): Promise<void> {
    const res = await api().post('/users', { enable_cisco: true, ...body });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    await idle();
  }

  /** Profile and password, only from the subscription page JSON and the profile it links to. */
  async function fromPage(username: string, subUrl?: string): Promise<{ profile: string; password: string }> {
    const sub = new URL(subUrl ?? (await api().get(`/users/${username}/sub`)).body.sub_url);
    const page = await h.http.get(sub.pathname + sub.search).set('Accept', 'application/json');
    expect(page.status, JSON.stringify(page.body)).to.equal(200);
    const cisco = page.body.protocols?.cisco;
    expect(cisco, JSON.stringify(page.body.protocols)).to.be.an('object');
    const password = (cisco.password ?? cisco.credentials?.password) as string;
    expect(password, JSON.stringify(cisco)).to.be.a('string');
    const link = (cisco.links as Array<{ url: string }>)[0]!;
    const url = new URL(link.url);
    const res = await asText(h.http.get(url.pathname + url.search));
    expect(res.status, String(res.body)).to.equal(200);
    expect(res.body).to.match(/^servercert=pin-sha256:/m);
    return { profile: res.body as string, password };
  }

  async function connect(username: string, from: { namespace?: string; password?: string; subUrl?: string } = {}): Promise<OcTestClient> {
    const page = await fromPage(username, from.subUrl);
    const c = await startOcClient(lab, from.namespace ?? lab.ns('oe2c'), page.profile, from.password ?? page.password, POOL);
    clients.push(c);
    return c;
  }

  /** The client is let in (its tunnel gets an address) — or fails the test with what it said. */
  async function admitted(c: OcTestClient): Promise<void> {
    await until(async () => (await c.up()) || c.exited(), 'the tunnel or the client to give up', 30_000, 200);
    expect(await c.up(), c.lines.filter(Boolean).slice(-6).join(' | ')).to.equal(true);
  }

  /** ocserv refuses the login: the client exits without ever getting a tunnel. */
  async function refusedLogin(c: OcTestClient): Promise<void> {
    let everUp = false;
    await until(async () => ((everUp ||= await c.up()), c.exited()), 'the login to be refused', 30_000, 200);
    expect(everUp, 'the client got a tunnel although it must be refused').to.equal(false);
  }

  /** The OpenVPN profile and password of a user, as the API serves them. */
  async function connectOpenVpn(username: string): Promise<OpenVpnTestClient> {
    const links = await api().get(`/users/${username}/all_ovpn_links`);
    const link = (links.body.links as Array<{ name: string; url: string }>).find((l) => l.name === 'main_udp')!;
    const url = new URL(link.url);
    const profile = await asText(h.http.get(url.pathname + url.search));
    expect(profile.status, String(profile.body)).to.equal(200);
    const c = await startOpenVpnClient(lab, second, `ov-${username}-${ovpnClients.length}`, profile.body as string, [username, (await detail(username)).openvpn_password]);
    ovpnClients.push(c);
    return c;
  }

  before(async function () {
    const missing = vpnLabMissing([['ocserv', '--version'], ['occtl', '--version'], ['openconnect', '--version']]);
    requirePrerequisite(this, missing === null, missing ?? '');
    const openvpnMissing = vpnLabMissing([['openvpn', '--version']]);
    requirePrerequisite(this, openvpnMissing === null, openvpnMissing ?? '');
    srv = await lab.addNamespace('oe2s');
    await lab.addNamespace('oe2c');
    second = await lab.addNamespace('oe2d');
    lab.link('oe2s', SERVER_IP, 'oe2c', '10.99.97.2');
    lab.link('oe2s', '10.99.98.1', 'oe2d', '10.99.98.2');
    lab.route('oe2d', '10.99.97.0/24', '10.99.98.1');
    h = await createHarness('sqlite', { POLYGATE_DATA_DIR: `${lab.dir}/data`, POLYGATE_PUBLIC_HOST: SERVER_IP }, { protocols: 'none' });
    protocols = await startProtocols(h.core, {
      host: srv,
      plugins: ['ocserv', 'openvpn'],
      pluginConfig: {
        ocserv: { device: `oe${lab.suffix}`, restartInitialMs: 200, maxBanScore: 0 },
        openvpn: { keepaliveInterval: 1, keepaliveTimeout: 6, restartInitialMs: 200, bytecountIntervalSec: 1 },
      },
      reconciler: { debounceMs: 50 },
    });
    for (const protocol of ['cisco', 'openvpn'] as const) {
      const plugin = h.core.plugins.get(protocol, 'main');
      expect(plugin?.state, `${protocol}: ${plugin?.reason}`).to.equal('available');
    }
  });

  after(async () => {
    for (const c of [...clients, ...ovpnClients]) await c.stop().catch(() => undefined);
    await protocols?.stop({ stopDaemons: true });
    await h?.close();
    await lab.cleanup();
  });

  afterEach(async () => {
    for (const c of [...clients.splice(0), ...ovpnClients.splice(0)]) await c.stop();
  });

  it('a user created with enable_cisco connects from its subscription page, pings, and is accounted within 5 % of the client tunnel counters', async () => {
    await createUser({ username: 'alice' });
    const c = await connect('alice');
    await until(() => c.up(), `the tunnel (${c.lines.slice(-3).join(' | ')})`, 30_000, 200);
    execFileSync('ip', ['netns', 'exec', lab.ns('oe2c'), 'ping', '-q', '-c', '300', '-i', '0.005', '-s', '1000', TUNNEL_SERVER], { stdio: 'ignore' });
    await tick();
    const own = await c.counters();
    await tick();
    const d = await detail('alice');
    expect(d.is_online).to.equal(true);
    expect(own.tx).to.be.greaterThan(300_000);
    expect(d.upload_bytes, 'upload vs the client tx').to.be.closeTo(own.tx, own.tx * 0.05);
    expect(d.download_bytes, 'download vs the client rx').to.be.closeTo(own.rx, own.rx * 0.05);
  });

  it('toggle cuts the session (the apply it triggers, no tick needed) and the user cannot reconnect', async () => {
    await createUser({ username: 'bobby' });
    const c = await connect('bobby');
    await until(() => c.up(), 'the tunnel', 30_000, 200);
    await tick();
    expect((await api().post('/users/bobby/toggle')).body.is_active).to.equal(false);
    await idle();
    await until(() => c.exited(), 'the client to be cut', 20_000, 200);
    const again = await connect('bobby');
    await until(() => again.exited(), 'the reconnect to be refused', 20_000, 200);
    expect(await again.up()).to.equal(false);
  });

  it('crossing the data limit cuts the session at the next tick and a reconnect is refused', async () => {
    await createUser({ username: 'carol', data_limit: 1, data_limit_unit: 'MB' });
    const c = await connect('carol');
    await until(() => c.up(), 'the tunnel', 30_000, 200);
    execFileSync('ip', ['netns', 'exec', lab.ns('oe2c'), 'ping', '-q', '-c', '800', '-i', '0.002', '-s', '1400', TUNNEL_SERVER], { stdio: 'ignore' });
    await tick();
    await idle();
    await until(() => c.exited(), 'the client to be cut', 20_000, 200);
    const again = await connect('carol');
    await until(() => again.exited(), 'the reconnect to be refused', 20_000, 200);
    expect(await again.up()).to.equal(false);
  });

  it('a session the client ends between two ticks is counted from the disconnect hook, exactly once', async () => {
    await createUser({ username: 'dave' });
    const c = await connect('dave');
    await until(() => c.up(), 'the tunnel', 30_000, 200);
    await tick();
    execFileSync('ip', ['netns', 'exec', lab.ns('oe2c'), 'ping', '-q', '-c', '200', '-i', '0.005', '-s', '1000', TUNNEL_SERVER], { stdio: 'ignore' });
    const own = await c.counters();
    await c.stop();
    await until(async () => {
      await tick();
      return !(await detail('dave')).is_online;
    }, 'dave to be offline', 20_000, 300);
    await h.core.accounting.flushEvents();
    await tick();
    const d = await detail('dave');
    expect(d.upload_bytes, 'upload vs the client tx').to.be.closeTo(own.tx, own.tx * 0.05);
    expect(d.download_bytes, 'download vs the client rx').to.be.closeTo(own.rx, own.rx * 0.05);
    await tick();
    await tick();
    expect((await detail('dave')).upload_bytes, 'not counted again').to.equal(d.upload_bytes);
  });

  it('a wrong password is refused; the one the page shows is let in', async () => {
    await createUser({ username: 'erin' });
    const { password } = await fromPage('erin');
    await refusedLogin(await connect('erin', { password: `${password}x` }));
    await admitted(await connect('erin'));
  });

  it('max_clients: 1 on ocserv alone: a second device is refused by ocserv itself, before any tick', async () => {
    await createUser({ username: 'frank', max_clients: 1 });
    await admitted(await connect('frank'));
    await refusedLogin(await connect('frank', { namespace: lab.ns('oe2d') }));
    await createUser({ username: 'grace', max_clients: 2 });
    await admitted(await connect('grace'));
    await admitted(await connect('grace', { namespace: lab.ns('oe2d') }));
  });

  it('max_clients: 1 holds across protocols: an OpenVPN session keeps ocserv out, and an ocserv session keeps OpenVPN out', async () => {
    await createUser({ username: 'heidi', max_clients: 1, enable_openvpn: true });
    const ovpn = await connectOpenVpn('heidi');
    await until(() => ovpn.connected() || ovpn.authFailed(), 'OpenVPN to connect', 30_000);
    expect(ovpn.connected(), ovpn.lines.slice(-10).join('\n')).to.equal(true);
    await tick();
    await idle();
    await refusedLogin(await connect('heidi'));

    await ovpn.stop();
    await until(async () => (await tick(), !(await detail('heidi')).is_online), 'heidi to be offline', 30_000, 500);
    await idle();
    const cisco = await connect('heidi');
    await admitted(cisco);
    await tick();
    const again = await connectOpenVpn('heidi');
    await until(() => again.connected() || again.authFailed(), 'the OpenVPN login to be answered', 30_000);
    expect(again.connected(), 'OpenVPN let a second session in past max_clients').to.equal(false);
    expect(await cisco.up(), 'the ocserv session stays').to.equal(true);
  });

  it('an expiry passing while connected cuts the session at the next tick and keeps the user out', async () => {
    await createUser({ username: 'ivan', expiry_days: 1 });
    const c = await connect('ivan');
    await admitted(c);
    await tick();
    h.clock.advance(2 * 86_400_000);
    await tick();
    await idle();
    expect((await detail('ivan')).status).to.equal('expired');
    await until(() => c.exited(), 'the expired session to be cut', 20_000, 200);
    await refusedLogin(await connect('ivan'));
  });

  it('a reseller over its traffic quota: its users are cut at the next tick and kept out', async () => {
    const reseller = await api().post('/sub_admins', { username: 'res_oc', password: 'res-oc-pass-1', total_usage_quota_gb: 0.001 });
    expect(reseller.status, JSON.stringify(reseller.body)).to.equal(200);
    const key = reseller.body.sub_admin.api_key as string;
    const created = await h.http.post('/api/v1/users').set('X-API-KEY', key).send({ username: 'judy', enable_cisco: true });
    expect(created.status, JSON.stringify(created.body)).to.equal(200);
    await idle();
    const c = await connect('judy');
    await admitted(c);
    execFileSync('ip', ['netns', 'exec', lab.ns('oe2c'), 'ping', '-q', '-c', '800', '-i', '0.002', '-s', '1400', TUNNEL_SERVER], { stdio: 'ignore' });
    await tick();
    await idle();
    await until(() => c.exited(), 'the session of a reseller over quota to be cut', 20_000, 200);
    await refusedLogin(await connect('judy'));
  });

  it('delete cuts the session at once and the deleted user cannot log in', async () => {
    await createUser({ username: 'kate' });
    const page = await fromPage('kate');
    const c = await connect('kate');
    await admitted(c);
    await tick();
    expect((await api().delete('/users/kate')).status).to.equal(200);
    await idle();
    await until(() => c.exited(), 'the deleted user to be cut', 20_000, 200);
    const again = await startOcClient(lab, lab.ns('oe2c'), page.profile, page.password, POOL);
    clients.push(again);
    await refusedLogin(again);
  });

  it('revoke ends the session, the old password stops working, and the new page lets the customer back in', async () => {
    await createUser({ username: 'leo' });
    const old = await fromPage('leo');
    const c = await connect('leo');
    await admitted(c);
    await tick();
    const revoked = await api().post('/users/leo/revoke');
    expect(revoked.status, JSON.stringify(revoked.body)).to.equal(200);
    await until(() => c.exited(), 'the session opened with the revoked credentials to end', 20_000, 200);
    const stale = await startOcClient(lab, lab.ns('oe2c'), old.profile, old.password, POOL);
    clients.push(stale);
    await refusedLogin(stale);
    const fresh = await fromPage('leo', revoked.body.new_subscription_url);
    expect(fresh.password).to.not.equal(old.password);
    await admitted(await connect('leo', { subUrl: revoked.body.new_subscription_url }));
  });

  it('killing ocserv mid-traffic: it is restarted, the customer reconnects, and the bytes polled before the kill are kept and never doubled', async () => {
    await createUser({ username: 'mallory' });
    const c = await connect('mallory');
    await admitted(c);
    execFileSync('ip', ['netns', 'exec', lab.ns('oe2c'), 'ping', '-q', '-c', '200', '-i', '0.005', '-s', '1000', TUNNEL_SERVER], { stdio: 'ignore' });
    const own = await c.counters();
    await tick();
    const plugin = h.core.plugins.get('cisco', 'main')!.raw as OcservPlugin;
    const before = plugin.describe();
    process.kill(before.pid!, 'SIGKILL');
    await until(() => plugin.describe().pid !== undefined && plugin.describe().pid !== before.pid, 'ocserv to be restarted', 20_000, 100);
    await until(() => c.exited(), 'the old client to notice', 30_000, 200);
    await tick();
    const afterKill = await detail('mallory');
    expect(afterKill.upload_bytes, 'upload polled before the kill').to.be.closeTo(own.tx, own.tx * 0.05);
    const d = await connect('mallory');
    await admitted(d);
    execFileSync('ip', ['netns', 'exec', lab.ns('oe2c'), 'ping', '-q', '-c', '100', '-i', '0.005', '-s', '1000', TUNNEL_SERVER], { stdio: 'ignore' });
    const own2 = await d.counters();
    await tick();
    await tick();
    const total = await detail('mallory');
    expect(total.upload_bytes, 'both sessions, each once').to.be.closeTo(own.tx + own2.tx, (own.tx + own2.tx) * 0.05);
    await tick();
    expect((await detail('mallory')).upload_bytes, 'not counted again').to.equal(total.upload_bytes);
  });
});
