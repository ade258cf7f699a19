import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { parseStatusText, type DesiredState } from '../../core';
import { LocalHost } from '../../core/hosts/local-host';
import { createPanelPki } from '../../core/pki';
import type { SessionEnded, SessionPoll } from '../../core/plugin/types';
import ocservPlugin, { type OcservPlugin } from '../../plugins/ocserv';
import { conformanceContext } from '../conformance/plugin-conformance';
import { startOcClient, type OcTestClient } from '../fixtures/ocserv/oc-client';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, until, vpnLabMissing } from '../helpers/vpn-lab';

/*
 * The ocserv plugin outlives the panel, with the real thing: ocserv in a network namespace this
 * suite creates and real openconnect clients in another (veth 10.99.97.0/24). Proves: (a) an
 * instance that detaches leaves ocserv and the clients' sessions running (the tunnel carries
 * traffic with no instance attached); the next instance on the same host and state dir, applying
 * the same state, adopts the same ocserv (same wrapper pid, same epoch, same ocserv main pid: not
 * restarted, sockets kept) and polls the same session key with counters that kept growing; the
 * client never reconnected. (b) A session that ends while no instance is attached leaves a record
 * (the disconnect script) that the next instance reports through sessionEnded once, with the key
 * the session had in polls and its final counters, and deletes only after. (c) ocserv killed from
 * outside is restarted by the adopting instance under a new epoch, and logins work again.
 * (d) stop() of the adopting instance ends ocserv. (e) An instance applying another configuration
 * than the one ocserv left running serves restarts it with the applied one. Skips (printing why) without root or binaries.
 */

const SERVER_IP = '10.99.97.1';
const CLIENT_IP = '10.99.97.2';
const POOL = '10.13.0.0/16';
/** ocserv's own address in the pool (predictable-ips: the network's first host). */
const TUNNEL_SERVER = '10.13.0.1';
const BINARIES = [['ocserv', '--version'], ['occtl', '--version'], ['openconnect', '--version'], ['openssl', 'version']];

const alive = (pid: number) => fs.readFile(`/proc/${pid}/stat`, 'utf8').then((s) => !/\) Z /.test(s), () => false);
const startTimeOf = async (pid: number) => (await fs.readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')[19];
const sessionsOf = (poll: SessionPoll) => {
  if (poll.kind !== 'status-text') throw new Error(`poll kind ${poll.kind}`);
  return poll.texts.flatMap((t) => parseStatusText({ format: 'ocserv-json', protocol: 'cisco', text: t.text }).sessions.map((s) => ({ ...s, key: `${t.scope}:${s.id}` })));
};

describe('ocserv plugin: detach, adoption and durable ended sessions (integration, network namespaces)', function () {
  this.timeout(120_000);
  const lab = new NetLab();
  let server: LocalHost;
  let pki: ReturnType<typeof createPanelPki>;
  let stateDir: string;
  const instances: OcservPlugin[] = [];
  const clients: OcTestClient[] = [];
  /** Every wrapper and ocserv pid this suite saw, killed in after() should a test fail with one running. */
  const pids = new Set<number>();

  const state = (): DesiredState => ({
    listeners: [
      { port: 443, protocol: 'tcp' },
      { port: 443, protocol: 'udp' },
    ],
    users: [
      { username: 'ad_alice', password: 'Alice-pass1', material: {} },
      { username: 'ad_bob', password: 'Bob-pass1', material: {} },
      { username: 'ad_carol', password: 'Carol-pass1', material: {} },
    ],
    settings: {},
  });
  const passwordOf = (name: string) => state().users.find((u) => u.username === name)!.password!;

  /** A fresh plugin instance on the same host and state dir, as a restarted panel makes it. */
  const instance = (sessionEnded: (e: SessionEnded) => Promise<void>): OcservPlugin => {
    const ctx = conformanceContext({
      config: ocservPlugin.configSchema.parse({ device: `oa${lab.suffix}`, restartInitialMs: 200, maxBanScore: 0 }),
      host: server,
      stateDir,
      serverId: 'main',
      clientPool: POOL,
      pki,
    });
    const oc = ocservPlugin.create({ ...ctx, sessionEnded }) as OcservPlugin;
    instances.push(oc);
    return oc;
  };
  const ocservPidOf = async (oc: OcservPlugin) => Number((await fs.readFile(oc.paths.pid, 'utf8')).trim());
  const remember = async (oc: OcservPlugin) => {
    const d = oc.describe();
    if (d.pid !== undefined) pids.add(d.pid);
    pids.add(await ocservPidOf(oc));
  };
  const records = async () => (await fs.readdir(`${stateDir}/ended`)).filter((n) => n.endsWith('.rec') && !n.startsWith('.'));
  const connect = async (oc: OcservPlugin, username: string): Promise<OcTestClient> => {
    const profile = await oc.renderClientConfig({ username, material: {} }, [{ host: SERVER_IP, port: 443, protocol: 'tcp' }]);
    const c = await startOcClient(lab, lab.ns('oac'), profile, passwordOf(username), POOL);
    clients.push(c);
    await until(() => c.up(), `${username}'s tunnel to come up (${c.lines.slice(-3).join(' | ')})`, 30_000, 200);
    return c;
  };
  const traffic = (count: number) =>
    execFileSync('ip', ['netns', 'exec', lab.ns('oac'), 'ping', '-q', '-c', String(count), '-i', '0.01', '-s', '500', '-W', '2', TUNNEL_SERVER], { stdio: 'ignore' });

  let alice: OcTestClient;
  let aliceKey = '';
  let bobKey = '';
  let b: OcservPlugin;
  const endedA: SessionEnded[] = [];
  const endedB: SessionEnded[] = [];
  /** Whether the record was still on the host when B's sessionEnded got it. */
  const recordPresentAtReport: boolean[] = [];

  before(async function () {
    const missing = vpnLabMissing(BINARIES);
    requirePrerequisite(this, missing === null, missing ?? '');
    server = await lab.addNamespace('oas');
    await lab.addNamespace('oac');
    lab.link('oas', SERVER_IP, 'oac', CLIENT_IP);
    pki = createPanelPki({ host: new LocalHost(), dir: `${lab.dir}/pki` });
    stateDir = `${lab.dir}/ocserv`;
  });

  after(async () => {
    for (const c of clients) await c.stop().catch(() => undefined);
    for (const oc of instances) await oc.stop().catch(() => undefined);
    for (const pid of pids) if (await alive(pid)) process.kill(pid, 'SIGKILL');
    await lab.cleanup();
  });

  it('(a, b) detach leaves ocserv and its sessions running; the next instance adopts the same ocserv and session keys, and reports a session that ended meanwhile once', async () => {
    const a = instance(async (e) => void endedA.push(e));
    await a.apply(state());
    await remember(a);
    const first = a.describe();
    expect(first.adopted).to.equal(false);
    expect(first.epoch).to.equal(`${first.pid}.${await startTimeOf(first.pid!)}`);
    const ocservPid = await ocservPidOf(a);

    alice = await connect(a, 'ad_alice');
    const bob = await connect(a, 'ad_bob');
    traffic(50);
    const before = sessionsOf(await a.pollSessions());
    expect(before.map((s) => s.username).sort()).to.deep.equal(['ad_alice', 'ad_bob']);
    aliceKey = before.find((s) => s.username === 'ad_alice')!.key;
    bobKey = before.find((s) => s.username === 'ad_bob')!.key;
    expect(aliceKey).to.match(new RegExp(`^main:${first.epoch!.replace('.', '\\.')}:\\d+$`));
    const aliceBefore = before.find((s) => s.username === 'ad_alice')!;

    await a.detach();
    expect(a.describe().pid).to.equal(undefined);
    expect(await alive(first.pid!), 'the wrapper outlives the detached instance').to.equal(true);
    expect(await alive(ocservPid), 'ocserv outlives the detached instance').to.equal(true);
    await a.pollSessions().then(
      () => expect.fail('a detached instance does not poll'),
      (e: Error) => expect(e.message).to.match(/not started/),
    );
    // The tunnel works with no instance attached at all.
    traffic(50);
    // bob leaves while nobody watches: only the disconnect script can count his last bytes.
    const bobOwn = await bob.counters();
    await bob.stop();
    await until(async () => (await records()).length === 1, 'bob\'s disconnect record', 15_000, 100);
    expect((await records())[0]).to.equal(`${first.epoch}-${bobKey.split(':').pop()}.rec`);

    b = instance(async (e) => {
      recordPresentAtReport.push((await records()).length > 0);
      endedB.push(e);
    });
    await b.apply(state());
    await remember(b);
    const adopted = b.describe();
    expect(adopted).to.deep.include({ pid: first.pid, epoch: first.epoch, adopted: true, scope: first.scope });
    expect(await ocservPidOf(b), 'ocserv was not restarted').to.equal(ocservPid);

    traffic(50);
    const after = sessionsOf(await b.pollSessions());
    expect(after.map((s) => s.key)).to.deep.equal([aliceKey]);
    expect(after[0]!.rxBytes).to.be.greaterThan(aliceBefore.rxBytes);
    expect(after[0]!.txBytes).to.be.greaterThan(aliceBefore.txBytes);
    // The client never noticed: still up, never reconnected.
    expect(alice.exited()).to.equal(false);
    expect(await alice.up()).to.equal(true);
    expect(alice.lines.join('\n')).to.not.match(/reconnect/i);

    expect(endedA).to.deep.equal([]);
    expect(endedB.map((e) => e.session.sessionKey)).to.deep.equal([bobKey]);
    const bobEnded = endedB[0]!.session;
    expect(bobEnded.username).to.equal('ad_bob');
    expect(bobEnded.rxBytes, 'bob\'s upload vs his tunnel tx').to.be.closeTo(bobOwn.tx, bobOwn.tx * 0.05 + 200);
    expect(recordPresentAtReport, 'the record was kept until the panel held it').to.deep.equal([true]);
    expect(await records(), 'and deleted after').to.deep.equal([]);
    await b.pollSessions();
    expect(endedB, 'not again on the next poll').to.have.length(1);
  });

  it('(c) ocserv killed from outside is restarted by the adopting instance under a new epoch, and logins work again', async () => {
    const before = b.describe();
    const ocservPid = await ocservPidOf(b);
    process.kill(ocservPid, 'SIGKILL');
    await until(() => b.describe().epoch !== undefined && b.describe().epoch !== before.epoch, 'ocserv to be restarted', 20_000, 100);
    await until(async () => b.pollSessions().then(() => true, () => false), 'occtl to answer again', 20_000, 200);
    await remember(b);
    const now = b.describe();
    expect(now.pid).to.not.equal(before.pid);
    expect(now.adopted).to.equal(false);
    expect(now.scope).to.not.equal(before.scope);
    await until(() => alice.exited() || alice.up().then((up) => !up), 'alice\'s client to notice', 30_000, 200);
    await alice.stop();
    await connect(b, 'ad_carol');
    const sessions = sessionsOf(await b.pollSessions());
    expect(sessions.map((s) => s.username)).to.deep.equal(['ad_carol']);
    expect(sessions[0]!.key.startsWith(`main:${now.epoch}:`)).to.equal(true);
  });

  it('(d) stop() of the adopting instance ends ocserv with SIGTERM passed on by the wrapper, so carol\'s session is recorded and reported', async () => {
    const { pid: wrapperPid, epoch } = b.describe();
    const ocservPid = await ocservPidOf(b);
    const reported = endedB.length;
    const started = Date.now();
    await b.stop();
    // Well under the supervisor's 10 s before SIGKILL: ocserv itself got the SIGTERM.
    expect(Date.now() - started).to.be.below(8_000);
    expect(await alive(wrapperPid!)).to.equal(false);
    expect(await alive(ocservPid)).to.equal(false);
    const carol = endedB.slice(reported);
    expect(carol.map((e) => e.session.username)).to.deep.equal(['ad_carol']);
    expect(carol[0]!.session.sessionKey.startsWith(`main:${epoch}:`)).to.equal(true);
  });

  it('(e) an instance whose configuration differs from the one ocserv left running serves restarts it with the applied one (a requested restart: no crash counted)', async () => {
    const c = instance(async () => undefined);
    await c.apply(state());
    await remember(c);
    const left = c.describe();
    await c.detach();
    const d = instance(async () => undefined);
    await d.apply({ ...state(), listeners: [{ port: 8443, protocol: 'tcp' }] });
    await remember(d);
    const now = d.describe();
    expect(await alive(left.pid!)).to.equal(false);
    expect(now.pid).to.not.equal(left.pid);
    expect(now.epoch).to.not.equal(left.epoch);
    expect(now.restarts, 'a requested restart, not a crash').to.equal(0);
    expect(await fs.readFile(d.paths.conf, 'utf8')).to.match(/^tcp-port = 8443$/m);
    const listening = (await server.run(['ss', '-Hltn', 'sport = :8443'], { timeoutMs: 5_000 })).stdout;
    expect(listening).to.include(':8443');
    await d.stop();
    expect(await alive(now.pid!)).to.equal(false);
  });
});
