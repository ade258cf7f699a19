import { expect } from 'chai';
import { promises as fs } from 'node:fs';
import type { LocalHost } from '../../core/hosts/local-host';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import type { OpenVpnPlugin } from '../../plugins/openvpn';
import { createHarness, type Harness } from '../helpers/harness';
import { asText } from '../helpers/http';
import { requirePrerequisite } from '../helpers/prereq';
import { exitedWithin, NetLab, ping, startOpenVpnClient, until, vpnLabMissing, type OpenVpnTestClient } from '../helpers/vpn-lab';

/*
 * polygate with real OpenVPN, end to end through the REST API. The daemon's OpenVPN runs in a
 * server namespace (10.99.81.1, the public host of the profiles); clients run in their own
 * namespaces (10.99.81.2 and, routed, 10.99.82.2). Profiles are downloaded from /download, the
 * accounting engine is ticked by the test, enforcement cuts sessions on the real daemon.
 */
const SERVER_IP = '10.99.81.1';
const TUN_SERVER_IP = '10.8.0.1';

describe('OpenVPN end to end (REST API → real OpenVPN in namespaces)', function () {
  this.timeout(120_000);
  const lab = new NetLab();
  let h: Harness;
  let protocols: RunningProtocols | undefined;
  let c1: LocalHost;
  let c2: LocalHost;
  const clients: OpenVpnTestClient[] = [];

  const api = () => ({
    get: (p: string) => h.http.get(`/api/v1${p}`).set('X-API-KEY', h.adminKey),
    post: (p: string, body: object = {}) => h.http.post(`/api/v1${p}`).set('X-API-KEY', h.adminKey).send(body),
    put: (p: string, body: object) => h.http.put(`/api/v1${p}`).set('X-API-KEY', h.adminKey).send(body),
  });
  const vpn = () => h.core.plugins.get('openvpn', 'main')!.raw as OpenVpnPlugin;
  const tick = () => h.core.accounting.tick();

  async function createUser(body: Record<string, unknown>): Promise<{ username: string; password: string }> {
    const res = await api().post('/users', body);
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const username = res.body.created_users[0] as string;
    const detail = await api().get(`/users/${username}`);
    await protocols!.reconciler.idle();
    return { username, password: detail.body.openvpn_password };
  }

  async function download(username: string, linkName = 'main_udp'): Promise<string> {
    const links = await api().get(`/users/${username}/all_ovpn_links`);
    const link = (links.body.links as Array<{ name: string; url: string }>).find((l) => l.name === linkName);
    expect(link, `link ${linkName} in ${JSON.stringify(links.body)}`).to.not.equal(undefined);
    const url = new URL(link!.url);
    const res = await asText(h.http.get(url.pathname + url.search));
    expect(res.status, String(res.body)).to.equal(200);
    expect(res.headers['content-type']).to.match(/openvpn-profile/);
    return res.body as string;
  }

  async function connect(host: LocalHost, name: string, profile: string, user: { username: string; password: string }): Promise<OpenVpnTestClient> {
    const client = await startOpenVpnClient(lab, host, name, profile, [user.username, user.password]);
    clients.push(client);
    return client;
  }

  async function connected(client: OpenVpnTestClient): Promise<void> {
    await until(() => client.connected() || client.authFailed(), 'the client to connect or fail', 30_000);
    expect(client.connected(), client.lines.slice(-15).join('\n')).to.equal(true);
  }

  async function refused(client: OpenVpnTestClient): Promise<void> {
    await until(() => client.authFailed() || client.connected(), 'the server to answer the login', 30_000).catch((e: Error) => {
      throw new Error(`${e.message}; client said:\n${client.lines.slice(-20).join('\n')}`);
    });
    expect(client.connected(), 'connected although it must be refused').to.equal(false);
  }

  async function userDetail(username: string) {
    const res = await api().get(`/users/${username}`);
    expect(res.status).to.equal(200);
    return res.body;
  }

  /** OpenVPN drops a halted client after its 5 s exit delay; ticks confirm it is gone. */
  async function offline(username: string): Promise<void> {
    await until(async () => {
      await tick();
      return !(await userDetail(username)).is_online;
    }, `${username} to be offline`, 20_000, 500);
  }

  before(async function () {
    const missing = vpnLabMissing([['openvpn', '--version'], ['openssl', 'version']]);
    requirePrerequisite(this, missing === null, missing ?? '');
    const srv = await lab.addNamespace('ovsrv');
    c1 = await lab.addNamespace('ovc1');
    c2 = await lab.addNamespace('ovc2');
    lab.link('ovsrv', SERVER_IP, 'ovc1', '10.99.81.2');
    lab.link('ovsrv', '10.99.82.1', 'ovc2', '10.99.82.2');
    lab.route('ovc2', '10.99.81.0/24', '10.99.82.1');
    h = await createHarness('sqlite', {
      POLYGATE_DATA_DIR: `${lab.dir}/data`,
      POLYGATE_PUBLIC_HOST: SERVER_IP,
      POLYGATE_OPENVPN_SUBNET_POOL: '10.8.0.0/16',
    });
    protocols = await startProtocols(h.core, {
      host: srv,
      plugins: ['openvpn'],
      // Short keepalives so a client notices a dead server in seconds, not a minute.
      pluginConfig: { openvpn: { keepaliveInterval: 1, keepaliveTimeout: 6, restartInitialMs: 200, bytecountIntervalSec: 1 } },
      reconciler: { debounceMs: 50 },
    });
    expect(h.core.plugins.get('openvpn', 'main')?.state, h.core.plugins.get('openvpn', 'main')?.reason).to.equal('available');
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

  it('a user created through the API downloads its profile, connects, pings, and is accounted within 2 % of the client’s own counters', async () => {
    const alice = await createUser({ username: 'alice', max_clients: 1 });
    const client = await connect(c1, 'alice', await download('alice'), alice);
    await connected(client);
    expect(await ping(c1, TUN_SERVER_IP, 50, 1000, 0.02)).to.equal(true);
    await tick();
    await tick();
    const online = await userDetail('alice');
    expect(online.is_online).to.equal(true);
    expect(online.active_connections).to.equal(1);
    // Quiet link, the status file refreshed, then one more tick: both sides count the same bytes.
    await new Promise((r) => setTimeout(r, 2500));
    await tick();
    const link = await client.linkBytes();
    const detail = await userDetail('alice');
    expect(detail.upload_bytes, 'upload vs client writes').to.be.closeTo(link.write, link.write * 0.02);
    expect(detail.download_bytes, 'download vs client reads').to.be.closeTo(link.read, link.read * 0.02);
    expect(link.write).to.be.greaterThan(20 * 1000);
  });

  it('toggle cuts the live client and refuses it on reconnect; toggling back lets it in', async () => {
    const bob = await createUser({ username: 'bob' });
    const profile = await download('bob');
    const first = await connect(c1, 'bob1', profile, bob);
    await connected(first);
    expect((await api().post('/users/bob/toggle')).body.is_active).to.equal(false);
    await h.core.accounting.flushEvents();
    await tick();
    expect(await exitedWithin(first.proc, 20_000), `the cut client exits:\n${first.lines.slice(-25).join('\n')}`).to.equal(true);
    await offline('bob');
    const again = await connect(c1, 'bob2', profile, bob);
    await refused(again);
    await api().post('/users/bob/toggle');
    const back = await connect(c1, 'bob3', profile, bob);
    await connected(back);
  });

  it('max_clients: 1 refuses a second simultaneous client', async () => {
    const carol = await createUser({ username: 'carol', max_clients: 1 });
    const profile = await download('carol');
    const one = await connect(c1, 'carol1', profile, carol);
    await connected(one);
    await tick();
    const two = await connect(c2, 'carol2', profile, carol);
    await refused(two);
    expect(one.connected() && (await ping(c1, TUN_SERVER_IP, 2))).to.equal(true);
  });

  it('a small data_limit cuts the session within one tick of crossing it', async () => {
    const dave = await createUser({ username: 'dave', data_limit: 1, data_limit_unit: 'MB' });
    const client = await connect(c1, 'dave', await download('dave'), dave);
    await connected(client);
    await tick();
    expect((await userDetail('dave')).status).to.equal('active');
    // ~1.3 MB each way: over the 1 MiB limit.
    await ping(c1, TUN_SERVER_IP, 1000, 1300, 0.002);
    await tick();
    const over = await userDetail('dave');
    expect(over.status).to.equal('limited');
    expect(over.total_traffic_bytes).to.be.greaterThan(1024 * 1024);
    expect(await exitedWithin(client.proc, 15_000), 'the cut client exits').to.equal(true);
    await offline('dave');
    const retry = await connect(c1, 'dave2', await download('dave'), dave);
    await refused(retry);
  });

  it('a flexible_days user turns active with an expiry after its first connection', async () => {
    const erin = await createUser({ username: 'erin', activation_type: 'flexible_days', pending_activation_days: 30 });
    expect((await userDetail('erin')).status).to.equal('on_hold');
    const client = await connect(c1, 'erin', await download('erin'), erin);
    await connected(client);
    await tick();
    await tick();
    const detail = await userDetail('erin');
    expect(detail.status).to.equal('active');
    expect(detail.first_connection_at).to.be.a('string');
    const days = (Date.parse(detail.expiry_date) - Date.parse(detail.first_connection_at)) / 86_400_000;
    expect(days).to.be.closeTo(30, 0.01);
  });

  it('revoke: the old profile is refused and the new one connects', async () => {
    const frank = await createUser({ username: 'frank' });
    const oldProfile = await download('frank');
    const oldSub = (await api().get('/users/frank/sub')).body.sub_url as string;
    const revoked = await api().post('/users/frank/revoke');
    expect(revoked.status).to.equal(200);
    expect(revoked.body.new_subscription_url).to.not.equal(oldSub);
    // The certificate is re-issued in the background: wait until the served profile changes.
    let newProfile = oldProfile;
    await until(async () => (newProfile = await download('frank')) !== oldProfile, 'a new certificate', 30_000, 200);
    // The revocation list reaches the server with the reconciler's next apply: wait until the
    // server's crl-verify file is the CA's current list (the revoke runs in the background).
    const serverCrl = `${lab.dir}/data/plugins/openvpn/pki/crl.pem`;
    await until(async () => (await fs.readFile(serverCrl, 'utf8').catch(() => '')).trim() === (await h.core.pki.crl()).trim(), 'the new CRL on the server', 30_000, 200);
    const old = await connect(c1, 'frank-old', oldProfile, frank);
    // The server drops a revoked certificate during the TLS handshake; the client only learns
    // of it when its handshake window runs out (60 s), so refusal is judged as "never connects,
    // and is not an AUTH_FAILED" within a bounded wait.
    await until(() => old.connected() || old.authFailed(), 'the old profile to connect', 8_000).catch(() => undefined);
    expect(old.authFailed(), 'refused by the certificate check, before any login').to.equal(false);
    expect(old.connected()).to.equal(false);
    await old.stop();
    const renewed = (await userDetail('frank')).openvpn_password as string;
    expect(renewed, 'the password the old page showed is replaced too').to.not.equal(frank.password);
    const fresh = await connect(c1, 'frank-new', newProfile, { username: 'frank', password: renewed });
    await connected(fresh);
  });

  it('a custom port on tcp: a client connects over TCP', async () => {
    const res = await api().post('/public/ports', { public_port: 1443, protocol: 'tcp', server_ids: ['main'] });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    await protocols!.reconciler.idle();
    const gina = await createUser({ username: 'gina' });
    const profile = await download('gina', 'main_tcp_1443');
    expect(profile).to.match(/remote 10\.99\.81\.1 1443 tcp/);
    const client = await connect(c1, 'gina', profile, gina);
    await connected(client);
    expect(await ping(c1, vpn().describe().find((d) => d.key === '1443tcp')!.subnet.replace(/\.0\/\d+$/, '.1'), 3)).to.equal(true);
  });

  it('a killed OpenVPN is restarted, the client reconnects, and no byte is lost or counted twice', async () => {
    const hank = await createUser({ username: 'hank', max_clients: 2 });
    const client = await connect(c1, 'hank', await download('hank'), hank);
    await connected(client);
    await ping(c1, TUN_SERVER_IP, 100, 1000, 0.01);
    await new Promise((r) => setTimeout(r, 2500)); // a bytecount and a status-file refresh
    await tick();
    // The client's counters of its first session (OpenVPN clears them when it restarts).
    const first = await client.linkBytes();
    const instance = vpn().describe().find((d) => d.key === '1194udp')!;
    process.kill(instance.pid!, 'SIGKILL');
    await until(() => {
      const now = vpn().describe().find((d) => d.key === '1194udp');
      return !!now?.pid && now.pid !== instance.pid && now.managementConnected;
    }, 'OpenVPN to be restarted', 30_000);
    const reconnects = () => client.lines.filter((l) => l.includes('Initialization Sequence Completed')).length;
    await until(() => reconnects() >= 2, 'the client to reconnect', 45_000);
    await ping(c1, TUN_SERVER_IP, 30, 1000, 0.01);
    await new Promise((r) => setTimeout(r, 2500));
    await tick();
    await tick();
    const second = await client.linkBytes();
    const detail = await userDetail('hank');
    const sent = first.write + second.write;
    const received = first.read + second.read;
    expect(detail.upload_bytes, 'upload vs both sessions').to.be.closeTo(sent, sent * 0.02);
    expect(detail.download_bytes, 'download vs both sessions').to.be.closeTo(received, received * 0.02);
  });

  it("the user's certificate and key are kept in the panel's CA directory, mode 0600", async () => {
    const stat = await fs.stat(`${lab.dir}/data/pki/clients/alice.pem`).catch(() => null);
    expect(stat, 'client key file').to.not.equal(null);
    expect(stat!.mode & 0o777).to.equal(0o600);
  });
});
