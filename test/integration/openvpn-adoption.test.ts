import { expect } from 'chai';
import { existsSync, promises as fs } from 'node:fs';
import { ManualClock } from '../../core/clock';
import { parseStatusText, type DesiredState } from '../../core';
import { LocalHost } from '../../core/hosts/local-host';
import { logger } from '../../core/logger';
import { createPanelPki, type OpensslPanelPki } from '../../core/pki';
import type { PluginContext, SessionEnded, SessionPoll } from '../../core/plugin/types';
import openvpnPlugin, { openVpnConfigSchema, parseEndedRecord, type OpenVpnConfig, type OpenVpnPlugin } from '../../plugins/openvpn';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, ping, startOpenVpnClient, until, vpnLabMissing, type OpenVpnTestClient } from '../helpers/vpn-lab';

/*
 * The OpenVPN plugin outlives the panel, with the real thing: an OpenVPN 2.6 server in one
 * network namespace this suite creates and a real client in another (veth 10.99.94.0/24).
 * Proves: (a) an instance that detaches leaves the daemon and the client's session running, and
 * the next instance on the same host and state dir adopts the same daemon (same pid and epoch)
 * without the client reconnecting; its poll shows the same session key with counters that kept
 * growing, nothing is reported ended, a login that waited while no instance was attached is
 * decided at once, a new login is decided by the new instance, and a cut by session key ends
 * exactly that session (a key of another daemon run cuts nothing). (b) A
 * session that ends while no instance is attached leaves a record on the host (the
 * client-disconnect hook); the next instance reports it through sessionEnded with the key the
 * session had in polls and its final counters, keeps the record while the panel refuses it,
 * and deletes it only once sessionEnded resolved. (c) stop() of an adopted instance ends the
 * daemon (SIGTERM: the hook records its clients). (d) A daemon running with another config is
 * restarted, not adopted, and stop() without apply ends a daemon an earlier panel left running.
 * (e) SIGKILL runs no hook; the next instance starts a new run with a new epoch in its keys.
 * The hook itself runs no value and lets no value add a line to a record. Skips (printing why)
 * without root or binaries.
 */

const SRV_IP = '10.99.94.1';
const CLI_IP = '10.99.94.2';
/** The first instance's subnet is the first /24 of the pool; the server holds its first address. */
const TUN_SERVER_IP = '10.8.0.1';

const alive = (pid: number) => fs.readFile(`/proc/${pid}/stat`, 'utf8').then((s) => !/\) Z /.test(s), () => false);
const sessionsOf = (poll: SessionPoll) => {
  if (poll.kind !== 'status-text') throw new Error(`poll kind ${poll.kind}`);
  return poll.texts.flatMap((t) => parseStatusText({ format: 'openvpn-status3', protocol: 'openvpn', text: t.text }).sessions.map((s) => ({ ...s, key: `${t.scope}:${s.id}` })));
};

describe('OpenVPN plugin: detach, adoption and durable ended sessions (integration, network namespaces)', function () {
  this.timeout(120_000);
  const lab = new NetLab();
  let serverHost: LocalHost;
  let clientHost: LocalHost;
  let pki: OpensslPanelPki;
  let crl: string;
  let stateDir: string;
  /** Every daemon pid this suite saw, killed in after() should a test fail with one still running. */
  const daemonPids = new Set<number>();
  const instances: OpenVpnPlugin[] = [];

  const state = (): DesiredState => ({
    listeners: [{ port: 1194, protocol: 'udp' }],
    users: [
      { username: 'alice', password: 'pw-alice', material: {} },
      { username: 'bob', password: 'pw-bob', material: {} },
      { username: 'carol', password: 'pw-carol', material: {} },
    ],
    settings: { pki_crl: crl },
  });

  /** A fresh plugin instance on the same host and state dir, as a restarted panel makes it. */
  const instance = (sessionEnded: PluginContext<OpenVpnConfig>['sessionEnded'], config: Partial<OpenVpnConfig> = {}): OpenVpnPlugin => {
    const ctx: PluginContext<OpenVpnConfig> = {
      host: serverHost,
      config: openVpnConfigSchema.parse({ bytecountIntervalSec: 1, restartInitialMs: 200, keepaliveInterval: 2, keepaliveTimeout: 30, ...config }),
      logger,
      clock: new ManualClock(),
      serverId: 'main',
      stateDir,
      clientPool: '10.8.0.0/16',
      pki,
      authorize: async () => ({ allowed: true }),
      sessionEnded,
    };
    const vpn = openvpnPlugin.create(ctx) as OpenVpnPlugin;
    instances.push(vpn);
    return vpn;
  };
  const remember = (vpn: OpenVpnPlugin) => {
    for (const d of vpn.describe()) if (d.pid !== undefined) daemonPids.add(d.pid);
  };
  const records = async () => (await fs.readdir(`${stateDir}/ended`)).filter((n) => n.endsWith('.rec') && !n.startsWith('.'));

  let alice: OpenVpnTestClient;
  let aliceExited = false;
  let aliceKey = '';
  let lastPolled = { rx: 0, tx: 0, connectedAt: 0 };
  let daemonPid = 0;
  let daemonEpoch: string | undefined;
  let b: OpenVpnPlugin;
  const endedA: SessionEnded[] = [];
  const endedB: SessionEnded[] = [];
  /** What the third instance's sessionEnded got, and whether the record was still on the host then. */
  const reports: Array<{ ended: SessionEnded; recordPresent: boolean; accepted: boolean }> = [];
  const recordsAtReport: string[][] = [];

  before(async function () {
    const missing = vpnLabMissing([['openvpn', '--version'], ['openssl', 'version']]);
    requirePrerequisite(this, missing === null, missing ?? '');
    serverHost = await lab.addNamespace('ads');
    clientHost = await lab.addNamespace('adc');
    lab.link('ads', SRV_IP, 'adc', CLI_IP);
    pki = createPanelPki({ host: new LocalHost(), dir: `${lab.dir}/pki` }) as OpensslPanelPki;
    crl = await pki.crl();
    stateDir = `${lab.dir}/ovpn`;
  });

  after(async () => {
    for (const vpn of instances) await vpn.stop().catch(() => undefined);
    for (const pid of daemonPids) {
      if (await alive(pid)) process.kill(pid, 'SIGKILL');
    }
    await lab.cleanup();
  });

  it('(a) detach leaves openvpn and the client running; the next instance adopts the same daemon and session key, counters keep growing, nothing ended', async () => {
    const a = instance(async (e) => void endedA.push(e));
    await a.apply(state());
    remember(a);
    const [first] = a.describe();
    expect(first).to.deep.include({ key: '1194udp', adopted: false, managementConnected: true });
    daemonPid = first!.pid!;
    daemonEpoch = first!.epoch;
    expect(daemonEpoch).to.equal(`${daemonPid}.${(await fs.readFile(`/proc/${daemonPid}/stat`, 'utf8')).split(') ')[1]!.split(' ')[19]}`);

    const profile = await a.renderClientConfig({ username: 'alice', material: {} }, [{ host: SRV_IP, port: 1194, protocol: 'udp' }]);
    alice = await startOpenVpnClient(lab, clientHost, 'alice', profile, ['alice', 'pw-alice']);
    void alice.proc.exited.then(() => (aliceExited = true));
    await until(() => alice.connected(), 'alice connected', 30_000);
    expect(await ping(clientHost, TUN_SERVER_IP, 3)).to.equal(true);
    const before = sessionsOf(await a.pollSessions());
    expect(before).to.have.length(1);
    aliceKey = before[0]!.key;
    expect(aliceKey).to.equal(`main:1194udp:${daemonEpoch}:${before[0]!.id.split(':')[1]}:${before[0]!.connectedAt}`);
    expect(aliceKey).to.match(/^main:1194udp:\d+\.\d+:10\.8\.0\.\d+:\d+$/);

    await a.detach();
    expect(a.describe()).to.deep.equal([]);
    expect(await alive(daemonPid), 'openvpn outlives the detached instance').to.equal(true);
    // The tunnel works with no panel attached at all.
    expect(await ping(clientHost, TUN_SERVER_IP, 3)).to.equal(true);
    // A login now waits: OpenVPN asks no one (management-client-auth), and never asks again.
    const carol = await startOpenVpnClient(lab, clientHost, 'carol', await a.renderClientConfig({ username: 'carol', material: {} }, [{ host: SRV_IP, port: 1194, protocol: 'udp' }]), ['carol', 'pw-carol']);
    await new Promise((r) => setTimeout(r, 3000));
    expect(carol.connected(), 'no login is allowed while nobody decides').to.equal(false);

    b = instance(async (e) => void endedB.push(e));
    const attachedAt = Date.now();
    await b.apply(state());
    remember(b);
    // The next instance restarts the login that went unanswered, so it is decided now rather than
    // after the client's own timeout (about a minute).
    await until(() => carol.connected(), 'carol connected after the next instance attached', 20_000);
    expect(Date.now() - attachedAt).to.be.below(20_000);
    await carol.stop();
    await until(() => endedB.some((e) => e.session.username === 'carol'), 'carol reported ended', 20_000);
    const [adopted] = b.describe();
    expect(adopted).to.deep.include({ key: '1194udp', pid: daemonPid, epoch: daemonEpoch, adopted: true, managementConnected: true });
    expect(await ping(clientHost, TUN_SERVER_IP, 5)).to.equal(true);
    const after = sessionsOf(await b.pollSessions());
    expect(after.map((s) => s.key)).to.deep.equal([aliceKey]);
    expect(after[0]!.rxBytes).to.be.greaterThan(before[0]!.rxBytes);
    expect(after[0]!.txBytes).to.be.greaterThan(before[0]!.txBytes);
    expect(after[0]!.connectedAt).to.equal(before[0]!.connectedAt);
    lastPolled = { rx: after[0]!.rxBytes, tx: after[0]!.txBytes, connectedAt: after[0]!.connectedAt };

    // The client never noticed: one tunnel setup, no restart, still running.
    expect(aliceExited).to.equal(false);
    expect(alice.lines.filter((l) => l.includes('Initialization Sequence Completed'))).to.have.length(1);
    expect(alice.lines.join('\n')).to.not.match(/SIGUSR1|Restart pause|Connection reset/);
    expect(endedA).to.deep.equal([]);
    expect(endedB.map((e) => e.session.username)).to.deep.equal(['carol']);

    // The adopting instance decides new logins, and bytecount is on again (the tracked counters move).
    const bob = await startOpenVpnClient(lab, clientHost, 'bob', await b.renderClientConfig({ username: 'bob', material: {} }, [{ host: SRV_IP, port: 1194, protocol: 'udp' }]), ['bob', 'pw-bob']);
    let bobExited = false;
    void bob.proc.exited.then(() => (bobExited = true));
    await until(() => bob.connected(), 'bob connected to the adopted daemon', 30_000);
    // Cut by its session key, as enforcement does: a key of another daemon run or a foreign
    // scope cuts nothing.
    const bobKey = sessionsOf(await b.pollSessions()).find((s) => s.username === 'bob')!.key;
    await b.disconnect({ sessionKey: bobKey.replace(`:${daemonEpoch}:`, ':1.2:') });
    await b.disconnect({ sessionKey: bobKey.replace(/:(\d+)$/, ':1') });
    let unknown: unknown;
    await b.disconnect({ sessionKey: bobKey.replace('main:1194udp', 'main:1195udp') }).catch((e: unknown) => (unknown = e));
    expect((unknown as { kind?: string })?.kind).to.equal('not_found');
    await new Promise((r) => setTimeout(r, 1000));
    expect(bobExited, 'bob is still connected').to.equal(false);
    await b.disconnect({ sessionKey: bobKey });
    await until(() => endedB.some((e) => e.session.username === 'bob'), 'bob reported ended', 20_000);
    expect(endedB.find((e) => e.session.username === 'bob')!.session.sessionKey).to.equal(bobKey);
    await until(() => bobExited, 'bob told to exit (HALT)', 15_000);
    expect(endedB.filter((e) => e.session.username !== 'carol' && e.session.username !== 'bob')).to.deep.equal([]);
  });

  it('the disconnect hook lets nothing a client controls reach a shell or add a line to a record', async () => {
    const dir = `${lab.dir}/hook-check`;
    const marker = `${lab.dir}/pwned`;
    await fs.mkdir(dir, { recursive: true });
    const hook = `${stateDir}/hooks/client-disconnect.sh`;
    const run = (env: Record<string, string>) =>
      new LocalHost().run(['env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'sh', hook, dir, '1194udp'], { timeoutMs: 10_000 });
    const base = { common_name: 'okuser', time_unix: '1796222444', bytes_received: '10', bytes_sent: '20', ifconfig_pool_remote_ip: '10.8.0.9', trusted_ip: '10.99.94.2', trusted_port: '5000' };
    // Refused, no record: a CN with a line break and shell syntax (our CA never issues one), a
    // virtual address with a command, a counter that is not digits.
    expect((await run({ ...base, common_name: `x\nrx=999999$(touch ${marker})` })).code).to.equal(0);
    expect((await run({ ...base, ifconfig_pool_remote_ip: `10.8.0.10;touch ${marker}` })).code).to.equal(0);
    expect((await run({ ...base, bytes_sent: '1e9' })).code).to.equal(0);
    // Kept as data: a value the record does not interpret.
    expect((await run({ ...base, trusted_port: `\`touch ${marker}\`` })).code).to.equal(0);
    const names = (await fs.readdir(dir)).filter((n) => !n.startsWith('.'));
    expect(names).to.have.length(1);
    const text = await fs.readFile(`${dir}/${names[0]}`, 'utf8');
    expect(text).to.include(`remote=10.99.94.2:\`touch ${marker}\``);
    expect(existsSync(marker), 'no value was run').to.equal(false);
    const ended = parseEndedRecord(text, 'main', (p, t) => `main:${p}${t}`);
    expect(ended?.session).to.deep.include({ username: 'okuser', rxBytes: 10, txBytes: 20, remoteAddress: '', connectedAt: 1796222444 });
    expect(ended?.session.sessionKey).to.match(/^main:1194udp:\d+\.\d+:10\.8\.0\.9:1796222444$/);
  });

  it('(b) a session that ends while no instance is attached leaves a record; the next instance reports it with the same key and final counters, and deletes it only after sessionEnded resolved', async () => {
    await b.detach();
    // More traffic after the last poll: the final counters must include it.
    expect(await ping(clientHost, TUN_SERVER_IP, 3)).to.equal(true);
    await fs.rm(`${stateDir}/ended`, { recursive: true, force: true }).then(() => fs.mkdir(`${stateDir}/ended`, { mode: 0o700 }));
    await alice.stop();
    await until(async () => (await records()).length === 1, 'the disconnect hook record', 30_000);
    const [name] = await records();
    const text = await fs.readFile(`${stateDir}/ended/${name}`, 'utf8');
    expect(text).to.match(/^v=1\ninstance=1194udp\nepoch=\d+\.\d+\n[^]*\ncn=alice\n$/);
    expect(name!.startsWith(`${daemonEpoch}-`)).to.equal(true);

    const c = instance(async (e) => {
      const recordPresent = existsSync(`${stateDir}/ended/${name}`);
      recordsAtReport.push(await records());
      const accepted = reports.length > 0;
      reports.push({ ended: e, recordPresent, accepted });
      if (!accepted) throw new Error('the panel could not store it (test)');
    });
    await c.apply(state());
    remember(c);
    expect(c.describe()[0]).to.deep.include({ pid: daemonPid, epoch: daemonEpoch, adopted: true });
    expect(sessionsOf(await c.pollSessions())).to.deep.equal([]);
    await until(() => reports.length === 1, 'the record reported (and refused)', 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(await records(), 'a refused record stays on the host').to.deep.equal([name]);

    await c.pollSessions();
    await until(async () => (await records()).length === 0, 'the record deleted after it was taken', 10_000);
    expect(reports).to.have.length(2);
    expect(reports.map((r) => r.recordPresent), 'the file existed while sessionEnded ran').to.deep.equal([true, true]);
    const final = reports[1]!.ended;
    expect(final.reason).to.equal('disconnected');
    expect(final.session).to.deep.include({ sessionKey: aliceKey, username: 'alice', serverId: 'main', protocol: 'openvpn', connectedAt: lastPolled.connectedAt });
    expect(final.session.remoteAddress.startsWith(`${CLI_IP}:`)).to.equal(true);
    expect(final.session.rxBytes).to.be.greaterThan(lastPolled.rx);
    expect(final.session.txBytes).to.be.greaterThan(lastPolled.tx);
    // Taken once: later folds do not report it again.
    await c.pollSessions();
    await new Promise((r) => setTimeout(r, 500));
    expect(reports).to.have.length(2);
    b = c;
  });

  it('(c) stop() of an adopted instance stops openvpn (SIGTERM: the hook records the clients it had, and stop() folds the records)', async () => {
    const c = b;
    const profile = await c.renderClientConfig({ username: 'bob', material: {} }, [{ host: SRV_IP, port: 1194, protocol: 'udp' }]);
    const bob = await startOpenVpnClient(lab, clientHost, 'bob2', profile, ['bob', 'pw-bob']);
    await until(() => bob.connected(), 'bob connected', 30_000);
    const [live] = sessionsOf(await c.pollSessions());
    expect(live?.username).to.equal('bob');
    const from = reports.length;
    await c.stop();
    expect(await alive(daemonPid), 'openvpn is gone after stop()').to.equal(false);
    expect(c.describe()).to.deep.equal([]);
    const mine = reports.slice(from).filter((r) => r.ended.session.sessionKey === live!.key);
    // One from the management DISCONNECT, one from the hook's record (folded by stop()).
    expect(mine.length).to.be.at.least(2);
    const recordName = `${live!.key.split(':').slice(2, 3)[0]}-${live!.key.split(':')[3]}-${live!.connectedAt}.rec`;
    expect(recordsAtReport.slice(from).some((names) => names.includes(recordName)), 'the hook wrote a record on SIGTERM').to.equal(true);
    for (const r of mine) expect(r.ended.session.rxBytes).to.be.at.least(live!.rxBytes);
    expect(await records(), 'nothing is left on the host').to.deep.equal([]);
    await bob.stop();
  });

  it('(d) a daemon running with another config than the new instance renders is restarted, not adopted; stop() without apply still stops what an earlier panel left running', async () => {
    const d = instance(async () => undefined);
    await d.apply(state());
    remember(d);
    const [started] = d.describe();
    expect(started!.adopted).to.equal(false);
    await d.detach();

    const e = instance(async () => undefined, { verb: 4 });
    await e.apply(state());
    await until(() => e.describe()[0]?.pid !== started!.pid && e.describe()[0]?.managementConnected === true && e.describe()[0]?.epoch !== undefined, 'the restart with the new config', 30_000);
    remember(e);
    const [restarted] = e.describe();
    expect(restarted!.epoch).to.not.equal(started!.epoch);
    expect(await alive(started!.pid!)).to.equal(false);
    expect(await fs.readFile(restarted!.confPath, 'utf8')).to.match(/\nverb 4\n/);
    await e.detach();
    expect(await alive(restarted!.pid!)).to.equal(true);

    // The protocol is removed while no panel is attached: the next instance is only told to stop.
    const f = instance(async () => undefined, { verb: 4 });
    await f.stop();
    expect(await alive(restarted!.pid!), 'stop() ends the daemon it never applied').to.equal(false);
  });

  it('(e) a daemon SIGKILLed while no instance is attached runs no hook; the next instance starts a new run, whose keys carry a new epoch', async () => {
    const g = instance(async () => undefined);
    await g.apply(state());
    remember(g);
    const [run] = g.describe();
    const dave = await startOpenVpnClient(lab, clientHost, 'alice-e', await g.renderClientConfig({ username: 'alice', material: {} }, [{ host: SRV_IP, port: 1194, protocol: 'udp' }]), ['alice', 'pw-alice']);
    await until(() => dave.connected(), 'a client connected', 30_000);
    const [live] = sessionsOf(await g.pollSessions());
    expect(live!.key.startsWith(`main:1194udp:${run!.epoch}:`)).to.equal(true);
    await g.detach();
    process.kill(run!.pid!, 'SIGKILL');
    await until(async () => !(await alive(run!.pid!)), 'the daemon gone', 10_000);

    const reported: SessionEnded[] = [];
    const h = instance(async (e) => void reported.push(e));
    await h.apply(state());
    remember(h);
    const [next] = h.describe();
    expect(next).to.deep.include({ adopted: false });
    expect(next!.epoch).to.not.equal(run!.epoch);
    expect(await records(), 'SIGKILL runs no disconnect hook').to.deep.equal([]);
    // The session is not listed by the new run under any key; accounting ends it when its scope
    // (unchanged) is polled without it, with the counters it last counted.
    expect(sessionsOf(await h.pollSessions()).map((s) => s.key)).to.not.include(live!.key);
    await h.stop();
    await dave.stop();
  });
});
