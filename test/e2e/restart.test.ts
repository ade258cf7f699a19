import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import type { LocalHost } from '../../core/hosts/local-host';
import { startProtocols, type ProtocolsOptions, type RunningProtocols } from '../../core/protocols/start';
import { randomKey } from '../../core/secrets';
import { startSwanClient, type SwanClient } from '../fixtures/l2tp/swan-client';
import { startOcClient } from '../fixtures/ocserv/oc-client';
import { startWgClient } from '../fixtures/wireguard/wg-client';
import { createHarness, type Harness } from '../helpers/harness';
import { asText } from '../helpers/http';
import { Findings } from '../helpers/findings';
import { daemonPids, endNamespaceProcesses, startPing, type PingRun } from '../helpers/netns';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, ping, startOpenVpnClient, until, vpnLabMissing } from '../helpers/vpn-lab';

/*
 * Issue 11 items 2 and 4 on the main server: stopping polygate the way SIGTERM does (the
 * protocols' stop(), which detaches plugins) and starting a new one on the same data dir and
 * database cuts no session. One server namespace runs all four plugins; each protocol has a
 * real client in its own namespace, configured only from what the API serves. Each protocol is
 * judged on its own (an `it` per protocol before and after the restart), so the report says
 * which protocol keeps its sessions and which does not.
 */
const SERVER_IP = '10.99.121.1';
const INNER = '10.88.121.1';

interface Counters {
  up: number;
  down: number;
}

/** A connected client of one protocol, as the checks after the restart see it. */
interface LiveClient {
  username: string;
  host: LocalHost;
  /** The address traffic is sent to through the tunnel. */
  target: string;
  /** The accounting tolerance the protocol's own e2e suite uses. */
  tolerance: number;
  counters(): Promise<Counters>;
  /** Null while the session is the one it was; otherwise how it was dropped. */
  dropped(): Promise<string | null>;
  stop(): Promise<void>;
}

interface ProtocolCase {
  title: string;
  /** The plugin's protocol id in the registry. */
  protocol: 'openvpn' | 'wireguard' | 'cisco' | 'l2tp';
  /** Programs of its daemons (`/proc/<pid>/comm`) in the server namespace. */
  daemons: RegExp;
  user: Record<string, unknown>;
  connect(username: string): Promise<LiveClient>;
}

describe('polygate restart cuts no session (main server: real daemons and clients in namespaces)', function () {
  this.timeout(180_000);
  const lab = new NetLab();
  const adminKey = randomKey(32);
  const env = {
    POLYGATE_DATA_DIR: `${lab.dir}/data`,
    POLYGATE_DATABASE_URL: `sqlite:${lab.dir}/data/polygate.sqlite`,
    POLYGATE_ADMIN_API_KEY: adminKey,
    POLYGATE_PUBLIC_HOST: SERVER_IP,
    POLYGATE_OPENVPN_SUBNET_POOL: '10.8.0.0/16',
  };
  let h: Harness;
  let protocols: RunningProtocols | undefined;
  let protocolOptions: ProtocolsOptions;
  let swan: SwanClient | undefined;
  const hosts: Record<string, LocalHost> = {};
  const live: Partial<Record<ProtocolCase['protocol'], LiveClient>> = {};
  const pidsBefore: Partial<Record<ProtocolCase['protocol'], { pids: Record<string, number[]> }>> = {};
  const duringRestart: Partial<Record<ProtocolCase['protocol'], { sent: number; received: number; output: string }>> = {};
  let restarted = false;

  const api = () => ({
    get: (p: string) => h.http.get(`/api/v1${p}`).set('X-API-KEY', adminKey),
    post: (p: string, body: object = {}) => h.http.post(`/api/v1${p}`).set('X-API-KEY', adminKey).send(body),
  });
  const tick = () => h.core.accounting.tick();
  const detail = async (u: string) => (await api().get(`/users/${u}`)).body;

  async function subPage(username: string) {
    const sub = new URL((await api().get(`/users/${username}/sub`)).body.sub_url);
    const page = await h.http.get(sub.pathname + sub.search).set('Accept', 'application/json');
    expect(page.status, JSON.stringify(page.body)).to.equal(200);
    return page.body;
  }

  async function fetchText(link: string): Promise<string> {
    const url = new URL(link);
    const res = await asText(h.http.get(url.pathname + url.search));
    expect(res.status, String(res.body)).to.equal(200);
    return res.body as string;
  }

  const cases: ProtocolCase[] = [
    {
      title: 'OpenVPN',
      protocol: 'openvpn',
      daemons: /^openvpn$/,
      user: {},
      async connect(username) {
        const links = await api().get(`/users/${username}/all_ovpn_links`);
        const link = (links.body.links as Array<{ name: string; url: string }>).find((l) => l.name === 'main_udp')!;
        const client = await startOpenVpnClient(lab, hosts.ov!, username, await fetchText(link.url), [username, (await detail(username)).openvpn_password]);
        let exited = false;
        void client.proc.exited.then(() => (exited = true));
        await until(() => client.connected() || client.authFailed() || exited, 'the OpenVPN client to connect', 30_000);
        expect(client.connected(), client.lines.slice(-15).join('\n')).to.equal(true);
        return {
          username,
          host: hosts.ov!,
          target: '10.8.0.1',
          tolerance: 0.02,
          async counters() {
            const link = await client.linkBytes();
            return { up: link.write, down: link.read };
          },
          async dropped() {
            if (exited) return `the client exited:\n${client.lines.slice(-15).join('\n')}`;
            const inits = client.lines.filter((l) => l.includes('Initialization Sequence Completed')).length;
            const restarts = client.lines.filter((l) => /SIGUSR1|Restart pause|Inactivity timeout|Connection reset/.test(l));
            if (inits !== 1 || restarts.length > 0) return `the client reconnected (${inits} initialisations):\n${restarts.concat(client.lines.slice(-10)).join('\n')}`;
            return null;
          },
          stop: () => client.stop(),
        };
      },
    },
    {
      title: 'WireGuard',
      protocol: 'wireguard',
      daemons: /^wireguard-go$/,
      user: { enable_wg1: true },
      async connect(username) {
        const page = await subPage(username);
        const link = (page.protocols?.wireguard?.links as Array<{ url: string }> | undefined)?.[0];
        expect(link, JSON.stringify(page.protocols)).to.not.equal(undefined);
        const client = await startWgClient(lab, hosts.wg!, `wgk${lab.suffix}`, await fetchText(link!.url), '10.66.0.0/16');
        let exited = false;
        void client.proc.exited.then(() => (exited = true));
        expect(await ping(hosts.wg!, '10.66.0.1', 5), 'WireGuard tunnel up').to.equal(true);
        return {
          username,
          host: hosts.wg!,
          target: '10.66.0.1',
          tolerance: 0.02,
          async counters() {
            const c = await client.counters();
            return { up: c.tx, down: c.rx };
          },
          // A WireGuard "session" is the peer on the server: a new daemon or a removed peer
          // shows as lost pings and a fresh handshake, judged by the pings and the pid check.
          dropped: async () => (exited ? 'the client exited' : null),
          stop: () => client.stop(),
        };
      },
    },
    {
      title: 'Cisco AnyConnect (ocserv)',
      protocol: 'cisco',
      // Workers come and go with sessions; the daemon is main and sec-mod.
      daemons: /^ocserv-(main|sm)$/,
      user: { enable_cisco: true },
      async connect(username) {
        const cisco = (await subPage(username)).protocols?.cisco;
        expect(cisco, 'cisco card on the page').to.be.an('object');
        const password = (cisco.password ?? cisco.credentials?.password) as string;
        const profile = await fetchText((cisco.links as Array<{ url: string }>)[0]!.url);
        const client = await startOcClient(lab, lab.ns('rsoc'), profile, password, '10.12.0.0/16');
        await until(async () => (await client.up()) || client.exited(), 'the AnyConnect tunnel', 30_000, 200);
        expect(await client.up(), client.lines.filter(Boolean).slice(-6).join(' | ')).to.equal(true);
        return {
          username,
          host: hosts.oc!,
          target: '10.12.0.1',
          tolerance: 0.05,
          async counters() {
            const c = await client.counters();
            return { up: c.tx, down: c.rx };
          },
          async dropped() {
            if (client.exited()) return `the client exited: ${client.lines.filter(Boolean).slice(-6).join(' | ')}`;
            const again = client.lines.filter((l) => /reconnect/i.test(l));
            if (again.length > 0) return `the client reconnected: ${again.join(' | ')}`;
            if (!(await client.up())) return 'the tunnel lost its address';
            return null;
          },
          stop: () => client.stop(),
        };
      },
    },
    {
      title: 'IKEv2 (strongSwan)',
      protocol: 'l2tp',
      daemons: /^(charon|xl2tpd)$/,
      user: { enable_l2tp: true },
      async connect(username) {
        const card = (await subPage(username)).protocols?.l2tp;
        expect(card, 'l2tp card on the page').to.be.an('object');
        const profile = await fetchText((card.links as Array<{ url: string }>)[0]!.url);
        swan ??= await startSwanClient(lab, hosts.sw!, 'rs');
        const name = 'rs1';
        const r = await swan.connect(name, profile, card.password as string);
        expect(r.ok, r.output.split('\n').slice(-5).join(' | ')).to.equal(true);
        // The client's IKE_SA unique id (`name: #n, ESTABLISHED` at the start of a line) and its
        // CHILD_SAs' (indented, INSTALLED): the IKE_SA's changes only when the session is replaced.
        const saIds = async () => {
          const out = (await hosts.sw!.run(['swanctl', '--list-sas', '--ike', name, '--uri', `unix://${swan!.dir}/charon.vici`], { timeoutMs: 10_000 })).stdout;
          const ike = [...out.matchAll(/^(\S+): #(\d+), ESTABLISHED/gm)].map((m) => `${m[1]}#${m[2]}`).join(',');
          const child = [...out.matchAll(/^\s+(\S+): #(\d+),.*INSTALLED/gm)].map((m) => `${m[1]}#${m[2]}`).join(',');
          return `IKE ${ike} CHILD ${child}`;
        };
        const firstIds = await saIds();
        let lastIds = firstIds;
        const noted = new Set<string>();
        let carried: Counters = { up: 0, down: 0 };
        let last: Counters = { up: 0, down: 0 };
        return {
          username,
          host: hosts.sw!,
          target: INNER,
          tolerance: 0.05,
          // The client's CHILD_SA counters start again at 0 when the SA is replaced (a rekey):
          // its own total is what the SAs it replaced carried plus the current one.
          counters: async () => {
            const now = await saIds();
            const c = await swan!.counters(name);
            if (now !== lastIds) {
              carried = { up: carried.up + last.up, down: carried.down + last.down };
              lastIds = now;
            }
            last = { up: c.tx, down: c.rx };
            return { up: carried.up + c.tx, down: carried.down + c.rx };
          },
          dropped: async () => {
            if (!(await swan!.established(name))) return 'the IKE_SA is gone';
            const now = await saIds();
            const ikeOf = (ids: string) => ids.split(' CHILD ')[0];
            if (ikeOf(now) !== ikeOf(firstIds)) return `the IKE_SA was replaced: before ${firstIds}, now ${now}`;
            // A CHILD_SA rekey keeps the session (no packet lost); said, not failed.
            if (now !== firstIds && !noted.has(now)) {
              noted.add(now);
              console.log(`      (IKEv2: the CHILD_SA was replaced, the IKE_SA kept: before ${firstIds}, now ${now})`);
            }
            return null;
          },
          stop: () => swan!.terminate(name),
        };
      },
    },
  ];

  async function notDropped(c: LiveClient): Promise<void> {
    const why = await c.dropped();
    if (why !== null) throw new Error(why);
  }

  /** Moves traffic, lets every counter settle, and compares the user's usage with the client's own counters. */
  async function accountedOnce(c: LiveClient, what: string): Promise<Counters> {
    expect(await ping(c.host, c.target, 300, 1000, 0.005), `${what}: traffic through the tunnel`).to.equal(true);
    await new Promise((r) => setTimeout(r, 2500));
    await tick();
    const own = await c.counters();
    await tick();
    const d = await detail(c.username);
    expect(own.up, `${what}: the client sent something`).to.be.greaterThan(300_000);
    expect(d.upload_bytes, `${what}: upload vs the client's own counter`).to.be.closeTo(own.up, own.up * c.tolerance);
    expect(d.download_bytes, `${what}: download vs the client's own counter`).to.be.closeTo(own.down, own.down * c.tolerance);
    return own;
  }

  before(async function () {
    const missing = vpnLabMissing([
      ['openvpn', '--version'],
      ['wg', '--version'],
      ['wireguard-go', '--version'],
      ['ocserv', '--version'],
      ['occtl', '--version'],
      ['openconnect', '--version'],
      ['/usr/lib/ipsec/charon', '--version'],
      ['swanctl', '--help'],
      ['sh', '-c', 'command -v xl2tpd'],
      ['unshare', '--version'],
    ]);
    requirePrerequisite(this, missing === null, missing ?? '');
    const srv = await lab.addNamespace('rss');
    for (const [i, role] of ['ov', 'wg', 'oc', 'sw'].entries()) {
      hosts[role] = await lab.addNamespace(`rs${role}`);
      if (i === 0) {
        lab.link('rss', SERVER_IP, `rs${role}`, '10.99.121.2');
      } else {
        lab.link('rss', `10.99.${121 + i}.1`, `rs${role}`, `10.99.${121 + i}.2`);
        lab.route(`rs${role}`, '10.99.121.0/24', `10.99.${121 + i}.1`);
      }
    }
    execFileSync('ip', ['-n', lab.ns('rss'), 'addr', 'add', `${INNER}/32`, 'dev', 'lo']);
    h = await createHarness('sqlite', env, { protocols: 'none', persistent: true });
    protocolOptions = {
      host: srv,
      plugins: ['openvpn', 'wireguard', 'ocserv', 'l2tp-ipsec'],
      pluginConfig: {
        openvpn: { keepaliveInterval: 1, keepaliveTimeout: 6, restartInitialMs: 200, bytecountIntervalSec: 1 },
        wireguard: { interfacePrefix: `wr${lab.suffix}`, restartInitialMs: 200, persistentKeepalive: 5 },
        ocserv: { device: `or${lab.suffix}`, restartInitialMs: 200, maxBanScore: 0 },
        'l2tp-ipsec': { userspaceEsp: true, trafficSelectors: [`${INNER}/32`], chapSecretsPath: `${lab.dir}/chap-secrets`, restartInitialMs: 200 },
      },
      reconciler: { debounceMs: 50 },
    };
    protocols = await startProtocols(h.core, protocolOptions);
  });

  after(async function () {
    this.timeout(60_000);
    for (const c of Object.values(live)) await c.stop().catch(() => undefined);
    await swan?.stop().catch(() => undefined);
    // Not a shutdown: the detached daemons on every host end with the test.
    await protocols?.stop({ stopDaemons: true }).catch(() => undefined);
    await h?.close().catch(() => undefined);
    await endNamespaceProcesses(['rss', 'rsov', 'rswg', 'rsoc', 'rssw'].map((r) => lab.ns(r)));
    await lab.cleanup();
  });

  for (const c of cases) {
    it(`${c.title}: a user created through the API connects with what the API serves and is accounted before the restart`, async () => {
      const plugin = h.core.plugins.get(c.protocol, 'main');
      expect(plugin?.state, `${c.protocol}: ${plugin?.reason}`).to.equal('available');
      const username = `rs${c.protocol}`;
      const res = await api().post('/users', { username, ...c.user });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      await protocols!.reconciler.idle();
      const client = await c.connect(username);
      live[c.protocol] = client;
      await accountedOnce(client, 'before the restart');
      pidsBefore[c.protocol] = { pids: daemonPids(lab.ns('rss'), c.daemons) };
      expect(Object.keys(pidsBefore[c.protocol]!.pids), 'its daemon runs in the server namespace').to.have.length.greaterThan(0);
    });
  }

  it('polygate is stopped as SIGTERM stops it (plugins detached) and a new one starts on the same data dir and database; clients keep pinging throughout', async () => {
    const pings: Array<[ProtocolCase['protocol'], PingRun]> = [];
    for (const [protocol, c] of Object.entries(live) as Array<[ProtocolCase['protocol'], LiveClient]>) pings.push([protocol, startPing(c.host, c.target)]);
    try {
      await new Promise((r) => setTimeout(r, 1000));
      await protocols!.stop();
      protocols = undefined;
      await h.close();
      // The panel stays down a while: sessions go on with nobody watching.
      await new Promise((r) => setTimeout(r, 3000));
      h = await createHarness('sqlite', env, { protocols: 'none', persistent: true });
      protocols = await startProtocols(h.core, protocolOptions);
      await protocols.reconciler.idle();
      restarted = true;
      await tick();
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      for (const [protocol, run] of pings) duringRestart[protocol] = await run.stop();
    }
    for (const c of cases) {
      const plugin = h.core.plugins.get(c.protocol, 'main');
      expect(plugin?.state, `${c.protocol} after the restart: ${plugin?.reason}`).to.equal('available');
    }
  });

  for (const c of cases) {
    it(`${c.title}: after the restart the same daemon runs (same pids), the client was never dropped, pings went through during and after, and usage equals the client's counters once`, async function () {
      const client = live[c.protocol];
      if (!client || !pidsBefore[c.protocol]) throw new Error(`${c.title} was not connected before the restart (see its first test)`);
      expect(restarted, 'the restart test ran').to.equal(true);
      const findings = new Findings();
      findings.same('same daemons (adopted, not restarted; pids by program)', daemonPids(lab.ns('rss'), c.daemons), pidsBefore[c.protocol]!.pids);
      await findings.check('pings during the restart', () => {
        const during = duringRestart[c.protocol]!;
        const summary = during.output.trim().split('\n').slice(-2).join(' ');
        expect(during.sent, summary).to.be.greaterThan(15);
        // One echo may still be in flight when ping is interrupted.
        expect(during.received, summary).to.be.at.least(during.sent - 1);
      });
      await findings.check('the session right after the restart', async () => notDropped(client));
      await findings.check('usage after more traffic', () => accountedOnce(client, 'after the restart'));
      await findings.check('the session after more traffic', async () => notDropped(client));
      await findings.check('online in the API', async () => {
        const online = await detail(client.username);
        expect([online.is_online, online.active_connections]).to.deep.equal([true, 1]);
      });
      findings.assertNone();
    });
  }
});
