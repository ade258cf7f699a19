import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import type { LocalHost } from '../../core/hosts/local-host';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import { startSwanClient, type SwanClient } from '../fixtures/l2tp/swan-client';
import { createHarness, type Harness } from '../helpers/harness';
import { asText } from '../helpers/http';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, until, vpnLabMissing } from '../helpers/vpn-lab';

/*
 * polygate with the real L2TP/IPsec plugin, end to end through the REST API, over its IKEv2
 * path (the one this kernel can carry: userspace ESP, tunnel mode). The plugin's charon runs in
 * a server namespace (10.99.107.1, the public host) with an inner address 10.88.107.1 the
 * tunnel leads to; a real strongSwan client (its own charon + swanctl) in another namespace is
 * configured only from the subscription page: the `.sswan` profile it links to (gateway,
 * identity, the panel CA) and the username/password it shows. The IKEv1 part checks that the
 * PSK the page shows is the one charon takes, and that update_ipsec_psk replaces it live.
 */
const SERVER_IP = '10.99.107.1';
const INNER = '10.88.107.1';

describe('L2TP/IPsec end to end (REST API → real charon + xl2tpd; real strongSwan IKEv2 client in namespaces)', function () {
  this.timeout(180_000);
  const lab = new NetLab();
  let h: Harness;
  let protocols: RunningProtocols | undefined;
  let srv: LocalHost;
  let client: SwanClient;
  let n = 0;
  const open: string[] = [];

  const api = () => ({
    get: (p: string) => h.http.get(`/api/v1${p}`).set('X-API-KEY', h.adminKey),
    post: (p: string, body: object = {}) => h.http.post(`/api/v1${p}`).set('X-API-KEY', h.adminKey).send(body),
  });
  const tick = () => h.core.accounting.tick();
  const idle = () => protocols!.reconciler.idle();
  const detail = async (u: string) => (await api().get(`/users/${u}`)).body;

  async function createUser(body: Record<string, unknown>): Promise<void> {
    const res = await api().post('/users', { enable_l2tp: true, ...body });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    await idle();
  }

  /** Everything a customer gets: the page's l2tp card and the profile it links to. */
  async function fromPage(username: string): Promise<{ profile: string; password: string; psk: string }> {
    const sub = new URL((await api().get(`/users/${username}/sub`)).body.sub_url);
    const page = await h.http.get(sub.pathname + sub.search).set('Accept', 'application/json');
    expect(page.status, JSON.stringify(page.body)).to.equal(200);
    const card = page.body.protocols?.l2tp;
    expect(card, JSON.stringify(page.body.protocols)).to.be.an('object');
    expect(card.username).to.equal(username);
    expect(card.password, JSON.stringify(card)).to.be.a('string');
    expect(card.psk, 'the PSK is on the page').to.be.a('string').and.not.equal('');
    const link = (card.links as Array<{ url: string }>)[0]!;
    const url = new URL(link.url);
    const res = await asText(h.http.get(url.pathname + url.search));
    expect(res.status, String(res.body)).to.equal(200);
    return { profile: res.body as string, password: card.password as string, psk: card.psk as string };
  }

  async function connect(username: string, password?: string): Promise<{ name: string; ok: boolean; output: string }> {
    const page = await fromPage(username);
    const name = `e${++n}`;
    open.push(name);
    return { name, ...(await client.connect(name, page.profile, password ?? page.password)) };
  }

  const cut = (name: string) => until(async () => !(await client.established(name)), `${name} to be cut`, 20_000, 200);
  const pingInner = (count: number, size: number) =>
    execFileSync('ip', ['netns', 'exec', lab.ns('l2ec'), 'ping', '-q', '-c', String(count), '-i', '0.005', '-s', String(size), '-W', '2', INNER], { stdio: 'ignore' });

  before(async function () {
    const missing = vpnLabMissing([['/usr/lib/ipsec/charon', '--version'], ['swanctl', '--help'], ['sh', '-c', 'command -v xl2tpd'], ['unshare', '--version']]);
    requirePrerequisite(this, missing === null, missing ?? '');
    srv = await lab.addNamespace('l2es');
    const cli = await lab.addNamespace('l2ec');
    lab.link('l2es', SERVER_IP, 'l2ec', '10.99.107.2');
    execFileSync('ip', ['-n', lab.ns('l2es'), 'addr', 'add', `${INNER}/32`, 'dev', 'lo']);
    h = await createHarness('sqlite', { POLYGATE_DATA_DIR: `${lab.dir}/data`, POLYGATE_PUBLIC_HOST: SERVER_IP }, { protocols: 'none' });
    protocols = await startProtocols(h.core, {
      host: srv,
      plugins: ['l2tp-ipsec'],
      pluginConfig: { 'l2tp-ipsec': { userspaceEsp: true, trafficSelectors: [`${INNER}/32`], chapSecretsPath: `${lab.dir}/chap-secrets`, restartInitialMs: 200 } },
      reconciler: { debounceMs: 50 },
    });
    const plugin = h.core.plugins.get('l2tp', 'main');
    expect(plugin?.state, plugin?.reason).to.equal('available');
    client = await startSwanClient(lab, cli, 'e2e');
  });

  after(async () => {
    await client?.stop().catch(() => undefined);
    await protocols?.stop({ stopDaemons: true });
    await h?.close();
    await lab.cleanup();
  });

  afterEach(async () => {
    for (const name of open.splice(0)) await client.terminate(name).catch(() => undefined);
  });

  it('a user created with enable_l2tp connects over IKEv2 from its subscription page, pings through the tunnel, and is accounted within 5 % of the client\'s SA counters', async () => {
    await createUser({ username: 'alice' });
    const c = await connect('alice');
    expect(c.ok, c.output.split('\n').slice(-5).join(' | ')).to.equal(true);
    pingInner(300, 1000);
    await tick();
    const own = await client.counters(c.name);
    await tick();
    const d = await detail('alice');
    expect(d.is_online).to.equal(true);
    expect(own.tx).to.be.greaterThan(300_000);
    expect(d.upload_bytes, 'upload vs the client SA bytes out').to.be.closeTo(own.tx, own.tx * 0.05);
    expect(d.download_bytes, 'download vs the client SA bytes in').to.be.closeTo(own.rx, own.rx * 0.05);
  });

  it('a wrong password is refused', async () => {
    await createUser({ username: 'wendy' });
    const c = await connect('wendy', 'not-her-password');
    expect(c.ok).to.equal(false);
    expect(await client.established(c.name)).to.equal(false);
  });

  it('toggle cuts the session (the apply it triggers, no tick needed) and the user cannot reconnect', async () => {
    await createUser({ username: 'bobby' });
    const c = await connect('bobby');
    expect(c.ok, c.output.split('\n').slice(-5).join(' | ')).to.equal(true);
    await tick();
    expect((await api().post('/users/bobby/toggle')).body.is_active).to.equal(false);
    await idle();
    await cut(c.name);
    const again = await connect('bobby');
    expect(again.ok, 'reconnect after toggle').to.equal(false);
  });

  it('crossing a small data limit cuts the session at the next tick and a reconnect is refused', async () => {
    await createUser({ username: 'carol', data_limit: 1, data_limit_unit: 'MB' });
    const c = await connect('carol');
    expect(c.ok, c.output.split('\n').slice(-5).join(' | ')).to.equal(true);
    pingInner(800, 1400);
    await tick();
    await idle();
    await cut(c.name);
    const again = await connect('carol');
    expect(again.ok, 'reconnect over the limit').to.equal(false);
  });

  it('a session the client ends between two ticks is counted from vici child-updown, exactly once', async () => {
    await createUser({ username: 'dave' });
    const c = await connect('dave');
    expect(c.ok, c.output.split('\n').slice(-5).join(' | ')).to.equal(true);
    await tick();
    pingInner(200, 1000);
    const own = await client.counters(c.name);
    await client.terminate(c.name);
    await until(async () => {
      await tick();
      return !(await detail('dave')).is_online;
    }, 'dave to be offline', 20_000, 300);
    await h.core.accounting.flushEvents();
    await tick();
    const d = await detail('dave');
    expect(d.upload_bytes, 'upload vs the client SA bytes out').to.be.closeTo(own.tx, own.tx * 0.05);
    expect(d.download_bytes, 'download vs the client SA bytes in').to.be.closeTo(own.rx, own.rx * 0.05);
    await tick();
    await tick();
    expect((await detail('dave')).upload_bytes, 'not counted again').to.equal(d.upload_bytes);
  });

  it('the PSK the page shows negotiates IKEv1 (L2TP\'s IPsec); after update_ipsec_psk only the new one does', async () => {
    await createUser({ username: 'erin' });
    const { psk } = await fromPage('erin');
    // Main Mode only: this kernel cannot install L2TP's transport-mode CHILD_SA.
    const ikeUp = async (key: string) => {
      const name = `e${++n}`;
      await client.connectPsk(name, SERVER_IP, key, 6);
      const up = client.cameUp(name);
      await client.terminate(name);
      return up;
    };
    expect(await ikeUp(psk), 'the page PSK').to.equal(true);
    const res = await api().post('/update_ipsec_psk', { new_psk: 'E2e-new-PSK-0123456789' });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    await idle();
    expect((await fromPage('erin')).psk).to.equal('E2e-new-PSK-0123456789');
    expect(await ikeUp(psk), 'the old PSK').to.equal(false);
    expect(await ikeUp('E2e-new-PSK-0123456789'), 'the new PSK').to.equal(true);
  });
});
