import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { LocalHost } from '../../core/hosts/local-host';
import { createPanelPki } from '../../core/pki';
import type { DesiredUser, LiveSession, SessionEnded, SessionPoll } from '../../core/plugin/types';
import l2tpPlugin, { parseIkeSas, ViciSession, type L2tpIpsecPlugin } from '../../plugins/l2tp-ipsec';
import { startSwanClient, type SwanClient } from '../fixtures/l2tp/swan-client';
import { conformanceContext } from '../conformance/plugin-conformance';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, until, vpnLabMissing } from '../helpers/vpn-lab';

/**
 * charon and xl2tpd outlive the plugin instance that started them. A real strongSwan IKEv2
 * client in one namespace, the plugin's charon (kernel-libipsec) and xl2tpd in another:
 * instance A applies and the client moves traffic; A.detach(); instance B on the same state
 * directory adopts the daemons (same pids, same epoch, no swanctl load), follows the session
 * on under the same key with counters carried on, also over IKE rekeys seen by A or by nobody;
 * the IKE_SA is never torn down. charon killed from outside is restarted under a new epoch and
 * its session ends once; an instance that never applied stops what a detached one left.
 */
const SERVER_IP = '10.99.106.1';
const CLIENT_IP = '10.99.106.2';
const INNER = '10.88.106.1';
const POOL = '10.11.0.0/16';
const BINARIES = [['/usr/lib/ipsec/charon', '--version'], ['swanctl', '--help'], ['sh', '-c', 'command -v xl2tpd'], ['unshare', '--version'], ['bash', '--version']];
const lab = new NetLab();
let server: LocalHost | undefined;
let pki: ReturnType<typeof createPanelPki> | undefined;
let client: SwanClient | undefined;
let clientHost: LocalHost | undefined;
let connCount = 0;
const instances: L2tpIpsecPlugin[] = [];

const bob: DesiredUser = { username: 'adopt_bob', password: 'Bob-pass1', material: {} };
const state = { users: [bob], listeners: [{ port: 500, protocol: 'udp' as const }, { port: 4500, protocol: 'udp' as const }], settings: { ipsec_psk: 'adopt-psk-0123456789' } };

function makeInstance(stateDir: string, ended: SessionEnded[], config: Record<string, unknown> = {}): L2tpIpsecPlugin {
  const ctx = conformanceContext({
    config: l2tpPlugin.configSchema.parse({ userspaceEsp: true, trafficSelectors: [`${INNER}/32`], chapSecretsPath: `${stateDir}/chap-secrets`, restartInitialMs: 200, ...config }),
    host: server!,
    stateDir,
    serverId: 'main',
    clientPool: POOL,
    pki,
  });
  const instance = l2tpPlugin.create({ ...ctx, sessionEnded: async (e) => void ended.push(e) }) as L2tpIpsecPlugin;
  instances.push(instance);
  return instance;
}

const sessionsOf = (p: SessionPoll) => (p.kind === 'sessions' ? p.sessions : []);
const bobIn = async (instance: L2tpIpsecPlugin): Promise<LiveSession | undefined> => sessionsOf(await instance.pollSessions()).find((s) => s.username === bob.username);
const ping = (count: number) => execFileSync('ip', ['netns', 'exec', lab.ns('adc'), 'ping', '-q', '-c', String(count), '-i', '0.01', '-s', '800', INNER], { stdio: 'ignore' });

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The server's IKE_SAs of bob, straight from charon (not through the plugin). */
async function serverIkeSas(socket: string) {
  const s = await ViciSession.open(server!, socket);
  try {
    const { events } = await s.request('list-sas', { noblock: 'yes' }, 10_000, 'list-sa');
    return events.flatMap((m) => parseIkeSas(m)).filter((sa) => sa.username === bob.username && sa.state === 'ESTABLISHED');
  } finally {
    s.close();
  }
}

/** Every swanctl the instance runs is recorded: adoption must not load (or flush) anything. */
async function recordingSwanctl(dir: string): Promise<{ path: string; calls: () => Promise<string[]> }> {
  const file = `${dir}/swanctl-calls`;
  const script = `${dir}/swanctl-recording`;
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(script, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${file}'\nexec swanctl "$@"\n`, { mode: 0o755 });
  return { path: script, calls: async () => (await fs.readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean) };
}

describe('L2TP/IPsec: charon and xl2tpd outlive the instance (detach, adoption, external kill, stop)', function () {
  this.timeout(180_000);
  before(async function () {
    this.timeout(60_000);
    const missing = vpnLabMissing(BINARIES);
    requirePrerequisite(this, missing === null, missing ?? '');
    server = await lab.addNamespace('ads');
    clientHost = await lab.addNamespace('adc');
    lab.link('ads', SERVER_IP, 'adc', CLIENT_IP);
    execFileSync('ip', ['-n', lab.ns('ads'), 'addr', 'add', `${INNER}/32`, 'dev', 'lo']);
    pki = createPanelPki({ host: new LocalHost(), dir: `${lab.dir}/pki` });
    client = await startSwanClient(lab, clientHost, 'adopt');
  });
  after(async () => {
    for (let i = 1; i <= connCount; i++) await client?.terminate(`c${i}`).catch(() => undefined);
    // Detached daemons would outlive the namespace's processes otherwise: each instance stops what it holds or left.
    for (const instance of instances.reverse()) await instance.stop().catch(() => undefined);
    await client?.stop();
    await lab.cleanup();
  });

  async function connect(instance: L2tpIpsecPlugin): Promise<string> {
    const profile = await instance.renderClientConfig(bob, [{ host: SERVER_IP, port: 500, protocol: 'udp' }]);
    const name = `c${++connCount}`;
    const r = await client!.connect(name, profile, bob.password!);
    expect(r.ok, r.output.split('\n').slice(-6).join(' | ')).to.equal(true);
    await until(async () => (await bobIn(instance)) !== undefined, 'charon to list bob', 15_000, 200);
    return name;
  }

  it('A.detach() leaves charon, xl2tpd and the IKE_SA up; B adopts them without a reload and follows the session on (same key, counters carried on), also over IKE rekeys seen by A or by no instance', async () => {
    const stateDir = `${lab.dir}/l2-${randomBytes(3).toString('hex')}`;
    const ended: SessionEnded[] = [];
    const a = makeInstance(stateDir, ended);
    await a.apply(state);
    const name = await connect(a);
    ping(40);
    // An IKE rekey while A watches: the session keeps its key under the IKE_SA's new unique id.
    await client!.rekey(name, 'ike');
    await until(async () => client!.established(name), 'the IKE rekey', 10_000, 100);
    await until(async () => (await bobIn(a)) !== undefined, 'bob after the rekey', 10_000, 200);
    const seenByA = (await bobIn(a))!;
    const da = a.describe();
    const [ikeA] = await serverIkeSas(da.viciSocket);
    expect(ikeA, 'one IKE_SA').to.not.equal(undefined);
    await a.detach();

    expect(alive(da.charonPid), 'charon left running').to.equal(true);
    expect(alive(da.xl2tpdPid), 'xl2tpd left running').to.equal(true);
    ping(40);
    const own = await client!.counters(name);

    const swanctl = await recordingSwanctl(`${lab.dir}/b-${randomBytes(3).toString('hex')}`);
    const b = makeInstance(stateDir, ended, { swanctlPath: swanctl.path });
    await b.apply(state);
    const db = b.describe();
    expect([db.charonPid, db.xl2tpdPid, db.runId]).to.deep.equal([da.charonPid, da.xl2tpdPid, da.runId]);
    expect(db.charonAdopted && db.xl2tpdAdopted, 'both adopted').to.equal(true);
    const seenByB = (await bobIn(b))!;
    expect(seenByB.sessionKey, 'same session key').to.equal(seenByA.sessionKey);
    expect(seenByB.connectedAt).to.equal(seenByA.connectedAt);
    expect(seenByB.rxBytes).to.be.greaterThan(seenByA.rxBytes);
    expect(seenByB.rxBytes, 'upload vs the client SA bytes out').to.be.closeTo(own.tx, own.tx * 0.05);
    const [ikeB] = await serverIkeSas(db.viciSocket);
    expect(ikeB!.uniqueId, 'the IKE_SA was never replaced').to.equal(ikeA!.uniqueId);
    expect(ikeB!.establishedSecAgo!).to.be.at.least(ikeA!.establishedSecAgo!);
    expect(await swanctl.calls(), 'nothing loaded into the adopted charon').to.deep.equal([]);

    // An IKE rekey while no instance is attached: C finds the session again by its CHILD_SA.
    await b.detach();
    await client!.rekey(name, 'ike');
    await until(async () => (await serverIkeSas(db.viciSocket)).some((sa) => sa.uniqueId !== ikeA!.uniqueId), 'the unwatched IKE rekey', 10_000, 100);
    ping(20);
    const c = makeInstance(stateDir, ended);
    await c.apply(state);
    const seenByC = (await bobIn(c))!;
    expect(seenByC.sessionKey, 'same key after a rekey nobody watched').to.equal(seenByA.sessionKey);
    expect(seenByC.rxBytes).to.be.greaterThan(seenByB.rxBytes);
    expect(c.describe().charonPid).to.equal(da.charonPid);
    expect(ended, 'the session never ended').to.deep.equal([]);
    expect(await client!.established(name), 'client still up').to.equal(true);
    await client!.terminate(name);
    await c.stop();
    expect(alive(da.charonPid) || alive(da.xl2tpdPid), 'stop() ends the adopted daemons').to.equal(false);
  });

  it('charon killed from outside is restarted under a new epoch and its session ends once with the old key; an instance that never applied stops what a detached one left', async () => {
    const stateDir = `${lab.dir}/l2-${randomBytes(3).toString('hex')}`;
    const ended: SessionEnded[] = [];
    const a = makeInstance(stateDir, ended);
    await a.apply(state);
    const name = await connect(a);
    ping(30);
    const before = (await bobIn(a))!;
    await a.detach();
    const b = makeInstance(stateDir, ended);
    await b.apply(state);
    const first = b.describe();
    expect(first.charonAdopted).to.equal(true);
    expect((await bobIn(b))?.sessionKey).to.equal(before.sessionKey);
    process.kill(first.charonPid!, 'SIGKILL');
    await until(() => b.describe().charonPid !== undefined && b.describe().charonPid !== first.charonPid, 'charon restarted', 20_000, 100);
    await until(() => ended.length > 0, 'the session of the killed charon to end', 10_000, 100);
    const next = b.describe();
    expect(next.runId, 'new epoch').to.not.equal(first.runId);
    expect(next.charonAdopted).to.equal(false);
    expect(ended.map((e) => e.session.sessionKey)).to.deep.equal([before.sessionKey]);
    expect(ended[0]!.session.rxBytes).to.be.at.least(before.rxBytes);
    // The client's SA points at a charon that is gone: dropped at once, as a phone would on its own after DPD.
    await clientHost!.run(['swanctl', '--terminate', '--ike', name, '--force', '--uri', `unix://${client!.dir}/charon.vici`], { timeoutMs: 15_000 });
    await until(async () => b.pollSessions().then(() => true, () => false), 'the new charon to answer', 20_000, 200);

    // A new session on the new charon; B goes away, D (never applied) is told to stop.
    const name2 = await connect(b);
    ping(20);
    const live = (await bobIn(b))!;
    expect(live.sessionKey).to.include(next.runId);
    await b.detach();
    const d = makeInstance(stateDir, ended);
    await d.stop();
    expect(alive(next.charonPid), 'charon stopped').to.equal(false);
    expect(alive(next.xl2tpdPid), 'xl2tpd stopped').to.equal(false);
    await until(() => ended.some((e) => e.session.sessionKey === live.sessionKey), 'the session of the stopped charon to end', 5_000, 100);
    const last = ended.find((e) => e.session.sessionKey === live.sessionKey);
    expect(last!.session.rxBytes).to.be.at.least(live.rxBytes);
    expect(ended.filter((e) => e.session.sessionKey === before.sessionKey), 'the first once').to.have.length(1);
    await client!.terminate(name2).catch(() => undefined);
  });

  it('an IKEv2 session that ends while no instance is attached is reported once by the adopting one, under its key, with the last counters seen', async () => {
    const stateDir = `${lab.dir}/l2-${randomBytes(3).toString('hex')}`;
    const ended: SessionEnded[] = [];
    const a = makeInstance(stateDir, ended);
    await a.apply(state);
    const name = await connect(a);
    ping(30);
    const seen = (await bobIn(a))!;
    await a.detach();
    await client!.terminate(name);
    const b = makeInstance(stateDir, ended);
    await b.apply(state);
    expect(b.describe().charonAdopted).to.equal(true);
    expect(await bobIn(b)).to.equal(undefined);
    await b.pollSessions();
    expect(ended.map((e) => e.session.sessionKey)).to.deep.equal([seen.sessionKey]);
    expect(ended[0]!.session.rxBytes).to.be.at.least(seen.rxBytes);
    await b.stop();
    expect(ended, 'not again at stop').to.have.length(1);
  });
});
