import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import type { LocalHost } from '../../core/hosts/local-host';
import { startProtocols, type RunningProtocols } from '../../core/protocols/start';
import { startOcClient, type OcTestClient } from '../fixtures/ocserv/oc-client';
import { createHarness, type Harness } from '../helpers/harness';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, until, vpnLabMissing } from '../helpers/vpn-lab';

/*
 * polygate with real ocserv, end to end through the REST API. ocserv runs in a server
 * namespace (10.99.97.1, the public host); the openconnect client in its own namespace is
 * configured only from what the subscription page serves (its `protocols.cisco` links: the
 * profile with the server, user and certificate pin) plus the password the page shows.
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
  const clients: OcTestClient[] = [];

  const api = () => ({
    get: (p: string) => h.http.get(`/api/v1${p}`).set('X-API-KEY', h.adminKey),
    post: (p: string, body: object = {}) => h.http.post(`/api/v1${p}`).set('X-API-KEY', h.adminKey).send(body),
  });
  const tick = () => h.core.accounting.tick();
  const idle = () => protocols!.reconciler.idle();
  const detail = async (u: string) => (await api().get(`/users/${u}`)).body;
  const text = (r: import('supertest').Request) =>
    r.buffer(true).parse((res, cb) => {
      let data = '';
      res.on('data', (c: Buffer) => (data += c.toString()));
      res.on('end', () => cb(null, data));
    });

  async function createUser(body: Record<string, unknown>): Promise<void> {
    const res = await api().post('/users', { enable_cisco: true, ...body });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    await idle();
  }

  /** Profile and password, only from the subscription page JSON and the profile it links to. */
  async function fromPage(username: string): Promise<{ profile: string; password: string }> {
    const sub = new URL((await api().get(`/users/${username}/sub`)).body.sub_url);
    const page = await h.http.get(sub.pathname + sub.search).set('Accept', 'application/json');
    expect(page.status, JSON.stringify(page.body)).to.equal(200);
    const cisco = page.body.protocols?.cisco;
    expect(cisco, JSON.stringify(page.body.protocols)).to.be.an('object');
    const password = (cisco.password ?? cisco.credentials?.password) as string;
    expect(password, JSON.stringify(cisco)).to.be.a('string');
    const link = (cisco.links as Array<{ url: string }>)[0]!;
    const url = new URL(link.url);
    const res = await text(h.http.get(url.pathname + url.search));
    expect(res.status, String(res.body)).to.equal(200);
    expect(res.body).to.match(/^servercert=pin-sha256:/m);
    return { profile: res.body as string, password };
  }

  async function connect(username: string): Promise<OcTestClient> {
    const { profile, password } = await fromPage(username);
    const c = await startOcClient(lab, lab.ns('oe2c'), profile, password, POOL);
    clients.push(c);
    return c;
  }

  before(async function () {
    const missing = vpnLabMissing([['ocserv', '--version'], ['occtl', '--version'], ['openconnect', '--version']]);
    requirePrerequisite(this, missing === null, missing ?? '');
    srv = await lab.addNamespace('oe2s');
    await lab.addNamespace('oe2c');
    lab.link('oe2s', SERVER_IP, 'oe2c', '10.99.97.2');
    h = await createHarness('sqlite', { POLYGATE_DATA_DIR: `${lab.dir}/data`, POLYGATE_PUBLIC_HOST: SERVER_IP }, { protocols: 'none' });
    protocols = await startProtocols(h.core, {
      host: srv,
      plugins: ['ocserv'],
      pluginConfig: { ocserv: { device: `oe${lab.suffix}`, restartInitialMs: 200, maxBanScore: 0 } },
      reconciler: { debounceMs: 50 },
    });
    const plugin = h.core.plugins.get('cisco', 'main');
    expect(plugin?.state, plugin?.reason).to.equal('available');
  });

  after(async () => {
    for (const c of clients) await c.stop().catch(() => undefined);
    await protocols?.stop();
    await h?.close();
    await lab.cleanup();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.stop();
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
});
