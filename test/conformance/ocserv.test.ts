import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { LocalHost } from '../../core/hosts/local-host';
import { createPanelPki } from '../../core/pki';
import type { DesiredUser, SessionEnded } from '../../core/plugin/types';
import ocservPlugin, { renderDisconnectScript, renderRunWrapper, type OcservPlugin } from '../../plugins/ocserv';
import { parseEndedRecord } from '../../plugins/ocserv/render';
import { startOcClient, type OcTestClient } from '../fixtures/ocserv/oc-client';
import { requirePrerequisite } from '../helpers/prereq';
import { NetLab, until, vpnLabMissing } from '../helpers/vpn-lab';
import { conformanceContext, describePluginConformance } from './plugin-conformance';

/**
 * The conformance suite against the real ocserv plugin: ocserv in a network namespace with its
 * certificate from the panel's CA, and real `openconnect` clients in another namespace
 * configured from `renderClientConfig` (user + certificate pin) and the password. Then what
 * only this plugin promises: the disconnect hook's final counters reach `sessionEnded` exactly
 * once (also across a new plugin instance, as after a panel restart), and a wrong password
 * is refused.
 */
const SERVER_IP = '10.99.95.1';
const POOL = '10.12.0.0/16';
const BINARIES = [['ocserv', '--version'], ['occtl', '--version'], ['openconnect', '--version'], ['openssl', 'version']];
const lab = new NetLab();
let server: LocalHost | undefined;
let pki: ReturnType<typeof createPanelPki> | undefined;
const clients: OcTestClient[] = [];

const users: [DesiredUser, DesiredUser] = [
  { username: 'conf_alice', password: 'Alice-pass1', material: {} },
  { username: 'conf_bob', password: 'Bob-pass1', material: {} },
];
const listeners = [
  { port: 443, protocol: 'tcp' as const },
  { port: 443, protocol: 'udp' as const },
];

function makeInstance(config: Record<string, unknown>, stateDir: string, sessionEnded: (e: SessionEnded) => void = () => undefined) {
  const ctx = conformanceContext({
    config: ocservPlugin.configSchema.parse({ device: `oc${lab.suffix}`, restartInitialMs: 200, maxBanScore: 0, ...config }),
    host: server!,
    stateDir,
    serverId: 'main',
    clientPool: POOL,
    pki,
  });
  return ocservPlugin.create({ ...ctx, sessionEnded: async (e) => sessionEnded(e) }) as OcservPlugin;
}

async function connect(instance: OcservPlugin, user: DesiredUser, password = user.password!): Promise<OcTestClient> {
  const profile = await instance.renderClientConfig(user, [{ host: SERVER_IP, port: 443, protocol: 'tcp' }]);
  const c = await startOcClient(lab, lab.ns('occ'), profile, password, POOL);
  clients.push(c);
  return c;
}

async function connected(instance: OcservPlugin, user: DesiredUser): Promise<OcTestClient> {
  const c = await connect(instance, user);
  await until(() => c.up(), `${user.username}'s tunnel to come up (${c.lines.slice(-3).join(' | ')})`, 30_000, 200);
  await until(async () => {
    const p = await instance.pollSessions();
    return p.kind === 'status-text' && p.texts.some((t) => t.text.includes(`"${user.username}"`));
  }, `ocserv to list ${user.username}`, 15_000, 200);
  return c;
}

describe('ocserv conformance lab', () => {
  before(async function () {
    if (vpnLabMissing(BINARIES)) return;
    server = await lab.addNamespace('ocs');
    await lab.addNamespace('occ');
    lab.link('ocs', SERVER_IP, 'occ', '10.99.95.2');
    pki = createPanelPki({ host: new LocalHost(), dir: `${lab.dir}/pki` });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.stop();
  });
  after(() => lab.cleanup());

  describePluginConformance({
    name: 'ocserv (real ocserv + openconnect in namespaces)',
    definition: ocservPlugin as never,
    missing: () => vpnLabMissing(BINARIES),
    brokenConfig: { ocservPath: '/nonexistent/ocserv' },
    users,
    listeners,
    async create(config = {}) {
      const instance = makeInstance(config, `${lab.dir}/oc-${randomBytes(3).toString('hex')}`);
      return { instance, cleanup: () => instance.stop() };
    },
    async connect(target, user) {
      const c = await connected(target.instance as OcservPlugin, user);
      return { close: () => c.stop() };
    },
  });

  describe('ocserv specifics', function () {
    this.timeout(120_000);
    let instance: OcservPlugin | undefined;
    before(function () {
      const missing = vpnLabMissing(BINARIES);
      requirePrerequisite(this, missing === null, missing ?? '');
    });
    afterEach(async () => {
      for (const c of clients.splice(0)) await c.stop();
      await instance?.stop();
      instance = undefined;
    });

    it('a wrong password is refused, the right one connects; a user left out of the state cannot log back in', async () => {
      instance = makeInstance({}, `${lab.dir}/oc-${randomBytes(3).toString('hex')}`);
      await instance.apply({ users, listeners, settings: {} });
      const wrong = await connect(instance, users[0], 'not-the-password');
      await until(() => wrong.exited(), 'the client with a wrong password to give up', 20_000, 200);
      expect(await wrong.up()).to.equal(false);
      await connected(instance, users[0]);
      await instance.apply({ users: [users[1]], listeners, settings: {} });
      await until(async () => !JSON.stringify(await instance!.pollSessions()).includes('conf_alice'), 'alice to be cut', 15_000, 200);
      const again = await connect(instance, users[0]);
      await until(() => again.exited(), 'the removed user\'s new client to give up', 20_000, 200);
      expect(await again.up()).to.equal(false);
    });

    it('customer facts carry the certificate pin the profile gives openconnect (which trusts the server by it)', async () => {
      instance = makeInstance({}, `${lab.dir}/oc-${randomBytes(3).toString('hex')}`);
      await instance.apply({ users, listeners, settings: {} });
      const facts = await instance.customerFacts();
      const profile = await instance.renderClientConfig(users[0], [{ host: SERVER_IP, port: 443, protocol: 'tcp' }]);
      expect(facts.map((f) => f.key)).to.deep.equal(['certificate_pin']);
      expect(facts[0]!.value).to.match(/^pin-sha256:[A-Za-z0-9+/]{43}=$/);
      expect(profile).to.include(`servercert=${facts[0]!.value}`);
      await connected(instance, users[0]);
    });

    it('the disconnect hook\'s final counters reach sessionEnded once, also from a new plugin instance after a restart', async () => {
      const stateDir = `${lab.dir}/oc-${randomBytes(3).toString('hex')}`;
      const ended: SessionEnded[] = [];
      instance = makeInstance({}, stateDir, (e) => ended.push(e));
      await instance.apply({ users, listeners, settings: {} });
      const scope = instance.describe().scope;
      const c = await connected(instance, users[0]);
      execFileSync('ip', ['netns', 'exec', lab.ns('occ'), 'ping', '-q', '-c', '20', '-i', '0.01', '-s', '500', '10.12.0.1'], { stdio: 'ignore' });
      const own = await c.counters();
      // The client goes away between two polls: only the hook can count its last bytes.
      await c.stop();
      await until(async () => (await fs.readdir(instance!.describe().endedDir)).some((n) => n.endsWith('.rec')), 'the disconnect record', 15_000, 100);
      await instance.pollSessions();
      expect(ended).to.have.length(1);
      const s = ended[0]!.session;
      expect(s.username).to.equal('conf_alice');
      expect(s.sessionKey.startsWith(`${scope}:`)).to.equal(true);
      expect(s.rxBytes, 'upload vs the client tunnel tx').to.be.at.least(own.tx);
      expect(s.rxBytes).to.be.closeTo(own.tx, own.tx * 0.05 + 200);
      expect(s.txBytes).to.be.closeTo(own.rx, own.rx * 0.05 + 200);
      await instance.pollSessions();
      expect(ended, 'not again on the next poll').to.have.length(1);
      await instance.stop();
      // A record written while the panel was down is reported by the next instance, once.
      const runId = 'zz' + randomBytes(3).toString('hex');
      await fs.writeFile(`${stateDir}/ended/${runId}-777.rec`, ['v1', runId, '777', 'conf_bob', '10', '20', '1', '10.99.95.2', 'disconnect', ''].join('\n'));
      const ended2: SessionEnded[] = [];
      instance = makeInstance({}, stateDir, (e) => ended2.push(e));
      await instance.apply({ users, listeners, settings: {} });
      await instance.pollSessions();
      await instance.pollSessions();
      expect(ended2.map((e) => [e.session.sessionKey, e.session.rxBytes, e.session.txBytes])).to.deep.equal([[`main:${runId}:777`, 10, 20]]);
    });

    it('killing ocserv restarts it under a new scope, and the users can connect again', async () => {
      instance = makeInstance({}, `${lab.dir}/oc-${randomBytes(3).toString('hex')}`);
      await instance.apply({ users, listeners, settings: {} });
      const before = instance.describe();
      // ocserv's main process (the child of the keeper's wrapper, whose pid the supervisor has).
      const ocservPid = Number((await fs.readFile(instance.paths.pid, 'utf8')).trim());
      expect(ocservPid).to.not.equal(before.pid);
      process.kill(ocservPid, 'SIGKILL');
      await until(() => instance!.describe().pid !== undefined && instance!.describe().pid !== before.pid, 'ocserv to be restarted', 15_000, 100);
      await until(async () => (await instance!.pollSessions().then(() => true, () => false)), 'occtl to answer again', 15_000, 200);
      expect(instance.describe().scope).to.not.equal(before.scope);
      await connected(instance, users[1]);
    });
  });
});

describe('ocserv disconnect script (run by /bin/sh with ocserv\'s environment, under the run wrapper)', () => {
  it('writes one record named with the wrapper\'s epoch, which the plugin reads back, and nothing for a malformed environment', async () => {
    const dir = `/tmp/pg-ocscript-${randomBytes(3).toString('hex')}`;
    await fs.mkdir(`${dir}/ended`, { recursive: true });
    try {
      await fs.writeFile(`${dir}/d.sh`, renderDisconnectScript({ endedDir: `${dir}/ended` }), { mode: 0o700 });
      await fs.writeFile(`${dir}/run.sh`, renderRunWrapper(), { mode: 0o700 });
      const env = { PATH: process.env.PATH!, ID: '10407', USERNAME: 'alice', STATS_BYTES_IN: '206164', STATS_BYTES_OUT: '206468', STATS_DURATION: '19', IP_REAL: '10.99.77.2', REASON: 'disconnect' };
      // The wrapper as the keeper runs it, with the script standing in for ocserv: it prints the
      // epoch the supervisor would compute for the wrapper's pid, then the record is written.
      const out = execFileSync('sh', [`${dir}/run.sh`, 'sh', '-c', `echo "$POLYGATE_OCSERV_RUN $PPID $(cut -d' ' -f22 /proc/$PPID/stat)"; exec "$0"`, `${dir}/d.sh`], { env }).toString().trim();
      const [run, wrapperPid, wrapperStart] = out.split(' ');
      expect(run).to.equal(`${wrapperPid}.${wrapperStart}`);
      execFileSync(`${dir}/d.sh`, [], { env: { ...env, POLYGATE_OCSERV_RUN: run!, ID: '1;touch /tmp/x' } });
      execFileSync(`${dir}/d.sh`, [], { env: { ...env, POLYGATE_OCSERV_RUN: run!, ID: '5', STATS_BYTES_IN: '' } });
      execFileSync(`${dir}/d.sh`, [], { env: { ...env, ID: '6' } });
      execFileSync(`${dir}/d.sh`, [], { env: { ...env, ID: '8', POLYGATE_OCSERV_RUN: '1.2;touch /tmp/x' } });
      expect(await fs.readdir(`${dir}/ended`)).to.deep.equal([`${run}-10407.rec`]);
      expect(parseEndedRecord(await fs.readFile(`${dir}/ended/${run}-10407.rec`, 'utf8'))).to.include({ runId: run, id: '10407', username: 'alice', rxBytes: 206164, txBytes: 206468 });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('the wrapper passes SIGTERM on to its child and exits with the child\'s status', async () => {
    const dir = `/tmp/pg-ocwrap-${randomBytes(3).toString('hex')}`;
    await fs.mkdir(dir, { recursive: true });
    try {
      await fs.writeFile(`${dir}/run.sh`, renderRunWrapper(), { mode: 0o700 });
      const child = spawn('sh', [`${dir}/run.sh`, 'sh', '-c', `trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done`], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await until(() => out.includes('ready'), 'the child to start', 5_000, 20);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      expect(await exited).to.equal(7);
      clearTimeout(timer);
      expect(out).to.include('got-term');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
