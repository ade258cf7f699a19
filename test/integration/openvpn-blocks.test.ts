import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import type { HostProcess } from '../../core/hosts/host';
import { LocalHost } from '../../core/hosts/local-host';
import { logger } from '../../core/logger';
import type { AuthorizeRequest, PluginContext, SessionEnded } from '../../core/plugin/types';
import openvpnPlugin, { openVpnConfigSchema, type OpenVpnConfig, type OpenVpnPlugin } from '../../plugins/openvpn';
import { ManagementClient, type ClientDisconnected, type ConnectRequest } from '../../plugins/openvpn/management';
import { Pki, type ClientMaterial } from '../../plugins/openvpn/pki';
import { renderClientProfile, renderServerConfig } from '../../plugins/openvpn/render';
import { sessionsFromStatus3 } from '../../plugins/openvpn/status';
import { ProcessSupervisor, type SupervisedExit } from '../../plugins/openvpn/supervisor';
import { requirePrerequisite } from '../helpers/prereq';

/*
 * The OpenVPN building blocks with the real thing: OpenVPN 2.6 server and clients in two
 * network namespaces this suite creates (veth 10.99.21.0/24), PKI made by openssl.
 * Proves: the PKI's certificates work in OpenVPN and its CRL revokes; the rendered server
 * config runs under the supervisor; the management client decides logins (cert CN must
 * equal the auth username, password from a map), sees ESTABLISHED/DISCONNECT with final
 * counters, reads `status 3`, cuts a session with client-kill; a SIGKILLed OpenVPN is
 * restarted and management reconnects; a reissued user's old certificate is refused by the
 * running server while the new one connects. Then the plugin itself (index.ts) runs two
 * instances (UDP + TCP) through start/syncUsers/authorize/pollSessions/disconnect/stop.
 * Traffic only flows inside the namespaces. Skips (printing why) without root or binaries.
 */

const SUFFIX = randomBytes(3).toString('hex');
const NS_S = `pg-ovs-${SUFFIX}`;
const NS_C = `pg-ovc-${SUFFIX}`;
const SRV_IP = '10.99.21.1';
const CLI_IP = '10.99.21.2';
const TUN_SUBNET = '10.8.210.0/24';
const TUN_SERVER_IP = '10.8.210.1';
const DIR = `/tmp/pg-ovpn-${SUFFIX}`;

function tool(argv: string[]): boolean {
  try {
    execFileSync(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function missingPrerequisite(): string | null {
  if (process.getuid?.() !== 0) return 'not root (network namespaces need root)';
  if (!tool(['openvpn', '--version'])) return 'openvpn is not installed (apt-get install openvpn)';
  if (!tool(['openssl', 'version'])) return 'openssl is not installed';
  if (!tool(['ip', '-V'])) return 'iproute2 is not installed';
  if (!tool(['ping', '-V'])) return 'ping is not installed (apt-get install iputils-ping)';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing';
  return null;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function exitedWithin(p: HostProcess, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.exited.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
}

const alive = (pid: number | undefined) => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

interface VpnClient {
  proc: HostProcess;
  lines: string[];
  connected(): boolean;
}

describe('OpenVPN building blocks (integration, network namespaces)', function () {
  this.timeout(90_000);
  const rootHost = new LocalHost();
  const serverHost = new LocalHost({ netns: NS_S });
  const clientHost = new LocalHost({ netns: NS_C });
  const clients: HostProcess[] = [];
  let created = false;

  let pki: Pki;
  let tlsCrypt: string;
  let supervisor: ProcessSupervisor | undefined;
  let mgmt: ManagementClient | undefined;
  let vpn: OpenVpnPlugin | undefined;
  const serverLog: string[] = [];
  const requests: Array<{ cid: number; cn: string | undefined; username: string | undefined; verdict: string }> = [];
  const disconnects: ClientDisconnected[] = [];
  const established: Array<{ cid: number; cn: string | undefined }> = [];
  const passwords = new Map([
    ['alice', 'pw-alice'],
    ['bob', 'pw-bob'],
  ]);

  const startClient = async (name: string, material: ClientMaterial, creds: [string, string] | null): Promise<VpnClient> => {
    const profile = renderClientProfile({
      remotes: [{ host: SRV_IP, port: 1194, proto: 'udp' }],
      ...material,
      tlsCryptKey: tlsCrypt,
      serverCommonName: pki.serverCommonName,
      passwordAuth: creds !== null,
    });
    return startProfile(name, profile, creds);
  };

  /** A real `openvpn` client in the client namespace; its output is collected. */
  const startProfile = async (name: string, profile: string, creds: [string, string] | null): Promise<VpnClient> => {
    const profilePath = `${DIR}/${name}.ovpn`;
    await rootHost.writeFileAtomic(profilePath, profile, 0o600);
    const argv = ['openvpn', '--config', profilePath, '--disable-dco', '--connect-retry', '1', '1'];
    if (creds) {
      await rootHost.writeFileAtomic(`${DIR}/${name}.creds`, `${creds[0]}\n${creds[1]}\n`, 0o600);
      argv.push('--auth-user-pass', `${DIR}/${name}.creds`);
    }
    const lines: string[] = [];
    const proc = clientHost.spawn(argv, { onOutput: (chunk) => lines.push(...chunk.split('\n')) });
    clients.push(proc);
    return { proc, lines, connected: () => lines.some((l) => l.includes('Initialization Sequence Completed')) };
  };

  const stopClient = async (c: VpnClient) => {
    c.proc.kill('SIGTERM');
    if (!(await exitedWithin(c.proc, 5000))) {
      c.proc.kill('SIGKILL');
      await exitedWithin(c.proc, 5000);
    }
  };

  const onConnectRequest = (req: ConnectRequest) => {
    const cn = req.env.common_name;
    const username = req.env.username;
    let verdict = 'allow';
    if (!cn || username !== cn) verdict = 'username does not match certificate';
    else if (passwords.get(cn) !== req.env.password) verdict = 'bad credentials';
    requests.push({ cid: req.cid, cn, username, verdict });
    void (verdict === 'allow' ? req.allow() : req.deny(verdict));
  };

  before(async function () {
    const missing = missingPrerequisite();
    requirePrerequisite(this, missing === null, missing ?? '');
    const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
    ip('netns', 'add', NS_S);
    created = true;
    ip('netns', 'add', NS_C);
    ip('link', 'add', `pgvs${SUFFIX}`, 'netns', NS_S, 'type', 'veth', 'peer', 'name', `pgvc${SUFFIX}`, 'netns', NS_C);
    ip('-n', NS_S, 'addr', 'add', `${SRV_IP}/24`, 'dev', `pgvs${SUFFIX}`);
    ip('-n', NS_C, 'addr', 'add', `${CLI_IP}/24`, 'dev', `pgvc${SUFFIX}`);
    for (const [ns, dev] of [
      [NS_S, `pgvs${SUFFIX}`],
      [NS_C, `pgvc${SUFFIX}`],
    ] as const) {
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'set', dev, 'up');
    }
    await rootHost.mkdirp(DIR, 0o700);
    pki = new Pki({ host: rootHost, dir: `${DIR}/pki` });
  });

  after(async () => {
    await vpn?.stop().catch(() => undefined);
    await supervisor?.stop().catch(() => undefined);
    await mgmt?.close().catch(() => undefined);
    for (const c of clients) {
      c.kill('SIGKILL');
      await exitedWithin(c, 5000);
    }
    if (created) {
      for (const ns of [NS_S, NS_C]) {
        try {
          execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
        } catch {
          /* already gone */
        }
      }
    }
    await fs.rm(DIR, { recursive: true, force: true });
  });

  it('PKI: CA, server and client certificates by openssl; issueClient is idempotent; keys are 0600; usernames are checked', async () => {
    const paths = await pki.ensureServer();
    const first = await pki.issueClient('alice');
    const again = await pki.issueClient('alice');
    expect(first.reused).to.equal(false);
    expect(again).to.deep.equal({ ...first, reused: true });
    for (const key of [paths.caKey, paths.serverKey, paths.tlsCrypt, `${DIR}/pki/clients/alice.pem`]) {
      expect((await fs.stat(key)).mode & 0o777, key).to.equal(0o600);
    }
    const material = await pki.clientMaterial('alice');
    const text = execFileSync('openssl', ['x509', '-noout', '-subject', '-ext', 'extendedKeyUsage', '-nameopt', 'RFC2253'], { input: material.certPem }).toString();
    expect(text).to.match(/subject=CN=alice/).and.match(/TLS Web Client Authentication/);
    expect(execFileSync('openssl', ['x509', '-noout', '-ext', 'extendedKeyUsage', '-in', paths.serverCert]).toString()).to.match(/TLS Web Server Authentication/);
    tlsCrypt = await pki.tlsCryptKey();
    for (const bad of ['../etc', 'a b', 'x', 'al/ice', 'a\nb', `${'a'.repeat(33)}`]) {
      try {
        await pki.issueClient(bad);
        expect.fail(`accepted ${bad}`);
      } catch (e) {
        expect((e as Error).message).to.match(/username must match/);
      }
    }
    // Allowed by the username rule and harmless: values never become options (argv, not a shell).
    const dash = await pki.clientMaterial('-days');
    expect(execFileSync('openssl', ['x509', '-noout', '-subject', '-nameopt', 'RFC2253'], { input: dash.certPem }).toString().trim()).to.equal('subject=CN=-days');
    expect(await pki.revokeClient('-days')).to.equal(1);
  });

  it('the rendered server config runs under the supervisor in its namespace; management attaches and releases the hold', async () => {
    const socket = `${DIR}/run/mgmt.sock`;
    await rootHost.mkdirp(`${DIR}/run`, 0o700);
    const conf = `${DIR}/server.conf`;
    await rootHost.writeFileAtomic(
      conf,
      renderServerConfig({
        port: 1194,
        proto: 'udp',
        local: SRV_IP,
        device: 'pgtun9',
        subnet: TUN_SUBNET,
        managementSocket: socket,
        caPath: pki.paths.caCert,
        certPath: pki.paths.serverCert,
        keyPath: pki.paths.serverKey,
        crlPath: pki.paths.crl,
        tlsCryptPath: pki.paths.tlsCrypt,
        keepalive: { interval: 2, timeout: 10 },
      }),
      0o600,
    );
    supervisor = new ProcessSupervisor({
      host: serverHost,
      argv: ['openvpn', '--config', conf],
      name: 'openvpn test',
      initialBackoffMs: 200,
      beforeStart: () => rootHost.remove(socket),
    });
    supervisor.on('output', (l) => serverLog.push(l));
    mgmt = new ManagementClient({ host: serverHost, socketPath: socket, reconnectInitialMs: 50, reconnectMaxMs: 500 });
    mgmt.on('connect-request', onConnectRequest);
    mgmt.on('disconnect', (d) => disconnects.push(d));
    mgmt.on('established', (e) => established.push({ cid: e.cid, cn: e.env.common_name }));
    supervisor.start();
    mgmt.start();
    await mgmt.waitConnected(15_000);
    // Held until our client said `hold release`; the tunnel device only exists after that.
    await until(() => serverLog.some((l) => l.includes('Initialization Sequence Completed')), 'server initialization', 15_000);
    expect(serverLog.join('\n')).to.include('MANAGEMENT: Client connected from');
    expect(execFileSync('ip', ['-n', NS_S, '-br', 'addr', 'show', 'pgtun9']).toString()).to.include('10.8.210.1/24');
    const version = await mgmt.command('version');
    expect(version[0]).to.match(/^OpenVPN Version: OpenVPN 2\.\d/);
  });

  let aliceMaterial: ClientMaterial;
  let alice: VpnClient;

  it('a real client logs in (cert CN = auth username, password checked on the management interface), pings through the tunnel, shows in status 3', async () => {
    aliceMaterial = await pki.clientMaterial('alice');
    alice = await startClient('alice', aliceMaterial, ['alice', 'pw-alice']);
    await until(() => alice.connected(), 'alice tunnel up', 20_000);
    expect(requests.at(-1)).to.deep.include({ cn: 'alice', username: 'alice', verdict: 'allow' });
    expect(established.at(-1)).to.deep.include({ cn: 'alice' });
    const ping = await clientHost.run(['ping', '-c', '3', '-i', '0.2', '-W', '2', TUN_SERVER_IP], { timeoutMs: 15_000 });
    expect(ping.code, ping.stdout + ping.stderr).to.equal(0);
    expect(ping.stdout).to.match(/3 received/);
    const text = await mgmt!.status3();
    expect(text).to.match(/^TITLE\t/).and.match(/\nEND\n$/);
    const sessions = sessionsFromStatus3(text, 'main:1194udp', 'main');
    expect(sessions).to.have.length(1);
    expect(sessions[0]).to.deep.include({ username: 'alice', remoteAddress: CLI_IP, sessionKey: `main:1194udp:${established.at(-1)!.cid}` });
    // Three pings of 84 bytes each way plus the handshake.
    expect(sessions[0]!.rxBytes).to.be.greaterThan(252);
    expect(sessions[0]!.txBytes).to.be.greaterThan(252);
  });

  it('refuses a login whose username is not the certificate CN, and a wrong password (client-deny → AUTH_FAILED)', async () => {
    const before = requests.length;
    const mismatch = await startClient('alice-as-bob', aliceMaterial, ['bob', 'pw-bob']);
    expect(await exitedWithin(mismatch.proc, 20_000), 'client exits after AUTH_FAILED').to.equal(true);
    expect(mismatch.lines.join('\n')).to.include('AUTH_FAILED');
    const wrong = await startClient('alice-wrong', aliceMaterial, ['alice', 'nope']);
    expect(await exitedWithin(wrong.proc, 20_000)).to.equal(true);
    expect(wrong.connected()).to.equal(false);
    expect(requests.slice(before).map((r) => r.verdict)).to.deep.equal(['username does not match certificate', 'bad credentials']);
  });

  it('killClient cuts the session; the disconnect event carries the final counters', async () => {
    const cid = established.filter((e) => e.cn === 'alice').at(-1)!.cid;
    const [live] = sessionsFromStatus3(await mgmt!.status3(), 'main:1194udp', 'main');
    expect(await mgmt!.killClient(cid)).to.equal(true);
    await until(() => disconnects.some((d) => d.cid === cid), `DISCONNECT of cid ${cid}`, 15_000);
    const d = disconnects.find((x) => x.cid === cid)!;
    expect(d.env.common_name).to.equal('alice');
    expect(d.bytesReceived).to.be.at.least(live!.rxBytes);
    expect(d.bytesSent).to.be.at.least(live!.txBytes);
    // HALT: the client exits instead of reconnecting.
    expect(await exitedWithin(alice.proc, 15_000), 'client exits on HALT').to.equal(true);
    expect(sessionsFromStatus3(await mgmt!.status3(), 'main:1194udp', 'main')).to.deep.equal([]);
    expect(await mgmt!.killClient(cid)).to.equal(false);
  });

  it('SIGKILL of openvpn: the supervisor restarts it, management reconnects, and a new client logs in', async () => {
    const exits: SupervisedExit[] = [];
    supervisor!.on('exit', (e) => exits.push(e));
    let reconnects = 0;
    mgmt!.on('connected', () => reconnects++);
    const oldPid = supervisor!.pid!;
    expect(alive(oldPid)).to.equal(true);
    process.kill(oldPid, 'SIGKILL');
    await until(() => exits.length === 1, 'exit reported', 10_000);
    expect(exits[0]).to.include({ signal: 'SIGKILL', requested: false, pid: oldPid });
    await until(() => supervisor!.pid !== undefined && supervisor!.pid !== oldPid, 'restart', 15_000);
    await until(() => reconnects >= 1 && mgmt!.connected, 'management reconnect', 15_000);
    expect(await mgmt!.status3()).to.match(/^TITLE\t/);
    const again = await startClient('alice-2', aliceMaterial, ['alice', 'pw-alice']);
    await until(() => again.connected(), 'tunnel up after restart', 20_000);
    const ping = await clientHost.run(['ping', '-c', '1', '-W', '2', TUN_SERVER_IP], { timeoutMs: 10_000 });
    expect(ping.code).to.equal(0);
    await stopClient(again);
  });

  it('reissueClient: the old certificate is listed in the CRL and refused by the running server; the new one logs in', async () => {
    const oldSerial = (await pki.issueClient('alice')).serial;
    const reissued = await pki.reissueClient('alice');
    expect(reissued.serial).to.not.equal(oldSerial);
    const crlText = execFileSync('openssl', ['crl', '-noout', '-text'], { input: await pki.crlPem() }).toString();
    expect(crlText.replace(/:/g, '').toUpperCase()).to.include(oldSerial);
    const fresh = await pki.clientMaterial('alice');
    const bundle = `${DIR}/ca-crl.pem`;
    await rootHost.writeFileAtomic(bundle, fresh.caPem + (await pki.crlPem()));
    await rootHost.writeFileAtomic(`${DIR}/old.crt`, aliceMaterial.certPem);
    await rootHost.writeFileAtomic(`${DIR}/new.crt`, fresh.certPem);
    const verify = (f: string) => rootHost.run(['openssl', 'verify', '-crl_check', '-CAfile', bundle, f]);
    const oldV = await verify(`${DIR}/old.crt`);
    expect(oldV.code).to.not.equal(0);
    expect(oldV.stdout + oldV.stderr).to.match(/certificate revoked/);
    expect((await verify(`${DIR}/new.crt`)).stdout).to.match(/: OK/);

    // OpenVPN re-reads crl-verify on each new connection: no restart needed.
    const restarts = supervisor!.restarts;
    const logFrom = serverLog.length;
    const before = requests.length;
    const revoked = await startClient('alice-revoked', aliceMaterial, ['alice', 'pw-alice']);
    await until(() => serverLog.slice(logFrom).some((l) => /revoked/i.test(l)), 'the server refusing the revoked certificate', 20_000);
    expect(revoked.connected()).to.equal(false);
    expect(requests.length, 'a revoked certificate never reaches the auth decider').to.equal(before);
    await stopClient(revoked);
    const renewed = await startClient('alice-new', fresh, ['alice', 'pw-alice']);
    await until(() => renewed.connected(), 'tunnel with the new certificate', 20_000);
    expect(supervisor!.restarts).to.equal(restarts);
    await stopClient(renewed);
  });

  it('the plugin: two instances (UDP + TCP), logins via syncUsers + ctx.authorize, pollSessions, disconnect/syncUsers/server death → sessionEnded, stop', async () => {
    const authorizeCalls: AuthorizeRequest[] = [];
    const ended: SessionEnded[] = [];
    const ctx: PluginContext<OpenVpnConfig> = {
      host: serverHost,
      config: openVpnConfigSchema.parse({ bytecountIntervalSec: 1, restartInitialMs: 200, keepaliveInterval: 2, keepaliveTimeout: 10 }),
      logger,
      stateDir: `${DIR}/plugin`,
      authorize: async (r) => {
        authorizeCalls.push(r);
        return r.username === 'dave' ? { allowed: false, reason: 'account expired' } : { allowed: true };
      },
      sessionEnded: (e) => ended.push(e),
    };
    vpn = openvpnPlugin.create(ctx) as OpenVpnPlugin;
    expect(await vpn.availability()).to.deep.equal({ available: true });
    await vpn.setInstances([
      { port: 1195, proto: 'udp', local: SRV_IP },
      { port: 1196, proto: 'tcp', local: SRV_IP },
    ]);
    expect(await vpn.ports()).to.deep.equal([
      { port: 1195, protocol: 'udp', purpose: 'OpenVPN 1195/udp' },
      { port: 1196, protocol: 'tcp', purpose: 'OpenVPN 1196/tcp' },
    ]);
    await vpn.syncUsers([
      { username: 'carol', password: 'pw-carol' },
      { username: 'dave', password: 'pw-dave' },
    ]);
    await vpn.start();
    const running = vpn.describe();
    expect(running.map((r) => [r.key, r.device, r.subnet, r.managementConnected])).to.deep.equal([
      ['1195udp', 'pgtun0', '10.8.0.0/24', true],
      ['1196tcp', 'pgtun1', '10.8.1.0/24', true],
    ]);

    const profile = await vpn.clientProfile('carol', [{ host: SRV_IP, port: 1196, proto: 'tcp' }]);
    expect(profile).to.include('remote 10.99.21.1 1196 tcp').and.include('auth-user-pass').and.include('<tls-crypt>');
    const carol = await startProfile('carol', profile, ['carol', 'pw-carol']);
    await until(() => carol.connected(), 'carol over TCP', 20_000);
    expect(authorizeCalls.at(-1)).to.deep.equal({ username: 'carol', password: 'pw-carol', protocol: 'openvpn', serverId: 'main' });
    expect((await clientHost.run(['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.8.1.1'], { timeoutMs: 10_000 })).code).to.equal(0);

    // Two instances: SessionPoll holds one text with one scope, so the plugin parses.
    const poll = await vpn.pollSessions();
    expect(poll.kind).to.equal('sessions');
    const sessions = poll.kind === 'sessions' ? poll.sessions : [];
    expect(sessions).to.have.length(1);
    expect(sessions[0]).to.deep.include({ username: 'carol', protocol: 'openvpn', serverId: 'main', remoteAddress: CLI_IP });
    expect(sessions[0]!.sessionKey).to.match(/^main:1196tcp:\d+$/);

    // core says no: refused even with the right password.
    const dave = await startProfile('dave', await vpn.clientProfile('dave', [{ host: SRV_IP, port: 1195, proto: 'udp' }]), ['dave', 'pw-dave']);
    expect(await exitedWithin(dave.proc, 20_000)).to.equal(true);
    expect(dave.lines.join('\n')).to.include('AUTH_FAILED');
    expect(authorizeCalls.map((c) => c.username)).to.include('dave');

    // disconnect: client-kill HALT; the client exits and the final counters are reported.
    await vpn.disconnect({ username: 'carol' });
    await until(() => ended.some((e) => e.session.username === 'carol'), 'sessionEnded for carol', 15_000);
    const end = ended.find((e) => e.session.username === 'carol')!;
    expect(end.reason).to.equal('disconnected');
    expect(end.session.sessionKey).to.equal(sessions[0]!.sessionKey);
    expect(end.session.rxBytes).to.be.at.least(sessions[0]!.rxBytes);
    expect(end.session.txBytes).to.be.at.least(sessions[0]!.txBytes);
    expect(end.session.connectedAt).to.equal(sessions[0]!.connectedAt);
    expect(await exitedWithin(carol.proc, 15_000), 'HALT makes the client exit').to.equal(true);

    // syncUsers without carol cuts her live session.
    const carol2 = await startProfile('carol2', profile, ['carol', 'pw-carol']);
    await until(() => carol2.connected(), 'carol again', 20_000);
    await vpn.syncUsers([{ username: 'dave', password: 'pw-dave' }]);
    await until(() => ended.filter((e) => e.session.username === 'carol').length === 2, 'carol cut by syncUsers', 15_000);
    expect(await exitedWithin(carol2.proc, 15_000)).to.equal(true);

    // openvpn SIGKILLed: no DISCONNECT will come; the session is reported ended with the last
    // counters bytecount gave, and the instance comes back.
    await vpn.syncUsers([
      { username: 'carol', password: 'pw-carol' },
      { username: 'dave', password: 'pw-dave' },
    ]);
    const carol3 = await startProfile('carol3', profile, ['carol', 'pw-carol']);
    await until(() => carol3.connected(), 'carol a third time', 20_000);
    await clientHost.run(['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.8.1.1'], { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 1500)); // one bytecount interval
    const tcpPid = vpn.describe().find((r) => r.key === '1196tcp')!.pid!;
    process.kill(tcpPid, 'SIGKILL');
    await until(() => ended.some((e) => e.reason === 'server-exit'), 'sessionEnded after the server died', 10_000);
    const died = ended.find((e) => e.reason === 'server-exit')!;
    expect(died.session.username).to.equal('carol');
    expect(died.session.rxBytes).to.be.greaterThan(168);
    await until(() => vpn!.describe().some((r) => r.key === '1196tcp' && r.pid !== undefined && r.pid !== tcpPid && r.managementConnected), 'tcp instance back', 15_000);
    expect(vpn.describe().find((r) => r.key === '1196tcp')!.restarts).to.equal(1);
    await stopClient(carol3);

    // One instance left: the raw text goes to the native parser with its scope.
    const pidUdp = running[0]!.pid;
    await vpn.setInstances([{ port: 1196, proto: 'tcp', local: SRV_IP }]);
    expect(alive(pidUdp)).to.equal(false);
    const single = await vpn.pollSessions();
    expect(single).to.deep.include({ kind: 'status-text', format: 'openvpn-status3', scope: 'main:1196tcp', protocol: 'openvpn', serverId: 'main' });
    const pidTcp = vpn.describe()[0]!.pid;
    await vpn.stop();
    expect(vpn.describe()).to.deep.equal([]);
    expect(alive(pidTcp)).to.equal(false);
  });
});
