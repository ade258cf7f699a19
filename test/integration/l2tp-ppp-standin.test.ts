import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { HostProcess } from '../../core/hosts/host';
import { LocalHost } from '../../core/hosts/local-host';
import { createPanelPki } from '../../core/pki';
import type { DesiredUser, LiveSession, SessionEnded, SessionPoll } from '../../core/plugin/types';
import l2tpPlugin, { type L2tpIpsecPlugin } from '../../plugins/l2tp-ipsec';
import { conformanceContext } from '../conformance/plugin-conformance';
import { requirePrerequisite } from '../helpers/prereq';
import { exitedWithin, NetLab, until, vpnLabMissing } from '../helpers/vpn-lab';

/**
 * L2TP as far as this kernel allows. REAL: the plugin's xl2tpd LNS in a server namespace, a
 * real xl2tpd LAC in a client namespace dialing it (plain L2TP over UDP 1701: the IPsec
 * transport-mode SA that carries it on a real server cannot be installed here, no XFRM ESP),
 * the plugin's chap-secrets and its pppd hook scripts. STAND-IN: pppd itself (no /dev/ppp on
 * this kernel) — test/fixtures/l2tp/pppd-standin.py, bind-mounted over /usr/sbin/pppd for
 * both xl2tpds, follows pppd's contract: argv from xl2tpd, the options file, credentials
 * checked against /etc/ppp/chap-secrets (sent by the LAC stand-in through the real tunnel),
 * a ppp<N> link (dummy) whose statistics are the counters, the pid file, ip-up / ip-down with
 * pppd's environment, SIGTERM ends it.
 */
const SERVER_IP = '10.99.109.1';
const CLIENT_IP = '10.99.109.2';
const POOL = '10.10.0.0/16';
const STANDIN = path.resolve(__dirname, '../fixtures/l2tp/pppd-standin.py');

describe('L2TP: real xl2tpd LAC → the plugin\'s real xl2tpd LNS, with a pppd STAND-IN for the PPP layer this kernel lacks', function () {
  this.timeout(90_000);
  const lab = new NetLab();
  let server: LocalHost;
  let clientHost: LocalHost;
  let instance: L2tpIpsecPlugin | undefined;
  let lac: HostProcess | undefined;
  const ended: SessionEnded[] = [];
  const users: DesiredUser[] = [
    { username: 'ppp_alice', password: 'Alice "q" \\ #1', material: {} },
    { username: 'ppp_bob', password: 'Bob-pass1', material: {} },
  ];
  const state = (list: DesiredUser[]) => ({ users: list, listeners: [{ port: 500, protocol: 'udp' as const }, { port: 4500, protocol: 'udp' as const }], settings: { ipsec_psk: 'psk-0123456789abcdef' } });
  const sessionsOf = (p: SessionPoll): LiveSession[] => (p.kind === 'sessions' ? p.sessions : []);
  let ctx: ReturnType<typeof conformanceContext<ReturnType<typeof l2tpPlugin.configSchema.parse>>> | undefined;
  const make = () => l2tpPlugin.create({ ...ctx!, sessionEnded: async (e) => void ended.push(e) }) as L2tpIpsecPlugin;
  const pppSessions = async () => sessionsOf(await instance!.pollSessions()).filter((s) => s.sessionKey.includes(':ppp:'));

  /**
   * The wrapper that runs an xl2tpd with the stand-in as its pppd and `etcPpp` as its /etc/ppp
   * (private mount namespace, private /run). The directory, not the file, is bind-mounted: the
   * plugin replaces chap-secrets by rename, which a file bind mount would not follow. xl2tpd
   * runs under the wrapper's path as argv[0], so its cmdline is the argv the plugin started
   * and a later instance can adopt it.
   */
  async function wrapper(name: string, etcPpp: string): Promise<string> {
    const file = `${lab.dir}/${name}.sh`;
    await fs.writeFile(
      file,
      [
        '#!/bin/sh',
        '# Test only: xl2tpd with the pppd STAND-IN bind-mounted over /usr/sbin/pppd.',
        `exec unshare --mount --propagation private bash -c 'mount -t tmpfs tmpfs /run && mount --bind "$1" /usr/sbin/pppd && mount --bind "$2" /etc/ppp && w=$0 && shift 2 && exec -a "$w" xl2tpd "$@"' "$0" ${STANDIN} ${etcPpp} "$@"`,
        '',
      ].join('\n'),
      { mode: 0o700 },
    );
    return file;
  }

  /** A real xl2tpd LAC in the client namespace dialing the LNS as `user` with `password` (its own chap-secrets). */
  async function dial(user: string, password: string): Promise<void> {
    const tag = randomBytes(2).toString('hex');
    const etc = `${lab.dir}/lac-${tag}-ppp`;
    await fs.mkdir(etc, { mode: 0o700 });
    await fs.writeFile(`${etc}/chap-secrets`, `"${user}" * "${password.replace(/[\\"]/g, (c) => `\\${c}`)}" *\n`, { mode: 0o600 });
    await fs.writeFile(`${lab.dir}/lac-${tag}.opts`, 'noauth\n');
    await fs.writeFile(`${lab.dir}/lac-${tag}.secrets`, '');
    await fs.writeFile(
      `${lab.dir}/lac-${tag}.conf`,
      ['[global]', 'port = 1701', '[lac polygate]', `lns = ${SERVER_IP}`, `name = ${user}`, `pppoptfile = ${lab.dir}/lac-${tag}.opts`, 'autodial = yes', 'redial = no', 'length bit = yes', ''].join('\n'),
    );
    const w = await wrapper(`lac-${tag}`, etc);
    lac = lab.track(clientHost.spawn([w, '-D', '-c', `${lab.dir}/lac-${tag}.conf`, '-s', `${lab.dir}/lac-${tag}.secrets`, '-p', `${lab.dir}/lac-${tag}.pid`, '-C', `${lab.dir}/lac-${tag}.ctl`]));
  }

  async function hangUp(): Promise<void> {
    if (!lac) return;
    lac.kill('SIGTERM');
    if (!(await exitedWithin(lac, 5000))) lac.kill('SIGKILL');
    await exitedWithin(lac, 5000);
    lac = undefined;
  }

  before(async function () {
    const missing = vpnLabMissing([['/usr/lib/ipsec/charon', '--version'], ['sh', '-c', 'command -v xl2tpd'], ['python3', '--version'], ['unshare', '--version'], ['test', '-e', '/etc/ppp/chap-secrets']]);
    requirePrerequisite(this, missing === null, missing ?? '');
    server = await lab.addNamespace('l2ps');
    clientHost = await lab.addNamespace('l2pc');
    lab.link('l2ps', SERVER_IP, 'l2pc', CLIENT_IP);
    process.env.PG_STANDIN_LOG = `${lab.dir}/standin.log`;
    const stateDir = `${lab.dir}/lns`;
    await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
    const etcPpp = `${lab.dir}/lns-ppp`;
    await fs.mkdir(etcPpp, { mode: 0o755 });
    const chap = `${etcPpp}/chap-secrets`;
    ctx = conformanceContext({
      config: l2tpPlugin.configSchema.parse({ userspaceEsp: true, chapSecretsPath: chap, xl2tpdPath: await wrapper('lns', etcPpp), restartInitialMs: 200 }),
      host: server,
      stateDir,
      serverId: 'main',
      clientPool: POOL,
      pki: createPanelPki({ host: new LocalHost(), dir: `${lab.dir}/pki` }),
    });
    instance = make();
    await instance.apply(state(users));
  });

  afterEach(async () => {
    await hangUp();
    // A LAC that goes away leaves its call on the LNS until xl2tpd's hello timeout: cut what is left.
    for (const u of users) await instance?.disconnect({ username: u.username });
    await until(async () => (await pppSessions()).length === 0, 'no L2TP session left', 15_000, 200);
  });

  after(async () => {
    delete process.env.PG_STANDIN_LOG;
    await hangUp();
    await instance?.stop();
    if (process.env.L2TP_KEEP_LAB) console.log(`      kept ${lab.dir}`);
    else await lab.cleanup();
  });

  it('the LAC\'s call reaches the LNS and is authenticated against the plugin\'s chap-secrets (quoted password); ip-up records the session (STAND-IN pppd)', async () => {
    await dial('ppp_alice', users[0]!.password!);
    await until(async () => (await pppSessions()).some((s) => s.username === 'ppp_alice'), 'the L2TP session of ppp_alice', 20_000, 200);
    const [s] = await pppSessions();
    expect(s!.remoteAddress).to.match(/^10\.10\.0\.\d+$/);
    expect(s!.sessionKey).to.match(/^main:ppp:\d+-\d+$/);
  });

  it('interim counters from the link statistics, final BYTES_SENT from ip-down after a SIGTERM cut, reported exactly once (STAND-IN pppd)', async () => {
    await dial('ppp_alice', users[0]!.password!);
    await until(async () => (await pppSessions()).length === 1, 'the L2TP session', 20_000, 200);
    const [s] = await pppSessions();
    // Traffic towards the client leaves through the session's link: 40 × (1000 + 28) bytes.
    // No replies come back (the stand-in's link drops what it is sent), so ping's exit code says nothing.
    spawnSync('ip', ['netns', 'exec', lab.ns('l2ps'), 'ping', '-q', '-c', '40', '-i', '0.01', '-s', '1000', '-W', '1', s!.remoteAddress], { stdio: 'ignore', timeout: 20_000 });
    const [interim] = await pppSessions().catch(() => []);
    expect(interim!.txBytes).to.be.closeTo(40 * 1028, 40 * 1028 * 0.05);
    spawnSync('ip', ['netns', 'exec', lab.ns('l2ps'), 'ping', '-q', '-c', '20', '-i', '0.01', '-s', '1000', '-W', '1', s!.remoteAddress], { stdio: 'ignore', timeout: 20_000 });
    await instance!.disconnect({ username: 'ppp_alice' });
    await until(async () => (await pppSessions()).length === 0 && ended.some((e) => e.session.sessionKey === s!.sessionKey), 'the cut session to be reported', 15_000, 200);
    const mine = ended.filter((e) => e.session.sessionKey === s!.sessionKey);
    expect(mine).to.have.length(1);
    expect(mine[0]!.session.txBytes, 'final BYTES_SENT').to.be.closeTo(60 * 1028, 60 * 1028 * 0.05);
    await instance!.pollSessions();
    await instance!.pollSessions();
    expect(ended.filter((e) => e.session.sessionKey === s!.sessionKey), 'not again').to.have.length(1);
    const log = await fs.readFile(`${lab.dir}/standin.log`, 'utf8');
    expect(log, 'the cut was a SIGTERM that ran ip-down').to.match(/down ppp\d+ sent=\d+ rcvd=\d+ by=SIGTERM/);
  });

  it('a wrong password is refused; a user dropped from the state is cut and cannot dial again (STAND-IN pppd)', async () => {
    await dial('ppp_bob', 'not-the-password');
    await until(async () => /peer=ppp_bob authenticated=False/.test(await fs.readFile(`${lab.dir}/standin.log`, 'utf8').catch(() => '')), 'the LNS to refuse the wrong password', 20_000, 200);
    expect(await pppSessions()).to.deep.equal([]);
    await hangUp();
    await dial('ppp_bob', 'Bob-pass1');
    await until(async () => (await pppSessions()).some((s) => s.username === 'ppp_bob'), 'ppp_bob to connect', 20_000, 200);
    await instance!.apply(state([users[0]!]));
    await until(async () => (await pppSessions()).length === 0, 'ppp_bob to be cut', 15_000, 200);
    expect(await fs.readFile(`${lab.dir}/lns-ppp/chap-secrets`, 'utf8')).to.not.include('ppp_bob');
    await hangUp();
    const refusedBefore = ((await fs.readFile(`${lab.dir}/standin.log`, 'utf8')).match(/peer=ppp_bob authenticated=False/g) ?? []).length;
    await dial('ppp_bob', 'Bob-pass1');
    await until(async () => ((await fs.readFile(`${lab.dir}/standin.log`, 'utf8')).match(/peer=ppp_bob authenticated=False/g) ?? []).length > refusedBefore, 'the removed user to be refused', 20_000, 200);
    expect(await pppSessions()).to.deep.equal([]);
  });

  it('xl2tpd and its pppd sessions outlive the instance: the next one adopts xl2tpd and keeps the live session\'s key; one whose ip-down ran while no instance was attached is reported once by the next (STAND-IN pppd)', async () => {
    await dial('ppp_alice', users[0]!.password!);
    await until(async () => (await pppSessions()).length === 1, 'the L2TP session', 20_000, 200);
    const [s] = await pppSessions();
    const before = instance!.describe();
    await instance!.detach();
    const pppPid = Number(/:ppp:(\d+)-/.exec(s!.sessionKey)![1]);
    expect(() => process.kill(before.xl2tpdPid!, 0), 'xl2tpd left running').to.not.throw();
    expect(() => process.kill(pppPid, 0), 'pppd left running').to.not.throw();

    instance = make();
    await instance.apply(state(users));
    expect(instance.describe().xl2tpdPid).to.equal(before.xl2tpdPid);
    expect(instance.describe().xl2tpdAdopted).to.equal(true);
    const [again] = await pppSessions();
    expect(again?.sessionKey, 'same key').to.equal(s!.sessionKey);
    await instance.detach();

    // The session ends while no instance is attached: ip-down leaves its record on the host.
    const endedBefore = ended.length;
    process.kill(pppPid, 'SIGTERM');
    await until(async () => (await fs.readdir(`${lab.dir}/lns/ended`)).some((n) => n.startsWith(`ppp-${pppPid}-`)), 'ip-down to write the record', 10_000, 100);
    expect(ended.length, 'no instance to report it').to.equal(endedBefore);
    instance = make();
    await instance.apply(state(users));
    await instance.pollSessions();
    await instance.pollSessions();
    const mine = ended.filter((e) => e.session.sessionKey === s!.sessionKey);
    expect(mine, 'reported once, by the adopting instance').to.have.length(1);
    expect(mine[0]!.session.username).to.equal('ppp_alice');
    expect(await fs.readdir(`${lab.dir}/lns/ended`).then((l) => l.filter((n) => n.endsWith('.rec')))).to.deep.equal([]);
  });
});
